"""``%tensorinfo --global``: the whole DTensor's statistics from one all_gather of a few numbers per rank.

Only when every rank of the mesh asks (:func:`~.rendezvous.meet`, bounded by a timeout, comes
first: a missing rank is a one-line error and no collective is entered).  Then:

1. ``Partial`` placements are reduced first: the local shard is all-reduced over each Partial
   mesh dimension (a copy of the local shard, and communication the size of the shard: the
   partial values' own min, max and std say nothing about the tensor's, so nothing cheaper is
   true).  No Partial placement: no data moves at all.
2. Each rank computes its shard's statistics locally (the usual exact pass, sampled above the
   budget) and sends :data:`FIELDS` float64 numbers; ranks holding a replica (coordinate > 0 on
   a ``Replicate`` or reduced ``Partial`` mesh dimension) and empty shards send nothing.
3. One ``all_gather`` of those numbers; every rank merges them exactly (Chan's pairwise update
   of mean and centred sum of squares; integer min/max travel bit for bit).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from tensormagic.engine.sharding.layout import ShardingInfo, sharding_info
from tensormagic.engine.sharding.rendezvous import MeetingError, meet
from tensormagic.engine.tensorinfo.statistics import (
    DEFAULT_BUDGET,
    ValueStats,
    tensor_stats,
)

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

#: Seconds every rank waits for the others before giving up (``--timeout``).
DEFAULT_TIMEOUT = 5.0

#: The numbers each rank sends, in this order.
FIELDS = ("contributes", "count", "finite", "mean", "m2", "min", "max", "nan", "posinf", "neginf", "zeros", "exact", "sampled", "imin", "imax")

_REDUCE_OPS = {"sum", "avg", "max", "min"}


def _partials(s: ValueStats | None, integer: bool) -> torch.Tensor:
    """One rank's :data:`FIELDS` as float64 (integer min/max stored bit for bit)."""
    out = torch.zeros(len(FIELDS), dtype=torch.float64)
    if s is None or s.count == 0:
        return out
    seen = s.count if s.exact else int(s.sample_size or 0)
    finite = seen - s.nan - s.posinf - s.neginf
    mean = s.mean if s.mean is not None else 0.0
    m2 = (s.std or 0.0) ** 2 * (finite - 1) if finite > 1 else 0.0
    lo = float(s.min) if s.min is not None else math.nan
    hi = float(s.max) if s.max is not None else math.nan
    out[:13] = torch.tensor([1, s.count, finite, mean, m2, lo, hi, s.nan, s.posinf, s.neginf, s.zeros, 1 if s.exact else 0, seen], dtype=torch.float64)
    if integer and s.min is not None and s.max is not None:
        out[13:15] = torch.tensor([int(s.min), int(s.max)], dtype=torch.int64).view(torch.float64)
    return out


def merge(rows: list[torch.Tensor], dtype: torch.dtype, over: str) -> ValueStats:
    """The merged statistics of every contributing rank's :func:`_partials` (Chan et al.)."""
    integer = not (dtype.is_floating_point or dtype.is_complex) and dtype != torch.bool
    n = count = seen = nan = posinf = neginf = zeros = 0
    mean = m2 = 0.0
    lo: float | int | bool | None = None
    hi: float | int | bool | None = None
    exact = True
    for row in rows:
        v = row.tolist()
        f = dict(zip(FIELDS, v))
        if not f["contributes"]:
            continue
        count += int(f["count"])
        seen += int(f["sampled"])
        exact = exact and bool(f["exact"])
        nan, posinf, neginf, zeros = nan + int(f["nan"]), posinf + int(f["posinf"]), neginf + int(f["neginf"]), zeros + int(f["zeros"])
        nb = int(f["finite"])
        if nb == 0:
            continue
        delta = f["mean"] - mean
        total = n + nb
        mean += delta * nb / total
        m2 += f["m2"] + delta * delta * n * nb / total
        n = total
        if integer:
            bits = row[13:15].view(torch.int64).tolist()
            rlo, rhi = int(bits[0]), int(bits[1])
        else:
            rlo, rhi = f["min"], f["max"]
        lo = rlo if lo is None or rlo < lo else lo
        hi = rhi if hi is None or rhi > hi else hi
    if dtype == torch.bool and lo is not None and hi is not None:
        lo, hi = bool(lo), bool(hi)
    std = math.sqrt(max(m2 / (n - 1), 0.0)) if n > 1 else None
    return ValueStats(
        min=lo, max=hi, mean=mean if n else None, std=std, nan=nan, posinf=posinf, neginf=neginf, zeros=zeros,
        exact=exact, sample_size=None if exact else seen, count=count, over=over, scope="global",
    )


