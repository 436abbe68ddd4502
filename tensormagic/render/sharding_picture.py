"""The layout picture of a sharded tensor: the global tensor as blocks labelled by the ranks that hold them.

Drawn as SVG by hand (rectangles and text), then passed through :func:`~.svg.inert_svg` like
every other picture.  Blocks held by one rank get that rank's colour; blocks held by several
(replicas) a lighter fill with every holder named; ``Partial`` blocks are hatched with a dashed
border, so partial values never look like a replica of the tensor.
"""

from __future__ import annotations

from html import escape

from tensormagic.engine.sharding.layout import ShardingInfo
from tensormagic.render.document import Drawing
from tensormagic.render.sharding_grid import Block, Grid, grid, rank_list
from tensormagic.render.svg import THEME_COLOR, inert_svg

WIDTH = 420
MAX_HEIGHT = 300
MIN_HEIGHT = 60
MARGIN = 24

_PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


def _hatch(x: float, y: float, w: float, h: float, step: float = 7.0) -> list[str]:
    """45-degree lines across the rectangle, clipped to it by arithmetic."""
    out: list[str] = []
    k = step
    while k < w + h:
        # the line x' - x + (y + h - y') = k, inside the rectangle
        x1, y1 = x + max(0.0, k - h), y + h - min(k, h)
        x2, y2 = x + min(k, w), y + h - max(0.0, k - w)
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{THEME_COLOR}" stroke-opacity="0.45" stroke-width="1"/>')
        k += step
    return out


def _colour(b: Block) -> str:
    return _PALETTE[b.ranks[0] % len(_PALETTE)] if b.ranks else "#cccccc"


def _label(b: Block, ops: str) -> str:
    names = rank_list(b.ranks)
    return f"{ops}: {names}" if b.partial else names


def alt_text(info: ShardingInfo, g: Grid) -> str:
    kinds = ", ".join(info.placements)
    return f"sharding of a {list(info.global_shape)} tensor over a {'x'.join(map(str, info.mesh_shape))} mesh ({kinds}): {len(g.blocks)} blocks, this is rank {info.rank}"


def svg_markup(info: ShardingInfo) -> tuple[str, Grid]:
    """The raw SVG (before :func:`inert_svg`) and the grid it draws."""
    g = grid(info)
    inner_w = WIDTH - 2 * MARGIN
    inner_h = max(MIN_HEIGHT, min(MAX_HEIGHT, inner_w * g.rows / max(g.cols, 1)))
    height = inner_h + 2 * MARGIN
    ops = ", ".join(p for p in info.placements if p.startswith("Partial(")) or "Partial"
    sx, sy = inner_w / max(g.cols, 1), inner_h / max(g.rows, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}">']
    parts.append(f'<rect x="{MARGIN}" y="{MARGIN}" width="{inner_w}" height="{inner_h:.1f}" fill="#f4f4f4" stroke="{THEME_COLOR}" stroke-width="1"/>')
    mine = set()
    for b in g.blocks:
        x, y = MARGIN + b.col0 * sx, MARGIN + b.row0 * sy
        w, h = (b.col1 - b.col0) * sx, (b.row1 - b.row0) * sy
        replica = len(b.ranks) > 1 and not b.partial
        dash = ' stroke-dasharray="4 3"' if b.partial else ""
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{_colour(b)}" fill-opacity="{0.35 if replica or b.partial else 0.75}" stroke="{THEME_COLOR}" stroke-width="{2 if info.rank in b.ranks else 1}"{dash}/>')
        if b.partial:
            parts += _hatch(x, y, w, h)
        if info.rank in b.ranks:
            mine.add(b)
        if w >= 18 and h >= 11:
            text = _label(b, ops)
            size = max(8.0, min(12.0, h * 0.6, w / max(len(text), 1) * 1.7))
            parts.append(f'<text x="{x + w / 2:.1f}" y="{y + h / 2 + size * 0.35:.1f}" font-size="{size:.1f}" text-anchor="middle" fill="{THEME_COLOR}" font-weight="{"bold" if b in mine else "normal"}">{escape(text)}</text>')
    shape = "x".join(map(str, info.global_shape)) or "scalar"
    parts.append(f'<text x="{MARGIN}" y="{MARGIN - 8}" font-size="11" text-anchor="start" fill="{THEME_COLOR}">{escape(f"global {shape}: columns = last dim" + ("; " + g.leading if g.leading else ""))}</text>')
    foot = f"bold: rank {info.rank} (this one)" + ("; hatched, dashed: partial values (the tensor is their reduction)" if info.partial else "")
    parts.append(f'<text x="{MARGIN}" y="{height - 8:.0f}" font-size="10" text-anchor="start" fill="{THEME_COLOR}">{escape(foot)}</text>')
    parts.append("</svg>")
    return "".join(parts), g


def draw_layout(info: ShardingInfo) -> Drawing:
    """The inert SVG of the layout, with its alt text and what was left out."""
    markup, g = svg_markup(info)
    notes: list[str] = []
    if g.truncated:
        notes.append("too many blocks to draw them all: the picture shows part of the layout")
    if g.empty_ranks:
        many = len(g.empty_ranks) != 1
        notes.append(f"rank{'s' if many else ''} {', '.join(map(str, g.empty_ranks))} hold{'' if many else 's'} {'empty shards' if many else 'an empty shard'} (not drawn)")
    label = alt_text(info, g)
    return Drawing(svg=inert_svg(markup, label, css_class="tm-picture tm-sharding"), alt=label, notes=notes)


__all__ = ["alt_text", "draw_layout", "svg_markup"]
