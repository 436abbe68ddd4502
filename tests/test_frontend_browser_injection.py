"""No user-derived string runs as script in JupyterLab: payloads end up as text in the live widgets.

A small notebook, written into the session's JupyterLab root, gives the magics objects whose
names, reprs and source lines carry HTML payloads that set ``window.__tm_pwned`` when they run:
a dict key used in a ``%tensorinfo`` expression, a ``torch.nn.Module`` subclass whose class name,
``extra_repr`` and child-module name are markup, a ``%%autograd`` cell with markup in a comment
(the Graph tab's picture and its text graph show the cell's lines), and ``%todevice`` / ``%tensorinfo`` listings that name
those objects.  The notebook runs in the real browser; every tab of every panel is clicked (its folded parts opened); then
``window.__tm_pwned`` must still be undefined, the payloads must be readable as text, and no
element the payloads describe (``img[src=x]``, ``svg[onload]``, ``script``, any ``on*``
attribute) may exist in the outputs.  Without Chromium or Playwright these tests skip, and fail
when ``CI`` is set.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import pytest

from frontend_support import (
    CELL_TIMEOUT,
    JupyterLab,
    launch_chromium,
    open_and_run_all,
    lab_server,  # noqa: F401 - pytest fixture
)

pytestmark = pytest.mark.browser

NOTEBOOK = "injection.ipynb"
#: Seconds for the whole browser session (start, run all, every tab).
BROWSER_TIMEOUT = CELL_TIMEOUT

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


def observe(server: JupyterLab, path: str) -> dict[str, Any]:
    """Open ``path`` in a fresh headless Chromium, run all, click every tab; what the page shows.

    Runs in its own thread with its own Playwright: another module's session-scoped ``chromium``
    fixture (each importing module gets its own instance) holds this thread's event loop, and a
    second sync Playwright cannot start on it.
    """
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tm-chromium-") as home, sync_playwright() as p:
        browser = launch_chromium(p, Path(home))
        try:
            lab = open_and_run_all(browser, server, path)
            page = lab.page
            texts: dict[str, str] = {}
            panels: dict[str, int] = {}
            for source in PANEL_CELLS:
                panel = lab.output(source).locator(".tensormagic-panel")
                panel.first.wait_for(state="visible")
                panels[source] = panel.count()
                parts = [panel.inner_text()]
                tabs = panel.get_by_role("tab")
                for i in range(tabs.count()):
                    tab = tabs.nth(i)
                    tab.click()
                    page.wait_for_function("el => el.getAttribute('aria-selected') === 'true'", arg=tab.element_handle())
                    # open the folded parts (the graph as text under its picture)
                    panel.evaluate("p => p.querySelectorAll('details').forEach(d => d.open = true)")
                    page.wait_for_timeout(30)  # an injected image would fail to load (and fire onerror)
                    parts.append(panel.inner_text())
                texts[source] = "\n".join(parts)
            page.wait_for_timeout(300)
            stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            return {
                "texts": texts,
                "panels": panels,
                "stderr": stderr.all_inner_texts(),
                "pwned": page.evaluate("() => window.__tm_pwned"),
                "img": len(page.query_selector_all(".jp-OutputArea-output img[src=x]")),
                "svg": len(page.query_selector_all(".jp-OutputArea-output svg[onload]")),
                "script": len(page.query_selector_all(".jp-OutputArea-output script")),
                "active": page.evaluate(JS_ACTIVE),
            }
        finally:
            browser.close()


@pytest.fixture(scope="module")
def seen(lab_server: JupyterLab) -> dict[str, Any]:  # noqa: F811
    """The payload notebook written into the server's root, run and clicked through in Chromium."""
    path = write_notebook(lab_server.root)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(observe, lab_server, path).result(timeout=BROWSER_TIMEOUT)


def test_every_payload_cell_renders_a_panel(seen: dict[str, Any]):
    assert seen["stderr"] == []
    for source, text in seen["texts"].items():
        assert "Error displaying widget" not in text, source
        assert seen["panels"][source] == 1, source


def test_no_payload_script_ran(seen: dict[str, Any]):
    assert seen["pwned"] is None


def test_payloads_show_as_text(seen: dict[str, Any]):
    for source, payloads in PANEL_CELLS.items():
        for payload in payloads:
            assert payload in seen["texts"][source], f"{payload!r} not visible as text in the panel of {source!r}"
    assert "onerror=" in "".join(seen["texts"].values())


def test_no_payload_element_in_outputs(seen: dict[str, Any]):
    assert (seen["img"], seen["svg"], seen["script"]) == (0, 0, 0)
    assert seen["active"] == []
