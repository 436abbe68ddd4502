"""The sharding section of a DTensor's tensorinfo panel: mesh, placements, every rank's block, the picture."""

from __future__ import annotations

from tensormagic.engine.sharding.layout import ShardingInfo, block_label
from tensormagic.render.document import Block, KeyValues, Note, Picture, Section, Table
from tensormagic.render.format import fmt_bytes, fmt_shape
from tensormagic.render.sharding_grid import grid, text_table
from tensormagic.render.sharding_picture import draw_layout

#: Ranks listed in the table of blocks at most.
MAX_RANK_ROWS = 64


def mesh_text(info: ShardingInfo) -> str:
    dims = "x".join(map(str, info.mesh_shape))
    names = f" ({', '.join(info.mesh_dim_names)})" if info.mesh_dim_names else ""
    ranks = 1
    for n in info.mesh_shape:
        ranks *= n
    if len(info.mesh_shape) == 1:
        return f"1-D{names}: {ranks} rank{'s' if ranks != 1 else ''} on {info.device_type}"
    return f"{dims}{names}: {ranks} ranks on {info.device_type}"


def placement_rows(info: ShardingInfo) -> list[tuple[str, str]]:
    """One row per mesh dimension: its name or number and its placement."""
    rows = []
    for i, p in enumerate(info.placements):
        name = info.mesh_dim_names[i] if info.mesh_dim_names else str(i)
        rows.append((f"mesh dim {name} ({info.mesh_shape[i]} ranks)", p))
    return rows


def picture(info: ShardingInfo) -> Picture:
    """The layout picture, with the text grid as its text version."""
    ops = ", ".join(p for p in info.placements if p.startswith("Partial(")) or "Partial"
    g = grid(info)
    headers, rows, short = text_table(g, ops)
    caption = "which ranks hold which block of the global tensor" + (f" ({g.leading})" if g.leading else "")
    text: list[Block] = [Table(headers, rows, caption=caption + (" (cut short)" if short else ""))]
    if info.partial:
        text.append(Note(f"{ops}: every rank shown holds a full-size partial value of those elements; the tensor is their reduction, not any one of them"))
    if info.empty_ranks:
        text.append(Note(f"empty shards (no elements): ranks {', '.join(map(str, info.empty_ranks))}"))
    return Picture(draw=lambda: draw_layout(info), text=text, caption=caption, text_summary="the layout as a table")


def sharding_section(info: ShardingInfo) -> Section:
    """Everything about the layout, all known on this rank without communication."""
    coord = f" at mesh coordinate {tuple(info.coordinate)}" if info.coordinate is not None else " (not in this mesh)"
    rows = [
        ("mesh", mesh_text(info)),
        ("this rank", f"{info.rank}{coord}"),
        *placement_rows(info),
        ("global shape", f"{fmt_shape(info.global_shape)} {info.dtype}"),
        ("local shape", f"{fmt_shape(info.local_shape)} at offset {fmt_shape(info.local_offset)} ({block_label(info)})"),
        ("bytes on this rank", fmt_bytes(info.local_nbytes)),
        ("global logical bytes", fmt_bytes(info.global_nbytes)),
        ("held on all ranks", f"{fmt_bytes(info.held_nbytes)} (replication factor {info.replication:.3g})"),
    ]
    flags = [name for name, on in (("uneven", info.uneven), ("this shard is empty", info.empty), ("partial", info.partial)) if on]
    rows.append(("flags", ", ".join(flags) or "-"))
    blocks: list[Block] = [KeyValues(rows)]
    table = [
        [str(s.rank) + (" (this rank)" if s.rank == info.rank else ""), str(tuple(s.coordinate)), fmt_shape(s.shape), fmt_shape(s.offset), block_label(info, s.shape, s.offset)]
        for s in info.shards[:MAX_RANK_ROWS]
    ]
    if table:
        blocks.append(Table(["rank", "mesh coordinate", "local shape", "offset", "block"], table, caption="every rank's block (computed here, no communication)", total_rows=len(info.shards)))
    blocks.append(picture(info))
    if info.empty:
        blocks.append(Note("this rank's shard is empty: it holds no element of the tensor", "warning"))
    return Section("Sharding", blocks)


__all__ = ["mesh_text", "picture", "placement_rows", "sharding_section"]
