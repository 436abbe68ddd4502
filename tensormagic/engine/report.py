"""The base class of every report the engine returns.

A report is a dataclass of plain Python values (never tensors or arrays, so it pins no
memory).  ``to_dict()`` gives a JSON-serialisable dict.  ``str(report)`` and
``_repr_mimebundle_`` (text, HTML and, inside a live kernel, a widget) go through the presenter
that :mod:`tensormagic.render.display` registers when it is imported (the magics and the public
API import it), so every arrow points from the renderers down to the engine, never back: the
engine imports neither ``tensormagic.render`` nor IPython nor ipywidgets.  Without a presenter a
report shows its one-line ``repr``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Any

#: ``(report, include, exclude) -> mime bundle`` and ``report -> text``, set by the renderers.
_mimebundle: Callable[[Any, Any, Any], dict[str, Any]] | None = None
_text: Callable[[Any], str] | None = None


def set_presenter(mimebundle: Callable[[Any, Any, Any], dict[str, Any]], text: Callable[[Any], str]) -> None:
    """Register how reports display (called once, by :mod:`tensormagic.render.display`)."""
    global _mimebundle, _text
    _mimebundle, _text = mimebundle, text


def plain(value: Any) -> Any:
    """Turn a report field into JSON-serialisable plain data (dataclasses become dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN/inf: keep them readable as strings.
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class Report:
    """Mixin for report dataclasses: ``to_dict()``, rich display and a short repr."""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable plain data."""
        data: dict[str, Any] = plain(self)
        return data

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if _mimebundle is None:
            return {"text/plain": repr(self)}
        return _mimebundle(self, include, exclude)

    def __str__(self) -> str:
        return repr(self) if _text is None else _text(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.summary()}>"

    def summary(self) -> str:
        """One line that says what the report is about."""
        return type(self).__name__
