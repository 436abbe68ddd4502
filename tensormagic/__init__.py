"""tensormagic: IPython magics that explain PyTorch tensors, NumPy arrays and their gradients.

``%load_ext tensormagic`` registers ``%tensorinfo``, ``%%autograd`` and ``%todevice``.
Importing this package imports neither IPython nor ipywidgets; the engine (``tensormagic.engine``)
can be used from plain Python::

    from tensormagic.engine.tensorinfo import inspect_object
    report = inspect_object("x", x)
    report.to_dict()
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with ``ipython`` (``%load_ext tensormagic``)."""
    from tensormagic.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and everything they hooked (``%unload_ext tensormagic``)."""
    from tensormagic.magics import unload

    unload(ipython)
