"""A report never raises: the facts an exotic object refuses to give become defaults or notes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tensormagic.engine.naming import describe_exception

T = TypeVar("T")
D = TypeVar("D")


def guarded(default: D, fn: Callable[[], T]) -> T | D:
    """``fn()``, or ``default`` if an exotic tensor makes it raise (a report never raises)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default


def safe_stats(fn: Callable[[], T]) -> tuple[T | None, str | None]:
    """``(fn(), None)``, or ``(None, "statistics unavailable: <why>")`` if it raises."""
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - never raise on an exotic tensor
        return None, f"statistics unavailable: {describe_exception(exc)}"
