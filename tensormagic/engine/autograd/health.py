"""Gradient health: per-parameter norms for a gradient-flow chart, vanishing/exploding flags, and
where a NaN or inf first appears (in the forward values, else in the backward)."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tensormagic.engine.autograd.graph import GraphInfo
from tensormagic.engine.autograd.guards import without_user_modes
from tensormagic.engine.autograd.records import CallRecord
from tensormagic.engine.autograd.report import GradientRow, HealthRow, Status
from tensormagic.engine.autograd.source import CellSource
from tensormagic.engine.autograd.summary import local_shard
from tensormagic.engine.tensorinfo.statistics import cpu_moments

#: A gradient norm below this (or below VANISHING_RELATIVE x the largest) is flagged as vanishing.
VANISHING = 1e-7
VANISHING_RELATIVE = 1e-6
#: A gradient norm above this is flagged as exploding.
EXPLODING = 1e3


def _readable(t: Any) -> torch.Tensor | None:
    """``t`` (or a DTensor's local shard) when its values can be read without running user code."""
    if not isinstance(t, torch.Tensor):
        return None
    shard = local_shard(t)
    if shard is not None:
        t = shard
    if type(t) not in (torch.Tensor, torch.nn.Parameter) or t.layout != torch.strided or t.device.type == "meta" or t.is_nested:
        return None
    readable: torch.Tensor = t
    return readable


def _param_norm(t: torch.Tensor | None) -> float:
    """The L2 norm of a parameter's values (NaN when they cannot be read); call it inside
    ``no_grad`` and :func:`without_user_modes`."""
    src = _readable(t)
    if src is None:
        return math.nan
    src = src.detach()
    if src.numel() <= 64 and src.device.type == "cpu":  # a few numbers: Python, not a dozen ops
        values = src.reshape(-1).tolist()
        if src.is_complex():
            return math.sqrt(math.fsum(abs(x) ** 2 for x in values))
        return math.sqrt(math.fsum(map(operator.mul, values, values)))  # (no Python step per value)
    return _norm(src)


def _norm(src: torch.Tensor) -> float:
    """The L2 norm of a readable tensor (inside ``no_grad`` and :func:`without_user_modes`)."""
    got = cpu_moments(src.reshape(-1)) if src.is_contiguous() else None
    if got is not None:
        return math.sqrt(got[3])
    if src.is_complex():
        src = src.abs()
    return float(torch.linalg.vector_norm(src, dtype=torch.float64))


def health(rows: Sequence[GradientRow], graph: GraphInfo, params: Mapping[str, torch.Tensor | None]) -> list[HealthRow]:
    """Per-parameter gradient norms, inputs first (the order of a gradient-flow chart)."""
    position = graph.leaf_positions()
    leaf_rows = [r for r in rows if r.kind == "leaf" and r.status in (Status.OK, Status.NON_FINITE) and r.norm is not None]
    if not leaf_rows:
        return []
    seen: set[str] = set()
    top = max((r.norm for r in leaf_rows if r.norm is not None and math.isfinite(r.norm)), default=0.0)
    out: list[HealthRow] = []
    with torch.no_grad(), without_user_modes():  # once for every parameter (each entry costs microseconds)
        pnorms = {r.wrt: _param_norm(params.get(r.wrt)) for r in leaf_rows}
    for r in sorted(leaf_rows, key=lambda r: -position.get(r.wrt, -1)):
        if r.wrt in seen:
            continue
        seen.add(r.wrt)
        norm = float(r.norm) if r.norm is not None else math.nan
        flag = None
        if r.nan or r.inf or not math.isfinite(norm):
            flag = "NaN/inf"
        elif norm < VANISHING or (top > 0 and norm < VANISHING_RELATIVE * top):
            flag = "vanishing"
        elif norm > EXPLODING:
            flag = "exploding"
        pnorm = pnorms[r.wrt]
        ratio = norm / pnorm if pnorm and math.isfinite(pnorm) and math.isfinite(norm) else None
        out.append(HealthRow(name=r.wrt, shape=r.shape or [], grad_norm=norm, param_norm=pnorm, ratio=ratio, flag=flag))
    return out


def _has_non_finite(t: torch.Tensor) -> bool:
    with torch.no_grad(), without_user_modes():
        if t.is_complex():
            return not bool((torch.isfinite(t.real) & torch.isfinite(t.imag)).all())
        return not bool(torch.isfinite(t).all())


def first_non_finite(records: Sequence[CallRecord], rows: Sequence[GradientRow], outputs: Sequence[Any], cell: CellSource, namespace: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where the first NaN/inf appears: the first named tensor of the cell holding one (forward),
    else the node the cell's backward (``locate_nan``) or the magic's own pass found, else
    ``unknown`` (asking for ``locate_nan``); None when no gradient or output holds one."""
    bad = [r.wrt for r in rows if r.status == Status.NON_FINITE]
    outs_bad = [v for v in outputs if isinstance(v, float) and not math.isfinite(v)]
    if not bad and not outs_bad:
        return None
    for name, line in sorted(cell.assigned.items(), key=lambda kv: kv[1]):
        obj = _readable(namespace.get(name))
        if obj is not None and (obj.is_floating_point() or obj.is_complex()) and obj.numel() and _has_non_finite(obj):
            op = type(obj.grad_fn).__name__ if obj.grad_fn is not None else "a leaf"
            return {"where": "forward", "name": name, "op": op, "line": line, "code": cell.code(line), "wrt": bad}
    for record in records:
        if record.non_finite_at is not None:
            node_id, op, at = record.non_finite_at
            node = record.graph.nodes[node_id] if node_id < len(record.graph.nodes) else None
            return {"where": "backward", "name": node.name if node else None, "op": op, "line": at, "code": cell.code(at), "wrt": bad}
    return {"where": "unknown", "name": None, "op": None, "line": None, "code": None, "wrt": bad, "ask": "locate_nan"}


__all__ = ["EXPLODING", "VANISHING", "VANISHING_RELATIVE", "first_non_finite", "health"]
