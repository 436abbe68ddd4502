"""tensormagic: IPython magics that explain PyTorch tensors, NumPy arrays and their gradients.

``%load_ext tensormagic`` registers ``%tensorinfo``, ``%%autograd`` and ``%todevice``.  The same
reports from plain Python (scripts, tests, pdb)::

    import tensormagic
    tensormagic.tensorinfo(x)                # the %tensorinfo report of x (names from the caller)
    tensormagic.tensorinfo(model, input=x)   # a model layer by layer
    tensormagic.todevice()                   # where every tensor of the caller lives
    moved, report = tensormagic.todevice("cuda", {"x": x, "model": model})
    with tensormagic.autograd() as run:      # observe a block as %%autograd observes a cell
        y = w * x + b
        y.backward()
    run.report.grad("w"); run.report.to_dict()

Importing this package imports neither IPython nor ipywidgets (nor torch, until used).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tensormagic.engine.autograd.block import BlockRun
    from tensormagic.engine.report import Report
    from tensormagic.engine.todevice.report import TodeviceReport

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
    _presenting()
    from tensormagic.engine.autograd import DEFAULT_EXTRA_SECONDS, DEFAULT_JACOBIAN_BUDGET, AutogradOptions
    from tensormagic.engine.autograd.block import observe_block

    options = AutogradOptions(
        of=list(of or []), wrt=list(wrt or []), check=check, flops=flops, jacobian=jacobian,
        jacobian_budget=jacobian_budget if jacobian_budget is not None else DEFAULT_JACOBIAN_BUDGET,
        extra_seconds=extra_seconds if extra_seconds is not None else DEFAULT_EXTRA_SECONDS,
        lines=lines, locate_nan=locate_nan,
    )
    return observe_block(options)


def _presenting() -> None:
    """Register the renderers (text and HTML; ipywidgets only in a kernel) so that the reports the
    API returns print and display as panels (importing them imports no IPython)."""
    import tensormagic.render.display  # noqa: F401 - registers the presenter on import


def _caller_names(depth: int = 2) -> dict[str, Any]:
    """The names a caller sees: its globals, then its locals over them."""
    frame = sys._getframe(depth)
    return {**frame.f_globals, **frame.f_locals}


def tensorinfo(
    obj: Any = None,
    name: str | None = None,
    *,
    budget: int | None = None,
    exact: bool = False,
    input: Any = None,
    namespace: Mapping[str, Any] | None = None,
    image: bool = False,
    channels: bool = False,
    heatmap: bool = False,
    hist: bool = False,
    pictures: bool = True,
    denorm: str | None = None,
    global_stats: bool = False,
    timeout: float | None = None,
) -> Report:
    """The ``%tensorinfo`` report of an array, tensor or module (``obj``), named ``name`` (its
    variable name in the caller when not given); with no ``obj``, of every array, tensor and
    module of ``namespace`` (the caller's names by default).  ``input``: a model's input (a
    tensor, a tuple of arguments or a dict of keywords): the report goes layer by layer.
    ``budget`` / ``exact``: the magic's ``--budget N`` / ``--exact``.
    ``image``, ``channels``, ``heatmap``, ``hist``: draw only these pictures (default: those the
    shape gets); ``pictures=False``: none; ``denorm``: ``"imagenet"`` or ``"MEAN,STD"`` (as the
    magic's flags; a ValueError says what cannot be drawn).

    ``global_stats=True`` (a
    DTensor): the whole tensor's statistics (``%tensorinfo --global``; every rank must call it
    within ``timeout`` seconds, else a one-line :class:`~tensormagic.engine.sharding.MeetingError`
    and nothing is communicated)."""
    _presenting()
    from tensormagic.engine.tensorinfo import DEFAULT_BUDGET, inspect_namespace, inspect_object
    from tensormagic.engine.tensorinfo.pictures import options

    names = dict(namespace) if namespace is not None else _caller_names()
    drawn = options(image=image, channels=channels, heatmap=heatmap, hist=hist, pictures=pictures, denorm=denorm)
    if obj is None:
        return inspect_namespace(names)
    if name is None:
        name = next((n for n, v in names.items() if v is obj and not n.startswith("_")), type(obj).__name__)
    size = 2**62 if exact else (budget if budget is not None else DEFAULT_BUDGET)
    report = inspect_object(name, obj, names, size, pictures=drawn, global_stats=global_stats, timeout=timeout)
    if input is not None:
        from tensormagic.engine.layers import DEFAULT_LAYER_BUDGET, inspect_layers, model_inputs

        args, kwargs = model_inputs(obj, input)
        return inspect_layers(name, obj, args, kwargs, size if (exact or budget is not None) else DEFAULT_LAYER_BUDGET, base=report)  # type: ignore[arg-type]
    return report


def todevice(
    device: str | None = None,
    objects: Mapping[str, Any] | None = None,
    *,
    dtype: str | None = None,
    non_blocking: bool = False,
    pin_memory: bool = False,
    namespace: Mapping[str, Any] | None = None,
) -> TodeviceReport | tuple[Any, TodeviceReport]:
    """With no ``device``: the ``%todevice`` placement report of ``namespace`` (the caller's names by
    default).  With a device: move ``objects`` (name -> tensor, array, module, optimizer or
    container) there, all or nothing, and return ``(moved, report)``: ``moved`` maps each name to
    its object on the device (modules move in place, as ``Module.to`` does).  ``dtype``,
    ``non_blocking`` and ``pin_memory`` are the magic's ``--dtype``, ``--non-blocking`` and
    ``--pin-memory``; a move that fails raises ``tensormagic.engine.todevice.MoveError`` (one
    line) and changes nothing."""
    _presenting()
    from tensormagic.engine.todevice import moves, placement_report

    if device is None:
        return placement_report(dict(namespace) if namespace is not None else _caller_names())
    if not objects:
        raise ValueError("name the objects to move, e.g. tensormagic.todevice('cuda', {'x': x, 'model': model})")
    outcome = moves.move(dict(objects), list(objects), device, dtype=dtype, non_blocking=non_blocking, pin_memory=pin_memory)
    moved = {name: outcome.bindings.get(name, objects[name]) for name in objects}
    return moved, outcome.report


__all__ = ["__version__", "autograd", "load_ipython_extension", "tensorinfo", "todevice", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with ``ipython`` (``%load_ext tensormagic``)."""
    from tensormagic.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and everything they hooked (``%unload_ext tensormagic``)."""
    from tensormagic.magics import unload

    unload(ipython)
