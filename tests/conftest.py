"""Shared fixtures: a real IPython InteractiveShell with tensormagic loaded."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """The real InteractiveShell singleton, with the extension loaded and a clean namespace."""
    ip = InteractiveShell.instance()
    ip.reset(new_session=False)
    ip.run_line_magic("load_ext", "tensormagic")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "tensormagic")
        ip.extension_manager.loaded.discard("tensormagic")
        ip.reset(new_session=False)


def run(ip: InteractiveShell, code: str):
    """Run a cell; re-raise what it raised so that a test sees it."""
    result = ip.run_cell(code, store_history=False)
    if result.error_before_exec is not None:
        raise result.error_before_exec
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def shown_as_one_line_usage_error(ip: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str) -> UsageError:
    """Run ``cell`` as a user would; assert it failed with a UsageError shown as one line with no
    traceback, and return the error."""
    res = ip.run_cell(cell, store_history=False)
    err = res.error_in_exec or res.error_before_exec
    assert type(err) is UsageError, (cell, err)
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert "Traceback" not in text and text.count("\n") == 0, text
    return err


def in_ci() -> bool:
    """True when running under CI (a missing browser is then a failure, not a skip)."""
    return bool(os.environ.get("CI"))
