"""tensormagic: IPython magics that explain PyTorch tensors, NumPy arrays and their gradients.

``%load_ext tensormagic`` registers ``%tensorinfo``, ``%%autograd`` and ``%todevice``.  The same
reports from plain Python (scripts, tests, pdb)::

    import tensormagic
    with tensormagic.autograd() as run:      # observe a block as %%autograd observes a cell
        y = w * x + b
        y.backward()
    run.report.grad("w"); run.report.to_dict()

Importing this package imports neither IPython nor ipywidgets (nor torch, until used).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tensormagic.engine.autograd.block import BlockRun

__version__ = "0.1.0"


def autograd(
    *,
    of: list[str] | None = None,
    wrt: list[str] | None = None,
    check: bool = False,
    flops: bool = False,
    jacobian: bool = True,
    jacobian_budget: int | None = None,
    extra_seconds: float | None = None,
    lines: bool = True,
    locate_nan: bool = False,
) -> AbstractContextManager[BlockRun]:
    """Observe the ``with`` block as ``%%autograd`` observes a cell; ``run.report`` after it.

    The keyword arguments are the magic's options (``of=["loss"]`` is ``--of loss``): the block
    behaves exactly as without it, and the report says every derivative it computed."""
    from tensormagic.engine.autograd import DEFAULT_EXTRA_SECONDS, DEFAULT_JACOBIAN_BUDGET, AutogradOptions
    from tensormagic.engine.autograd.block import observe_block

    options = AutogradOptions(
        of=list(of or []), wrt=list(wrt or []), check=check, flops=flops, jacobian=jacobian,
        jacobian_budget=jacobian_budget if jacobian_budget is not None else DEFAULT_JACOBIAN_BUDGET,
        extra_seconds=extra_seconds if extra_seconds is not None else DEFAULT_EXTRA_SECONDS,
        lines=lines, locate_nan=locate_nan,
    )
    return observe_block(options)


__all__ = ["__version__", "autograd", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with ``ipython`` (``%load_ext tensormagic``)."""
    from tensormagic.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and everything they hooked (``%unload_ext tensormagic``)."""
    from tensormagic.magics import unload

    unload(ipython)
