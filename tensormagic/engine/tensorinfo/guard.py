"""A report never raises: the facts an exotic object refuses to give become defaults or notes."""

from __future__ import annotations

from typing import Any

from tensormagic.engine.naming import describe_exception
from tensormagic.engine.tensorinfo.statistics import ValueStats

def guarded(default: Any, fn: Any) -> Any:
    """``fn()``, or ``default`` if an exotic tensor makes it raise (a report never raises)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default


def safe_stats(fn: Any) -> tuple[ValueStats | None, str | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - never raise on an exotic tensor
        return None, f"statistics unavailable: {describe_exception(exc)}"
