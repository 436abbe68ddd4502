"""How a DTensor is laid out over its device mesh, as plain values, computed without communication.

:func:`sharding_info` reads the mesh, the placements and the global shape, and computes every
rank's local shape and offset locally (torch's own ``compute_local_shape_and_global_offset``
where its private helper exists, else torch's chunking rule re-done here).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

#: Ranks whose shards are listed one by one, at most (a report stays small on a big cluster).
MAX_LISTED_RANKS = 1024

PlacementKind = Literal["shard", "replicate", "partial", "other"]


@dataclass(frozen=True, kw_only=True)
class RankShard:
    """The block one rank of the mesh holds."""

    rank: int
    coordinate: list[int]
    shape: list[int]
    offset: list[int]

    @property
    def empty(self) -> bool:
        return math.prod(self.shape) == 0


@dataclass(frozen=True, kw_only=True)
class ShardingInfo:
    """A DTensor's layout: the mesh, the placements, this rank's block and every rank's."""

    mesh_shape: list[int]
    mesh_dim_names: list[str] | None
    device_type: str
    rank: int
    coordinate: list[int] | None  # None: this rank is not in the mesh
    placements: list[str]  # "Shard(0)", "Replicate()", "Partial(sum)"
    placement_kinds: list[PlacementKind]
    global_shape: list[int]
    dtype: str
    itemsize: int
    local_shape: list[int]
    local_offset: list[int]
    local_nbytes: int
    global_nbytes: int
    held_nbytes: int  # bytes held on all the ranks together (replicas and partials included)
    replication: float  # held_nbytes / global_nbytes (1.0: each element is held once)
    uneven: bool  # the shards do not all have the same shape
    empty: bool  # this rank's shard holds no element
    empty_ranks: list[int]
    shards: list[RankShard] = field(default_factory=list)  # every rank's block (up to MAX_LISTED_RANKS)
    shards_listed: bool = True  # False when the mesh has more ranks than MAX_LISTED_RANKS
    offsets_from: Literal["torch", "tensormagic"] = "torch"  # who computed the shards' offsets

    @property
    def partial(self) -> bool:
        return "partial" in self.placement_kinds


def placement_text(p: Any) -> str:
    """A placement as the issue's strings: ``Shard(0)``, ``Replicate()``, ``Partial(sum)``."""
    name = type(p).__name__
    if name == "_StridedShard":
        return f"StridedShard({p.dim}, split_factor={p.split_factor})"
    if p.is_shard():
        return f"Shard({p.dim})"
    if p.is_replicate():
        return "Replicate()"
    if p.is_partial():
        return f"Partial({getattr(p, 'reduce_op', '?')})"
    return str(p)


def placement_kind(p: Any) -> PlacementKind:
    if p.is_shard():
        return "shard"
    if p.is_replicate():
        return "replicate"
    if p.is_partial():
        return "partial"
    return "other"


