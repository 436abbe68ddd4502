"""The IPython glue: one thin module per magic (parse the line, resolve names, call the engine,
return the report), as IPython's own ``core/magics/`` does.

* :mod:`.tensorinfo` - ``%tensorinfo`` (and :mod:`.model_options` for ``--input``);
* :mod:`.autograd` - ``%%autograd``;
* :mod:`.todevice` - ``%todevice``;
* :mod:`.settings` - ``TensorMagics``, the ``%config`` settings (and :mod:`.auto_display`);
* :mod:`.common` - parsing and the user's names.

Every user mistake becomes a one-line ``UsageError`` and leaves the namespace untouched.
:func:`load` and :func:`unload` are what ``%load_ext`` / ``%unload_ext tensormagic`` call.
"""

from __future__ import annotations

from typing import Any

from tensormagic.engine.autograd import keeper
from tensormagic.magics.auto_display import environment_setting
from tensormagic.magics.autograd import AutogradMagics
from tensormagic.magics.settings import TensorMagics
from tensormagic.magics.tensorinfo import TensorinfoMagics
from tensormagic.magics.todevice import TodeviceMagics
from tensormagic.render.display import set_display_mode

#: Every magics class the extension registers, the settings first.
MAGICS = (TensorMagics, TensorinfoMagics, AutogradMagics, TodeviceMagics)


def release_freed_graphs(result: Any = None) -> None:
    """After every cell: let go of the deep graphs %%autograd walked that the user has freed
    (see tensormagic.engine.autograd.keeper)."""
    keeper.sweep()


def load(shell: Any) -> None:
    """Register the magics once with ``shell``."""
    if "TensorMagics" in shell.magics_manager.registry:
        return
    settings = TensorMagics(shell)
    shell.register_magics(settings)
    for cls in MAGICS[1:]:
        shell.register_magics(cls(shell))
    shell.events.register("post_run_cell", release_freed_graphs)
    setting = environment_setting()
    if setting is not None:
        settings.auto_display = setting


def unload(shell: Any) -> None:
    """Remove the magics, the settings' configurable, the display printers and the display mode."""
    settings = shell.magics_manager.registry.get("TensorMagics")
    if settings is None:
        return
    if getattr(settings, "auto", None) is not None:
        settings.auto.disable()  # the display printers that were there before come back
    if release_freed_graphs in shell.events.callbacks.get("post_run_cell", []):
        shell.events.unregister("post_run_cell", release_freed_graphs)
    keeper.sweep()
    for cls in MAGICS:
        magics = shell.magics_manager.registry.pop(cls.__name__, None)
        if magics is None:
            continue
        for kind, table in magics.magics.items():
            for name in table:
                shell.magics_manager.magics[kind].pop(name, None)
        if magics in shell.configurables:
            shell.configurables.remove(magics)
    set_display_mode("auto")


__all__ = ["MAGICS", "TensorMagics", "load", "unload"]
