"""Where each rank's block lies in a 2-D view of a sharded tensor (plain arithmetic, no torch).

Any number of dims is shown as rows x columns: the columns are the last dim, the rows every
leading dim flattened in order (a 0-d tensor is one cell, a 1-D tensor one row).  A rank's block
becomes one or more rectangles in that view; ranks holding the same rectangle (replicas,
partial values) share it.  The text view is a table over the cut points of the rectangles.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tensormagic.engine.sharding.layout import RankShard, ShardingInfo

#: Rectangles drawn at most (a pathological layout is shown in part, and says so).
MAX_RECTS = 512

#: Cut points per axis shown in the text table at most.
MAX_CUTS = 16


@dataclass(frozen=True, kw_only=True)
class Block:
    """A rectangle of the rows x columns view and the ranks that hold it."""

    row0: int
    row1: int
    col0: int
    col1: int
    ranks: tuple[int, ...]
    partial: bool


@dataclass(frozen=True, kw_only=True)
class Grid:
    """The whole view: its size, the blocks and what was left out."""

    rows: int
    cols: int
    blocks: list[Block]
    truncated: bool
    empty_ranks: list[int]
    leading: str  # how the rows were made, e.g. "dims 0-1 flattened"


def view_size(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


def _rects(shape: Sequence[int], s: RankShard) -> list[tuple[int, int, int, int]]:
    """The rectangles of one rank's block in the rows x columns view (adjacent runs merged)."""
    if math.prod(s.shape) == 0:
        return []
    if len(shape) == 0:
        return [(0, 1, 0, 1)]
    if len(shape) == 1:
        return [(0, 1, s.offset[0], s.offset[0] + s.shape[0])]
    c0, c1 = s.offset[-1], s.offset[-1] + s.shape[-1]
    lead = list(shape[:-1])
    inner = lead[-1]
    outer_ranges = [range(s.offset[d], s.offset[d] + s.shape[d]) for d in range(len(lead) - 1)]
    out: list[tuple[int, int, int, int]] = []
    for idx in itertools.product(*outer_ranges):
        flat = 0
        for d, i in enumerate(idx):
            flat = flat * lead[d] + i
        r0 = flat * inner + s.offset[len(lead) - 1]
        r1 = r0 + s.shape[len(lead) - 1]
        if out and out[-1][1] == r0:
            out[-1] = (out[-1][0], r1, c0, c1)
        else:
            out.append((r0, r1, c0, c1))
        if len(out) > MAX_RECTS:
            break
    return out


def grid(info: ShardingInfo) -> Grid:
    """The blocks of every listed rank (see the module docstring)."""
    rows, cols = view_size(info.global_shape)
    holders: dict[tuple[int, int, int, int], list[int]] = {}
    truncated = not info.shards_listed
    for s in info.shards:
        for rect in _rects(info.global_shape, s):
            holders.setdefault(rect, []).append(s.rank)
        if len(holders) > MAX_RECTS:
            truncated = True
            break
    blocks = [Block(row0=r[0], row1=r[1], col0=r[2], col1=r[3], ranks=tuple(sorted(set(v))), partial=info.partial) for r, v in holders.items()]
    nd = len(info.global_shape)
    leading = "" if nd <= 2 else f"rows: dims 0-{nd - 2} flattened ({' x '.join(map(str, info.global_shape[:-1]))})"
    return Grid(rows=rows, cols=cols, blocks=blocks[:MAX_RECTS], truncated=truncated, empty_ranks=list(info.empty_ranks), leading=leading)


def rank_list(ranks: Sequence[int]) -> str:
    """``r0``, ``r0,r1``, ``r0-r7`` for a run."""
    if len(ranks) > 2 and list(ranks) == list(range(ranks[0], ranks[0] + len(ranks))):
        return f"r{ranks[0]}-r{ranks[-1]}"
    return ",".join(f"r{r}" for r in ranks)


def _span(a: int, b: int) -> str:
    return str(a) if b - a == 1 else f"{a}-{b - 1}"


def text_table(g: Grid, partial_ops: str) -> tuple[list[str], list[list[str]], bool]:
    """Headers and rows of the text grid over the blocks' cut points; True when cut short."""
    rcuts = sorted({0, g.rows} | {b.row0 for b in g.blocks} | {b.row1 for b in g.blocks})
    ccuts = sorted({0, g.cols} | {b.col0 for b in g.blocks} | {b.col1 for b in g.blocks})
    short = len(rcuts) > MAX_CUTS + 1 or len(ccuts) > MAX_CUTS + 1
    rcuts, ccuts = rcuts[: MAX_CUTS + 1], ccuts[: MAX_CUTS + 1]
    headers = ["rows \\ columns"] + [_span(a, b) for a, b in itertools.pairwise(ccuts)]
    body: list[list[str]] = []
    for r0, r1 in itertools.pairwise(rcuts):
        line = [_span(r0, r1)]
        for c0, c1 in itertools.pairwise(ccuts):
            held = sorted({r for b in g.blocks if b.row0 <= r0 and r1 <= b.row1 and b.col0 <= c0 and c1 <= b.col1 for r in b.ranks})
            cell = rank_list(held) if held else "-"
            if held and g.blocks and g.blocks[0].partial:
                cell = f"{partial_ops} of {cell}"
            line.append(cell)
        body.append(line)
    return headers, body, short


__all__ = ["Block", "Grid", "grid", "rank_list", "text_table", "view_size"]
