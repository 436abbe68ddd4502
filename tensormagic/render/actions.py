"""What a report's live panel can do, offered by the glue (the report stays plain data).

``%todevice`` offers a move: :func:`offer_move` ties a callable (device -> new report) to the
report, for as long as the report lives; the widget view asks :func:`move_of` for it and shows
a device picker and a Move button.  Static views never ask.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

_moves: dict[int, tuple[Any, Callable[[str], Any]]] = {}


def offer_move(report: Any, move: Callable[[str], Any]) -> None:
    """Let ``report``'s panel move the same objects to another device with ``move(device)``."""
    key = id(report)

    def forget(_ref: object) -> None:
        _moves.pop(key, None)

    _moves[key] = (weakref.ref(report, forget), move)


def move_of(report: Any) -> Callable[[str], Any] | None:
    """The move offered for ``report`` (None: the panel only shows how to move)."""
    got = _moves.get(id(report))
    if got is None or got[0]() is not report:
        return None
    return got[1]


__all__ = ["move_of", "offer_move"]
