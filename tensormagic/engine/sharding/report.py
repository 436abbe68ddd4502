"""The ``%tensorinfo`` report of a DTensor: the local shard's facts, the layout, labelled statistics.

The report is built from ``dt.to_local()`` (this rank's plain tensor: strides, storage, values)
and the DTensor's metadata (global shape, placements, mesh); no DTensor op runs, so nothing is
communicated unless ``global_stats=True`` (``%tensorinfo --global``, which every rank must run).

What the fields mean for a DTensor: ``shape``/``numel``/``ndim`` are the global tensor's (what
``dt.shape`` says); ``nbytes``, ``storage_nbytes``, ``strides`` and ``device`` are this rank's
local shard's; ``sharding`` has the rest (global bytes, every rank's block).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from tensormagic.engine.sharding.layout import (
    ShardingInfo,
    block_label,
    mesh_words,
    sharding_info,
)
from tensormagic.engine.sharding.local_stats import local_stats
from tensormagic.engine.tensorinfo.guard import guarded
from tensormagic.engine.tensorinfo.reports import Conversion, TensorInfo
from tensormagic.engine.tensorinfo.statistics import DEFAULT_BUDGET

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor


def dtensor_type(dt: DTensor) -> str:
    """``torch.distributed.tensor.DTensor``, or ``torch.nn.Parameter (DTensor)`` for FSDP2's parameters."""
    return "torch.nn.Parameter (DTensor)" if isinstance(dt, torch.nn.Parameter) else "torch.distributed.tensor.DTensor"


def grad_summary(dt: DTensor) -> str | None:
    """The gradient of a DTensor, summarised from its local shard (no communication)."""
    from tensormagic.engine.sharding.detect import as_dtensor
    from tensormagic.engine.tensorinfo.tensor import grad_text

    g = dt.grad if dt.is_leaf else None
    if g is None:
        return None
    gd = as_dtensor(g)
    if gd is None:
        return grad_text(g)
    info = sharding_info(gd)
    local = grad_text(gd.to_local())
    return f"{local}; the {'partial values' if info.partial else 'local shard'} on rank {info.rank} of a DTensor gradient ({', '.join(info.placements)}, global {list(info.global_shape)})"


def _notes(info: ShardingInfo) -> list[str]:
    notes = [f"a DTensor on {mesh_words(info.mesh_shape, info.device_type)}: shape, elements and dtype are the global tensor's; strides, storage and bytes are this rank's local shard's ({block_label(info)})"]
    if info.empty:
        notes.append(f"this rank's shard is empty: uneven sharding leaves ranks {', '.join(map(str, info.empty_ranks))} without elements")
    elif info.uneven:
        notes.append("uneven sharding: the shards do not all have the same shape" + (f" (ranks {', '.join(map(str, info.empty_ranks))} hold nothing)" if info.empty_ranks else ""))
    if info.partial:
        notes.append("a Partial placement: each rank holds a full-size partial result; the tensor is their reduction (dt.full_tensor() or dt.redistribute() computes it, communicating)")
    return notes


def inspect_dtensor(
    name: str,
    dt: DTensor,
    namespace: Mapping[str, Any] | None = None,
    budget: int = DEFAULT_BUDGET,
    hidden: frozenset[str] | set[str] = frozenset(),
    *,
    global_stats: bool = False,
    timeout: float | None = None,
) -> TensorInfo:
    """The report of ``dt`` on this rank (see the module docstring)."""
    from tensormagic.engine.tensorinfo.tensor import inspect_tensor

    info = sharding_info(dt)
    local = dt.to_local()
    base = inspect_tensor(name, local.detach(), namespace, budget, hidden)
    stats, stats_note, histogram = local_stats(local.detach(), info, budget)
    details = dict(base.details)
    notes = _notes(info) + [n for n in base.notes if "a view: its storage" not in n]
    if global_stats:
        from tensormagic.engine.sharding.global_stats import DEFAULT_TIMEOUT
        from tensormagic.engine.sharding.global_stats import global_stats as whole

        stats = whole(dt, budget, DEFAULT_TIMEOUT if timeout is None else timeout)
        stats_note = None
        details["histogram_scope"] = "local shard"
    grad_fn = guarded("?", lambda: type(dt.grad_fn).__name__ if dt.grad_fn is not None else None)
    numpy_ok = local.device.type == "cpu" and not local.requires_grad
    conversion = [
        Conversion(call=f"{name}.to_local()", result="shares memory", detail="this rank's shard, a plain tensor (no communication)"),
        Conversion(call=f"{name}.full_tensor()", result="copies", detail="the whole tensor on every rank: a collective, every rank must call it"),
        Conversion(call=f"{name}.to_local().numpy()", result="shares memory" if numpy_ok else "fails", detail="the local shard only" if numpy_ok else "needs .detach() (and .cpu()) first"),
    ]
    return dataclasses.replace(
        base,
        type=dtensor_type(dt),
        shape=list(info.global_shape),
        ndim=len(info.global_shape),
        numel=math.prod(info.global_shape),
        requires_grad=bool(dt.requires_grad),
        is_leaf=bool(dt.is_leaf),
        grad_fn=grad_fn,
        grad=guarded("(could not be summarised)", lambda: grad_summary(dt)),
        stats=stats,
        stats_note=stats_note,
        histogram=histogram,
        conversion=conversion,
        details=details,
        notes=notes,
        sharding=info,
    )


__all__ = ["dtensor_type", "grad_summary", "inspect_dtensor"]
