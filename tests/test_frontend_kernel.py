"""The quickstart notebook executed by nbclient in a real Jupyter kernel.

Checks what every frontend receives: each panel cell's output carries ``text/plain``,
``text/html`` and the ipywidgets view, the widget state is saved, no cell fails, and the
generated examples are up to date with ``examples/build_examples.py``.
"""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import nbformat
import pytest

from frontend_support import (
    AUTO_DISPLAYS,
    EXAMPLES,
    PANELS,
    WIDGET_STATE,
    WIDGET_VIEW,
    PanelExpectation,
    cell_for,
    code_cells,
    execute_notebook,
    executed_quickstart,
    panel_output,
)

pytestmark = pytest.mark.kernel


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(markup: str) -> str:
    """The text a reader sees in ``markup`` (entities decoded, style and script left out)."""
    parser = _Text()
    parser.feed(markup)
    return " ".join("".join(parser.parts).split())


@pytest.fixture(scope="module")
def nb():
    return executed_quickstart()


def test_examples_are_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "build_examples.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_cell_ran_without_error(nb):
    cells = code_cells(nb)
    assert cells, "the quickstart has no code cells"
    for cell in cells:
        assert cell.execution_count is not None, cell.source
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.source!r} raised {errors[0].ename}: {errors[0].evalue}"
        stderr = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")
        assert "Traceback" not in stderr and "Warning" not in stderr, f"{cell.source!r} wrote to stderr:\n{stderr}"


def test_expectations_cover_every_panel_cell(nb):
    """Every cell that shows a widget has an expectation in frontend_support.PANELS (a report's
    panel) or AUTO_DISPLAYS (an automatically displayed object)."""
    with_widget = {c.source for c in code_cells(nb) if any(WIDGET_VIEW in o.get("data", {}) for o in c.outputs)}
    assert with_widget == {p.source for p in PANELS} | {a.source for a in AUTO_DISPLAYS}


@pytest.mark.parametrize("expect", PANELS, ids=lambda p: p.name)
def test_panel_output_has_text_html_and_widget(nb, expect: PanelExpectation):
    out = panel_output(cell_for(nb, expect.source))
    data = out.data
    assert {"text/plain", "text/html", WIDGET_VIEW} <= set(data), sorted(data)

    plain = data["text/plain"]
    assert plain.splitlines()[0] == expect.title
    assert "VBox(" not in plain and "Tab(" not in plain, "a widget repr leaked into text/plain"
    for heading in expect.tabs:
        assert f"── {heading} " in plain
    for text in expect.texts:
        assert text in plain, f"{text!r} missing from text/plain"
    for texts in expect.tab_texts.values():
        for text in texts:
            assert text in plain, f"{text!r} missing from text/plain"

    seen = html_text(data["text/html"])
    assert seen.startswith(expect.title), seen[:80]
    for text in expect.texts + tuple(expect.tabs) + sum(expect.tab_texts.values(), ()):
        assert text in seen, f"{text!r} missing from text/html"

    model_id = data[WIDGET_VIEW]["model_id"]
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    assert model_id in state, "the panel's widget model was not saved with the notebook"
    assert state[model_id]["model_name"] == "VBoxModel"
    assert "tensormagic-panel" in state[model_id]["state"]["_dom_classes"]


def test_kernel_is_the_venv_python_with_tensormagic():
    """The ``python3`` kernel found with isolated Jupyter dirs is this interpreter, tensormagic importable."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys, tensormagic\nprint(sys.prefix)\nprint(tensormagic.__file__)")]
    out = execute_notebook(nb).cells[0].outputs[0].text.splitlines()
    assert out[0] == sys.prefix
    assert out[1].startswith(str(EXAMPLES.parent / "tensormagic"))
