"""No user-derived string runs as script in JupyterLab: payloads end up as text in the live widgets.

A small notebook, written into the session's JupyterLab root, gives the magics objects whose
names, reprs and source lines carry HTML payloads that set ``window.__tm_pwned`` when they run:
a dict key used in a ``%tensorinfo`` expression, a ``torch.nn.Module`` subclass whose class name,
``extra_repr`` and child-module name are markup, a ``%%autograd`` cell with markup in a comment
(the Graph tab shows the cell's lines), and ``%todevice`` / ``%tensorinfo`` listings that name
those objects.  The notebook runs in the real browser; every tab of every panel is clicked; then
``window.__tm_pwned`` must still be undefined, the payloads must be readable as text, and no
element the payloads describe (``img[src=x]``, ``svg[onload]``, ``script``, any ``on*``
attribute) may exist in the outputs.  Without Chromium or Playwright these tests skip, and fail
when ``CI`` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from frontend_support import (
    JupyterLab,
    LabPage,
    open_and_run_all,
    chromium,  # noqa: F401 - pytest fixtures
    lab_server,  # noqa: F401
)

pytestmark = pytest.mark.browser

NOTEBOOK = "injection.ipynb"

KEY = '<img src=x onerror="window.__tm_pwned=1">'
CLASS_NAME = '<svg onload="window.__tm_pwned=2">'
EXTRA_REPR = "<script>window.__tm_pwned=3</script>"
COMMENT = '<img src=x onerror="window.__tm_pwned=4">'
CHILD = '<img src=x onerror="__tm_pwned=5">'  # a module name may not contain "."

SETUP = f"""import torch, numpy as np
d = {{{KEY!r}: np.ones(3)}}
M = type({CLASS_NAME!r}, (torch.nn.Module,), {{"extra_repr": lambda self: {EXTRA_REPR!r}}})
m = M()
m.add_module({CHILD!r}, torch.nn.Linear(2, 2))"""

#: Each panel cell and the payload texts that must be readable (as text) in it, over all its tabs.
PANEL_CELLS: dict[str, tuple[str, ...]] = {
    f"%tensorinfo d[{KEY!r}]": ('onerror="window.__tm_pwned=1"',),
    "%tensorinfo m": (CLASS_NAME, EXTRA_REPR, CHILD),
    "%%autograd\n"
    "w = torch.tensor(3., requires_grad=True)\n"
    f"y = w * 2  # {COMMENT}\n"
    "y.backward()": (COMMENT,),
    "%tensorinfo": (),
    "%todevice": (),
}

#: Elements and attributes no payload may become, anywhere in an output area.
JS_ACTIVE = """() => {
  const found = [];
  for (const out of document.querySelectorAll('.jp-OutputArea-output')) {
    for (const el of out.querySelectorAll('img[src="x"], svg[onload], script, iframe'))
      found.push(el.outerHTML.slice(0, 120));
    for (const el of out.querySelectorAll('*'))
      for (const a of el.attributes)
        if (a.name.toLowerCase().startsWith('on')) found.push(el.tagName + ' ' + a.name + '=' + a.value.slice(0, 60));
  }
  return found;
}"""


def write_notebook(root: Any) -> str:
    nb = nbformat.v4.new_notebook()
    sources = ["%load_ext tensormagic", SETUP, *PANEL_CELLS]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(root / NOTEBOOK))
    return NOTEBOOK


@pytest.fixture(scope="module")
def injection_page(chromium: Any, lab_server: JupyterLab) -> Iterator[LabPage]:  # noqa: F811
    """The payload notebook open in JupyterLab, every cell run, every tab of every panel clicked."""
    path = write_notebook(lab_server.root)
    lab = open_and_run_all(chromium, lab_server, path)
    try:
        yield lab
    finally:
        lab.page.context.close()


@pytest.fixture(scope="module")
def seen(injection_page: LabPage) -> dict[str, str]:
    """Per panel cell: the panel's text over all of its tabs (each tab clicked in turn)."""
    lab = injection_page
    texts: dict[str, str] = {}
    for source in PANEL_CELLS:
        output = lab.output(source)
        panel = output.locator(".tensormagic-panel")
        panel.wait_for(state="visible")
        parts = [panel.inner_text()]
        tabs = panel.get_by_role("tab")
        for i in range(tabs.count()):
            tab = tabs.nth(i)
            tab.click()
            lab.page.wait_for_function("el => el.getAttribute('aria-selected') === 'true'", arg=tab.element_handle())
            lab.page.wait_for_timeout(30)  # let any injected image fail to load (onerror would fire)
            parts.append(panel.inner_text())
        texts[source] = "\n".join(parts)
    lab.page.wait_for_timeout(300)
    return texts


def test_every_payload_cell_renders_a_panel(injection_page: LabPage, seen: dict[str, str]):
    errors = injection_page.page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()
    for source, text in seen.items():
        assert "Error displaying widget" not in text, source
        assert injection_page.output(source).locator(".tensormagic-panel").count() == 1, source


def test_no_payload_script_ran(injection_page: LabPage, seen: dict[str, str]):
    assert injection_page.page.evaluate("() => window.__tm_pwned") is None


def test_payloads_show_as_text(seen: dict[str, str]):
    for source, payloads in PANEL_CELLS.items():
        for payload in payloads:
            assert payload in seen[source], f"{payload!r} not visible as text in the panel of {source!r}"
    assert "onerror=" in "".join(seen.values())


def test_no_payload_element_in_outputs(injection_page: LabPage, seen: dict[str, str]):
    page = injection_page.page
    assert page.query_selector_all(".jp-OutputArea-output img[src=x]") == []
    assert page.query_selector_all(".jp-OutputArea-output svg[onload]") == []
    assert page.query_selector_all(".jp-OutputArea-output script") == []
    assert page.evaluate(JS_ACTIVE) == []