def _check(info: ShardingInfo, world: int) -> None:
    """Refusals every rank reaches alike (the same placements), before anyone waits."""
    if math.prod(info.mesh_shape) != world:
        raise MeetingError(f"--global needs a mesh over every rank of the process group: this mesh has {math.prod(info.mesh_shape)} of {world} ranks")
    if info.coordinate is None:
        raise MeetingError("this rank is not in the DTensor's mesh: --global has nothing to add here")
    if "other" in info.placement_kinds:
        raise MeetingError(f"--global does not know how to merge placements {', '.join(info.placements)}")
    for p in info.placements:
        if p.startswith("Partial(") and p[len("Partial("):-1] not in _REDUCE_OPS:
            raise MeetingError(f"--global cannot reduce {p} (only sum, avg, max and min)")


def _reduced(dt: DTensor, info: ShardingInfo) -> torch.Tensor:
    """The local shard with every Partial mesh dimension reduced (a copy), or the shard itself."""
    import torch.distributed as dist

    local = dt.to_local().detach()
    if not info.partial:
        return local
    buf = local.clone()
    ops = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    for mesh_dim, p in enumerate(info.placements):
        if not p.startswith("Partial("):
            continue
        op = p[len("Partial("):-1]
        dist.all_reduce(buf, op=ops[op], group=dt.device_mesh.get_group(mesh_dim))
        if op == "avg":
            buf /= info.mesh_shape[mesh_dim]
    return buf


def global_stats(dt: DTensor, budget: int = DEFAULT_BUDGET, timeout: float = DEFAULT_TIMEOUT) -> ValueStats:
    """Statistics of the whole of ``dt`` (see the module docstring); every rank must call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise MeetingError("--global needs an initialised process group (torch.distributed.init_process_group)")
    info = sharding_info(dt)
    world = int(dist.get_world_size())
    _check(info, world)
    meet(int(dist.get_rank()), world, fingerprint(info), timeout)
    values = _reduced(dt, info)
    assert info.coordinate is not None
    replica = any(c > 0 for c, k in zip(info.coordinate, info.placement_kinds) if k in ("replicate", "partial"))
    stats = None if replica or values.numel() == 0 else tensor_stats(values, budget)
    integer = not (dt.dtype.is_floating_point or dt.dtype.is_complex) and dt.dtype != torch.bool
    mine = _partials(stats, integer)
    rows = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(rows, mine)
    over = _over(info, stats.over if stats is not None else "values")
    return merge(rows, dt.dtype, over)


def _over(info: ShardingInfo, what: str) -> str:
    parts = [f"{what} of the whole tensor ({math.prod(info.global_shape):,} elements, merged from the shards of {len(info.shards) or '?'} ranks"]
    if any(k == "replicate" for k in info.placement_kinds):
        parts.append("replicas counted once")
    if info.partial:
        parts.append(f"{', '.join(p for p in info.placements if p.startswith('Partial('))} reduced first")
    if info.empty_ranks:
        parts.append(f"{len(info.empty_ranks)} empty shard{'s' if len(info.empty_ranks) != 1 else ''}")
    return ", ".join(parts) + ")"


def fingerprint(info: ShardingInfo) -> str:
    """What the ranks must agree on before they exchange numbers."""
    return f"{info.global_shape}|{info.dtype}|{info.placements}|{info.mesh_shape}"


__all__ = ["DEFAULT_TIMEOUT", "FIELDS", "global_stats", "merge"]
