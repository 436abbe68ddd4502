"""``TensorMagics``: the configurable settings of the extension (``%config TensorMagics.display``,
``TensorMagics.auto_display``, and the same in ``ipython_config.py``)."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import magics_class
from traitlets import Bool, CaselessStrEnum, observe

from tensormagic.magics.auto_display import AutoDisplay
from tensormagic.magics.common import UserNamespace
from tensormagic.render.display import DISPLAY_MODES, display_mode, set_display_mode


@magics_class
class TensorMagics(UserNamespace):
    """tensormagic's settings: how reports display, and automatic display of tensors."""

    display = CaselessStrEnum(
        DISPLAY_MODES,
        default_value="auto",
        help="How reports display: 'auto' (a widget panel in a live kernel, else HTML and text), "
        "'widget', 'html' (HTML and text, no widget) or 'text' (plain text only).",
    ).tag(config=True)

    auto_display = Bool(
        False,
        help="Show every tensor, array and module a cell displays (its last expression, display(x)) as a "
        "one-line summary, with a picture that opens the %tensorinfo panel in HTML and widgets; repr, "
        "str and print stay as they are.  TENSORMAGIC_AUTO_DISPLAY=1 at %load_ext turns it on too.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        set_display_mode(self.display)
        self.auto: AutoDisplay | None = AutoDisplay(self.shell, display_mode, lambda: self.hidden) if self.shell is not None else None
        if self.auto is not None and self.auto_display:
            self.auto.enable()

    @observe("display")
    def _display_changed(self, change: dict[str, Any]) -> None:
        set_display_mode(change["new"])

    @observe("auto_display")
    def _auto_display_changed(self, change: dict[str, Any]) -> None:
        auto = getattr(self, "auto", None)
        if auto is not None:
            auto.set(bool(change["new"]))


__all__ = ["TensorMagics"]
