"""Which panel builder draws which report type: a type registry (``functools.singledispatch``).

A panel module registers its builder with ``@builds(ReportType)``; :func:`panel_of` finds it by
the report's type (subclasses included).  The engine never names the render layer: the arrow
points from render to engine only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import singledispatch
from typing import Any, TypeVar

from tensormagic.render.document import Panel

Builder = TypeVar("Builder", bound=Callable[..., Panel])

#: The modules whose builders register themselves (imported on the first panel).
PANEL_MODULES = (
    "tensormagic.render.autograd_panel",
    "tensormagic.render.tensorinfo_panel",
    "tensormagic.render.layers_panel",
    "tensormagic.render.todevice_panel",
)

_loaded = False


@singledispatch
def _panel(report: Any) -> Panel:
    raise TypeError(f"{type(report).__name__} has no panel builder")


def builds(report_type: type) -> Callable[[Builder], Builder]:
    """``@builds(AutogradReport)`` registers the decorated function as that report's panel builder."""

    def register(builder: Builder) -> Builder:
        _panel.register(report_type)(builder)
        return builder

    return register


def panel_of(report: Any) -> Panel:
    """The neutral panel document of ``report``."""
    global _loaded
    if not _loaded:
        for name in PANEL_MODULES:
            importlib.import_module(name)
        _loaded = True
    return _panel(report)


__all__ = ["PANEL_MODULES", "builds", "panel_of"]