def chunk_bounds(size: int, parts: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of chunk ``index`` when ``size`` is split as ``torch.chunk`` does (the
    last chunks may be short or empty)."""
    step = -(-size // parts) if parts else size
    start = min(index * step, size)
    return start, min(start + step, size)


def own_shape_and_offset(global_shape: Sequence[int], mesh_shape: Sequence[int], coordinate: Sequence[int], placements: Sequence[Any]) -> tuple[list[int], list[int]]:
    """A rank's local shape and offset by torch's chunking rule (plain ``Shard`` only)."""
    shape, offset = list(global_shape), [0] * len(global_shape)
    for mesh_dim, p in enumerate(placements):
        if not p.is_shard():
            continue
        if type(p).__name__ == "_StridedShard":
            raise ValueError("strided sharding needs torch's own layout helper")
        start, stop = chunk_bounds(shape[p.dim], mesh_shape[mesh_dim], coordinate[mesh_dim])
        offset[p.dim] += start
        shape[p.dim] = stop - start
    return shape, offset


def _shape_and_offset(global_shape: Sequence[int], mesh_shape: Sequence[int], coordinate: Sequence[int], placements: Sequence[Any]) -> tuple[list[int], list[int], Literal["torch", "tensormagic"]]:
    try:
        from torch.distributed.tensor._utils import (
            _compute_local_shape_and_global_offset,
        )

        shape, offset = _compute_local_shape_and_global_offset(tuple(global_shape), tuple(mesh_shape), list(coordinate), list(placements))
        return [int(s) for s in shape], [int(o) for o in offset], "torch"
    except (ImportError, TypeError, AttributeError):  # a torch whose private helper differs
        shape_, offset_ = own_shape_and_offset(global_shape, mesh_shape, coordinate, placements)
        return shape_, offset_, "tensormagic"


def _this_rank() -> int:
    import torch.distributed as dist

    return int(dist.get_rank()) if dist.is_available() and dist.is_initialized() else 0


def sharding_info(dt: DTensor) -> ShardingInfo:
    """The layout of ``dt`` (no communication: metadata and arithmetic only)."""
    mesh = dt.device_mesh
    placements = list(dt.placements)
    mesh_shape = [int(s) for s in mesh.shape]
    names = list(mesh.mesh_dim_names) if mesh.mesh_dim_names else None
    ranks = mesh.mesh.tolist()
    coord = mesh.get_coordinate()
    coordinate = [int(c) for c in coord] if coord is not None else None
    global_shape = [int(s) for s in dt.shape]
    local = dt.to_local()
    itemsize = int(dt.element_size())
    shards: list[RankShard] = []
    source: Literal["torch", "tensormagic"] = "torch"
    total = math.prod(mesh_shape)
    listed = total <= MAX_LISTED_RANKS
    held = 0
    shapes: set[tuple[int, ...]] = set()
    empty_ranks: list[int] = []
    for c in itertools.product(*(range(s) for s in mesh_shape)):
        shape, offset, source = _shape_and_offset(global_shape, mesh_shape, c, placements)
        rank_value: Any = ranks
        for i in c:
            rank_value = rank_value[i]
        rank = int(rank_value)
        n = math.prod(shape)
        held += n * itemsize
        shapes.add(tuple(shape))
        if n == 0:
            empty_ranks.append(rank)
        if listed:
            shards.append(RankShard(rank=rank, coordinate=list(c), shape=shape, offset=offset))
    mine = next((s for s in shards if s.coordinate == coordinate), None)
    if coordinate is not None and mine is None:
        shape, offset, source = _shape_and_offset(global_shape, mesh_shape, coordinate, placements)
    elif mine is not None:
        shape, offset = mine.shape, mine.offset
    else:
        shape, offset = [0] * len(global_shape), [0] * len(global_shape)
    global_nbytes = math.prod(global_shape) * itemsize
    return ShardingInfo(
        mesh_shape=mesh_shape,
        mesh_dim_names=names,
        device_type=str(mesh.device_type),
        rank=_this_rank(),
        coordinate=coordinate,
        placements=[placement_text(p) for p in placements],
        placement_kinds=[placement_kind(p) for p in placements],
        global_shape=global_shape,
        dtype=str(dt.dtype),
        itemsize=itemsize,
        local_shape=[int(s) for s in local.shape],
        local_offset=offset,
        local_nbytes=int(local.numel()) * itemsize,
        global_nbytes=global_nbytes,
        held_nbytes=held,
        replication=(held / global_nbytes) if global_nbytes else 1.0,
        uneven=len(shapes) > 1,
        empty=local.numel() == 0,
        empty_ranks=empty_ranks,
        shards=shards,
        shards_listed=listed,
        offsets_from=source,
    )


def mesh_words(mesh_shape: Sequence[int], device_type: str) -> str:
    """``a 2-rank cpu mesh`` (1-D) or ``a 2x2 cpu mesh``."""
    if len(mesh_shape) == 1:
        return f"a {mesh_shape[0]}-rank {device_type} mesh"
    return f"a {'x'.join(map(str, mesh_shape))} {device_type} mesh"


def block_label(info: ShardingInfo, shape: Sequence[int] | None = None, offset: Sequence[int] | None = None) -> str:
    """Which part of the global tensor a block is: ``rows 0-3``, ``rows 0-7, columns 2-3``."""
    shape = list(info.local_shape if shape is None else shape)
    offset = list(info.local_offset if offset is None else offset)
    if math.prod(shape) == 0:
        return "empty: no elements"
    parts: list[str] = []
    nd = len(info.global_shape)
    for d, (n, o, g) in enumerate(zip(shape, offset, info.global_shape)):
        if n == g:
            continue
        word = ("row", "rows") if d == 0 else (("column", "columns") if d == nd - 1 and nd == 2 else (f"dim {d} index", f"dim {d} indices"))
        parts.append(f"{word[0]} {o}" if n == 1 else f"{word[1]} {o}-{o + n - 1}")
    return ", ".join(parts) or "all of it"


__all__ = ["MAX_LISTED_RANKS", "RankShard", "ShardingInfo", "block_label", "chunk_bounds", "mesh_words", "own_shape_and_offset", "placement_text", "sharding_info"]
