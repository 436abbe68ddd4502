"""Automatic display: every tensor, array and module a cell *displays* shows as a summary.

Opt-in (``%config TensorMagics.auto_display = True``, ``c.TensorMagics.auto_display = True`` in
``ipython_config.py``, or ``TENSORMAGIC_AUTO_DISPLAY=1`` read at ``%load_ext``).  It works
through IPython's display formatters only: a mime-bundle printer (what a displayed object
shows: the line, HTML with a picture that opens the full ``%tensorinfo`` panel, and in a live
kernel a widget; the line alone where only text is shown), registered for
``torch.Tensor``, ``numpy.ndarray`` and ``torch.nn.Module``.  ``repr``, ``str``, ``print``,
debuggers and logging never see it.

Turning it off (or unloading the extension) puts back exactly the printers that were
registered before, another extension's included; a printer someone registered after ours is
left alone.  An object that cannot be summarised shows as it did before (torch's repr), never as
an error; objects with display methods of their own (``_repr_html_``...) keep them.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tensormagic.engine import tensorinfo as tensorinfo_engine
from tensormagic.engine.naming import is_module
from tensormagic.engine.preview import Preview, module_preview, tensor_preview
from tensormagic.engine.tensorinfo import DEFAULT_BUDGET

#: The classes whose display is taken over (their subclasses too, through IPython's MRO lookup).
CLASSES: tuple[type, ...] = (torch.Tensor, np.ndarray, torch.nn.Module)
#: Display methods an object may define for itself; such objects keep their own display.
OWN_DISPLAY = ("_repr_html_", "_repr_mimebundle_", "_repr_pretty_", "_ipython_display_")
ENV = "TENSORMAGIC_AUTO_DISPLAY"
_MISSING = object()
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def environment_setting(environ: dict[str, str] | None = None) -> bool | None:
    """``TENSORMAGIC_AUTO_DISPLAY``: True for 1/true/yes/on, False for 0/false/no/off, None when
    unset; another value is said in one line on stderr and ignored."""
    raw = (os.environ if environ is None else environ).get(ENV)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    print(f"tensormagic: {ENV}={raw!r} is not 1 or 0 (true/false, yes/no, on/off); automatic display stays as configured", file=sys.stderr)
    return None


def _own_display(obj: Any) -> bool:
    """Does the object's class (below torch's and NumPy's) define a display method itself?"""
    for cls in type(obj).__mro__:
        if cls in CLASSES or cls.__module__.startswith(("torch", "numpy")):
            return False
        if any(name in vars(cls) for name in OWN_DISPLAY):
            return True
    return False


