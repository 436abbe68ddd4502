"""Terminal IPython: ``ipython examples/walkthrough.ipy`` as a real subprocess prints the text panels."""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from frontend_support import PANELS, REPO, WALKTHROUGH, PanelExpectation, isolated_env

#: Things that must never reach a terminal: widget reprs, HTML, raw mime bundles, failures.
FORBIDDEN = ("VBox(", "Tab(", "HTML(value", "Widget(", "<IPython.core", "application/vnd.jupyter",
             "<div", "<style", "<table", "Traceback", "UsageError", "Error:")


@functools.cache
def walkthrough_run() -> subprocess.CompletedProcess:
    """``ipython --colors=nocolor examples/walkthrough.ipy`` once, in isolated IPython/Jupyter dirs."""
    ipython = Path(sys.executable).parent / "ipython"
    with tempfile.TemporaryDirectory(prefix="tm-ipython-") as tmp:
        return subprocess.run(
            [str(ipython), "--colors=nocolor", "--no-banner", str(WALKTHROUGH)],
            cwd=REPO,
            env=isolated_env(Path(tmp)),
            capture_output=True,
            text=True,
            timeout=180,
        )


def panel_blocks(stdout: str) -> list[tuple[str, str]]:
    """The printed panels in order, as (title, text): from a line that is one of the expected
    titles to the next such line or ``=== `` section heading."""
    titles = {p.title for p in PANELS}
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line in titles:
            current = [line]
            blocks.append((line, current))
        elif line.startswith("=== "):
            current = None
        elif current is not None:
            current.append(line)
    return [(title, "\n".join(lines)) for title, lines in blocks]


def test_walkthrough_runs_cleanly():
    proc = walkthrough_run()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip() == "", proc.stderr[-2000:]
    for bad in FORBIDDEN:
        assert bad not in proc.stdout, f"{bad!r} in the terminal output"
    assert "\x1b[" not in proc.stdout, "colour escapes despite --colors=nocolor"


def test_every_panel_is_printed_in_order():
    """The walkthrough prints one text panel per panel cell of the notebook, in the same order."""
    assert [t for t, _ in panel_blocks(walkthrough_run().stdout)] == [p.title for p in PANELS]


@pytest.mark.parametrize("index", range(len(PANELS)), ids=[p.name for p in PANELS])
def test_text_panel_values(index: int):
    expect: PanelExpectation = PANELS[index]
    blocks = panel_blocks(walkthrough_run().stdout)
    assert index < len(blocks), f"{expect.title!r} not printed"
    title, block = blocks[index]
    assert title == expect.title
    for heading in expect.tabs:
        assert f"── {heading} " in block, f"section {heading!r} missing"
    for text in expect.terminal_texts + sum(expect.tab_texts.values(), ()):
        assert text in block, f"{text!r} missing from the {expect.title!r} panel"


def test_seed_dtype_truth_is_printed():
    """The seed snippet's array is int64 (not float64 as its text claims), twin torch.int64."""
    out = walkthrough_run().stdout
    assert "(dtype('int64'), torch.int64)" in out
    assert "✓ int64 <-> torch.int64" in out
