"""``%tensorinfo EXPR``: which report an object gets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tensormagic.engine.naming import (
    describe_exception,
    is_array,
    is_module,
    is_tensor,
    type_name,
)
from tensormagic.engine.sharding.rendezvous import MeetingError
from tensormagic.engine.tensorinfo.array import inspect_array
from tensormagic.engine.tensorinfo.module import inspect_module
from tensormagic.engine.tensorinfo.pictures import PictureError, PictureOptions
from tensormagic.engine.tensorinfo.reports import ModuleInfo, TensorInfo
from tensormagic.engine.tensorinfo.statistics import DEFAULT_BUDGET
from tensormagic.engine.tensorinfo.tensor import inspect_tensor


class UninspectableError(ValueError):
    """An inspectable object that refused to be described; the message is one line (the glue
    shows it as a ``UsageError``)."""


def _refusal_hint(obj: Any) -> str:
    """Why a tensor subclass may refuse what the report asks (its own ``__torch_function__``)."""
    own = getattr(type(obj).__torch_function__, "__func__", None)
    if is_tensor(obj) and own is not None and own is not torch.Tensor.__torch_function__.__func__:  # type: ignore[attr-defined]  # a classmethod
        return f"; {type(obj).__qualname__}.__torch_function__ refuses what a report needs (shape, numel, element_size...)"
    return ""


def inspect_object(
    name: str,
    obj: Any,
    namespace: Mapping[str, Any] | None = None,
    budget: int = DEFAULT_BUDGET,
    hidden: frozenset[str] | set[str] = frozenset(),
    pictures: PictureOptions | None = None,
    *,
    global_stats: bool = False,
    timeout: float | None = None,
) -> TensorInfo | ModuleInfo:
    """Dispatch on the object's true type (an object whose ``__class__`` lies is not inspectable).

    Raises TypeError for objects that are not inspectable, and :class:`UninspectableError` (one
    line) for an array, tensor or module that raises while its report is built.  ``pictures``:
    which pictures to draw (default: those the shape gets); :class:`PictureError` (one line)
    when one asked for cannot be drawn;
    ``global_stats`` (a DTensor's whole-tensor statistics, every rank must ask) may raise
    :class:`~tensormagic.engine.sharding.rendezvous.MeetingError` (one line, nothing communicated).
    """
    opts = pictures if pictures is not None else PictureOptions()
    try:
        if is_tensor(obj):
            return inspect_tensor(name, obj, namespace, budget, hidden, pictures=opts, global_stats=global_stats, timeout=timeout)
        if is_array(obj):
            return inspect_array(name, obj, namespace, budget, hidden, pictures=opts)
        if is_module(obj):
            if opts.kinds or opts.denorm is not None:
                raise PictureError(f"{name} is a module: pictures (--image, --channels, --heatmap, --hist, --denorm) are of arrays and tensors")
            return inspect_module(name, obj)
    except (PictureError, MeetingError):
        raise
    except Exception as exc:  # noqa: BLE001 - an object that refuses: one line, never a traceback
        raise UninspectableError(f"{name} ({type_name(obj)}) cannot be described: {describe_exception(exc)}{_refusal_hint(obj)}") from None
    raise TypeError(f"{name} is a {type(obj).__name__}, not an array, tensor or module")