class AutoDisplay:
    """The printers of one shell, and what they replaced."""

    def __init__(self, shell: Any, mode: Callable[[], str], hidden: Callable[[], set[str]]) -> None:
        self.shell = shell
        self.mode = mode
        self.hidden = hidden
        self.active = False
        self._saved: dict[tuple[str, type], Any] = {}
        self._last: tuple[Any, dict[str, Any]] | None = None  # (weakref to obj, its bundle)
        # bound methods are made anew on each access: keep one of each, to know ours by identity
        self._text = self._text_printer
        self._html = self._html_printer
        self._bundle = self._bundle_printer

    # -- installing -----------------------------------------------------------------------

    def _formatters(self) -> dict[str, Any]:
        fmt = self.shell.display_formatter
        found = {"mimebundle": fmt.mimebundle_formatter}
        for key in ("text/plain", "text/html"):
            if key in fmt.formatters:
                found[key] = fmt.formatters[key]
        return found

    def _ours(self, key: str) -> Any:
        return {"mimebundle": self._bundle, "text/plain": self._text, "text/html": self._html}[key]

    def set(self, on: bool) -> None:
        """Turn automatic display on or off."""
        self.enable() if on else self.disable()

    def enable(self) -> None:
        """Register the printers, remembering the ones they replace.

        The mime-bundle printer answers for every displayed object.  IPython lets a printer
        registered for one mime type (``text/plain``, ``text/html``) win over a mime bundle, so
        where another extension registered one for these classes, ours replaces it while on.
        """
        if self.active:
            return
        for key, formatter in self._formatters().items():
            for cls in CLASSES:
                deferred = (cls.__module__, cls.__name__) in formatter.deferred_printers
                if key != "mimebundle" and cls not in formatter.type_printers and not deferred:
                    continue
                self._saved[(key, cls)] = formatter.type_printers.get(cls, _MISSING)
                formatter.type_printers[cls] = self._ours(key)
        self.active = True

    def disable(self) -> None:
        """Put back what was registered before (a printer registered after ours stays)."""
        if not self.active:
            return
        formatters = self._formatters()
        for (key, cls), old in self._saved.items():
            table = formatters[key].type_printers
            if table.get(cls) is not self._ours(key):
                continue  # someone replaced ours since: theirs stays
            if old is _MISSING:
                del table[cls]
            else:
                table[cls] = old
        self._saved.clear()
        self._last = None
        self.active = False

    def _name_of(self, obj: Any) -> str:
        """The user's variable holding ``obj`` (``value`` when none does)."""
        hidden = self.hidden()
        for name, value in list(self.shell.user_ns.items()):
            if value is obj and not name.startswith("_") and name not in hidden:
                return str(name)
        return "value"

    def _report(self, obj: Any, namespace: bool) -> Any:
        name = self._name_of(obj)
        ns = self.shell.user_ns if namespace else None
        return tensorinfo_engine.inspect_object(name, obj, ns, DEFAULT_BUDGET, self.hidden())

    def _fallback(self, obj: Any, p: Any, cycle: bool) -> None:
        """What the object showed before: the printer we replaced, else its repr."""
        for cls in type(obj).__mro__:
            old = self._saved.get(("text/plain", cls), _MISSING)
            if cls in CLASSES:
                if old is not _MISSING and callable(old):
                    old(obj, p, cycle)
                    return
                break
        try:
            p.text(repr(obj))
        except Exception as exc:  # noqa: BLE001 - a repr that raises still shows as one line
            p.text(f"<{type(obj).__name__} (its repr raised {type(exc).__name__})>")

    def _just_built(self, obj: Any) -> dict[str, Any] | None:
        """The bundle the mime-bundle printer made for ``obj`` in this same display, if any."""
        if self._last is not None and self._last[0]() is obj:
            return self._last[1]
        return None

    def _text_printer(self, obj: Any, p: Any, cycle: bool) -> None:
        """``text/plain`` where another printer was registered for it: the one line."""
        from tensormagic.render.summary_line import summary_line

        bundle = self._just_built(obj)
        if bundle is not None and "text/plain" in bundle:
            p.text(bundle["text/plain"])
            return
        if not self.active or _own_display(obj):
            self._fallback(obj, p, cycle)
            return
        try:
            line = summary_line(self._report(obj, namespace=False))
        except Exception:  # noqa: BLE001 - cannot be summarised: shown as before
            self._fallback(obj, p, cycle)
            return
        p.text(line)

    def _html_printer(self, obj: Any) -> str | None:
        """``text/html`` where another printer was registered for it: ours, from the bundle."""
        bundle = self._just_built(obj)
        if bundle is not None:
            return bundle.get("text/html")
        old = self._saved.get(("text/html", next((c for c in type(obj).__mro__ if c in CLASSES), object)), _MISSING)
        return old(obj) if old is not _MISSING and callable(old) else None

    def _bundle_printer(self, obj: Any) -> dict[str, Any] | None:
        """What a displayed object shows: the line, and where HTML is shown every view at once
        (None: the other formatters answer, as without automatic display)."""
        self._last = None
        if not self.active or _own_display(obj):
            return None
        fmt = self.shell.display_formatter
        html_on = fmt.formatters.get("text/html") is not None and fmt.formatters["text/html"].enabled
        try:
            if not html_on or self.mode() == "text":
                from tensormagic.render.summary_line import summary_line

                bundle = {"text/plain": summary_line(self._report(obj, namespace=False))}
            else:
                bundle = self._views(obj)
        except Exception:  # noqa: BLE001 - cannot be summarised: shown as before
            return None
        try:
            self._last = (weakref.ref(obj), bundle)
        except TypeError:  # no weak references: the per-mime printers build their own
            self._last = None
        return bundle

    def _views(self, obj: Any) -> dict[str, Any]:
        from tensormagic.render.auto_view import STYLE, auto_html, summary_html
        from tensormagic.render.display import build_panel, in_kernel
        from tensormagic.render.summary_line import nonfinite, summary_line

        report = self._report(obj, namespace=True)
        line = summary_line(report)
        preview: Preview | None = module_preview(obj) if is_module(obj) else tensor_preview(obj, getattr(report, "histogram", None))
        panel = build_panel(report)
        level = "error" if nonfinite(report) else "info"
        bundle: dict[str, Any] = {"text/plain": line, "text/html": auto_html(line, preview, panel, level)}
        if self.mode() in ("auto", "widget") and in_kernel():
            try:
                from tensormagic.render.widget import summary_widget

                view = summary_widget(STYLE + summary_html(line, preview, level), panel)._repr_mimebundle_()
            except ImportError:  # no ipywidgets: the HTML stands in
                view = None
            if view and WIDGET_MIME in view:
                bundle[WIDGET_MIME] = view[WIDGET_MIME]
        return bundle


__all__ = ["CLASSES", "ENV", "AutoDisplay", "environment_setting"]
