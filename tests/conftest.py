"""Shared fixtures: a real IPython InteractiveShell with tensormagic loaded."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
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


def in_ci() -> bool:
    """True when running under CI (a missing browser is then a failure, not a skip)."""
    return bool(os.environ.get("CI"))
