"""The base class of every report the engine returns.

A report is a dataclass of plain Python values (never tensors or arrays, so it pins no
memory).  ``to_dict()`` gives a JSON-serialisable dict; ``_repr_mimebundle_`` asks the
renderers for text, HTML and (inside a live kernel) a widget, importing them lazily so the
engine itself never imports IPython or ipywidgets.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import math
from typing import Any


def plain(value: Any) -> Any:
    """Turn a report field into JSON-serialisable plain data (dataclasses become dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")  # a picture's pixels
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
        return plain(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from tensormagic.render.display import mimebundle

        return mimebundle(self, include, exclude)

    def __str__(self) -> str:
        from tensormagic.render.display import render_text

        return render_text(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.summary()}>"

    def summary(self) -> str:
        """One line that says what the report is about."""
        return type(self).__name__
