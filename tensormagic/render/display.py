"""How a report shows itself: which views to build, and building them.

``mimebundle(report)`` gives ``text/plain`` and ``text/html`` (one panel feeds both) and, inside
a live Jupyter kernel, the ipywidgets view as well.  ``%config TensorMagics.display`` sets the
mode through :func:`set_display_mode`.  Importing this module registers :func:`mimebundle` and
:func:`render_text` as the engine's presenter (:func:`tensormagic.engine.report.set_presenter`),
which ``str(report)`` and ``report._repr_mimebundle_`` call.
"""

from __future__ import annotations

import sys
from typing import Any

from tensormagic.engine.report import set_presenter
from tensormagic.render import html, text
from tensormagic.render.document import Panel
from tensormagic.render.registry import panel_of

DISPLAY_MODES = ("auto", "widget", "html", "text")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

_mode = "auto"


def set_display_mode(mode: str) -> None:
    """``auto`` (widget in a kernel, else HTML+text), ``widget``, ``html`` or ``text`` (text only)."""
    global _mode
    if mode not in DISPLAY_MODES:
        raise ValueError(f"display must be one of {', '.join(DISPLAY_MODES)}, not {mode!r}")
    _mode = mode


def display_mode() -> str:
    """The display mode in force."""
    return _mode


def in_kernel() -> bool:
    """True inside a live Jupyter kernel (terminal IPython and plain Python say False)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None) is not None


def build_panel(report: Any) -> Panel:
    """The panel of a report, from the builder registered for its type (:mod:`.registry`)."""
    return panel_of(report)


def render_text(report: Any) -> str:
    """The report as plain text."""
    return text.render_panel(build_panel(report))


def render_html(report: Any) -> str:
    """The report as semantic HTML."""
    return html.render_panel(build_panel(report))


def render_widget(report: Any) -> Any:
    """The report as an ipywidgets tree (imports ipywidgets)."""
    from tensormagic.render.widget import render_widget as widget_of

    return widget_of(build_panel(report))


def mimebundle(report: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """The display data of a report for the current mode, limited to the ``include`` MIME types
    and without the ``exclude`` ones when IPython asks so (as rich's ``JupyterMixin`` does);
    views nobody asked for are not built."""

    def wanted(mime: str) -> bool:
        return (not include or mime in include) and not (exclude and mime in exclude)

    panel = build_panel(report)
    bundle: dict[str, Any] = {}
    if wanted("text/plain"):
        bundle["text/plain"] = text.render_panel(panel)
    if _mode == "text":
        return bundle
    if wanted("text/html"):
        bundle["text/html"] = html.render_panel(panel)
    if _mode in ("auto", "widget") and in_kernel() and wanted(WIDGET_MIME):
        try:
            from tensormagic.render.widget import render_widget as widget_of

            view = widget_of(panel)._repr_mimebundle_()
        except ImportError:  # ipywidgets missing: the HTML view stands in
            return bundle
        if view and WIDGET_MIME in view:
            bundle[WIDGET_MIME] = view[WIDGET_MIME]
    return bundle


set_presenter(mimebundle, render_text)  # reports display through these from now on
