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


def panel_blocks(stdout: str) -> dict[str, str]:
    """The printed panels by title: from a title line to the next panel or section heading."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("tensorinfo · ") and " " not in line[len("tensorinfo · "):]:
            current = blocks.setdefault(line, [])
        elif line.startswith("=== "):
            current = None
        if current is not None:
            current.append(line)
    return {title: "\n".join(lines) for title, lines in blocks.items()}


def test_walkthrough_runs_cleanly():
    proc = walkthrough_run()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip() == "", proc.stderr[-2000:]
    for bad in FORBIDDEN:
        assert bad not in proc.stdout, f"{bad!r} in the terminal output"
    assert "\x1b[" not in proc.stdout, "colour escapes despite --colors=nocolor"


def test_every_panel_is_printed_once():
    titles = list(panel_blocks(walkthrough_run().stdout))
    assert titles == list(dict.fromkeys(p.title for p in PANELS))


@pytest.mark.parametrize("expect", PANELS, ids=lambda p: p.name)
def test_text_panel_values(expect: PanelExpectation):
    block = panel_blocks(walkthrough_run().stdout).get(expect.title)
    assert block is not None, f"{expect.title!r} not printed"
    for heading in expect.tabs:
        assert f"── {heading} " in block, f"section {heading!r} missing"
    for text in expect.terminal_texts + sum(expect.tab_texts.values(), ()):
        assert text in block, f"{text!r} missing from the {expect.title!r} panel"


def test_seed_dtype_truth_is_printed():
    """The seed snippet's array is int64 (not float64 as its text claims), twin torch.int64."""
    out = walkthrough_run().stdout
    assert "(dtype('int64'), torch.int64)" in out
    assert "✓ int64 <-> torch.int64" in out
