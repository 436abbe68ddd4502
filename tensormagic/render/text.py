"""Render a :class:`~tensormagic.render.document.Panel` as plain text (terminal IPython)."""

from __future__ import annotations

import math

from tensormagic.render.document import (
    Action,
    Bars,
    Block,
    KeyValues,
    Note,
    Panel,
    Picture,
    Preformatted,
    Table,
)

_MARK = {"info": "·", "ok": "✓", "warning": "!", "error": "✗"}
BAR_WIDTH = 30


def bar(value: float, top: float, width: int = BAR_WIDTH) -> str:
    """A bar of block characters, ``value`` out of ``top``, in eighths of a character."""
    if top <= 0 or value <= 0:
        return ""
    eighths = round(width * 8 * min(value / top, 1.0))
    full, part = divmod(eighths, 8)
    return "█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])


def bar_lengths(values: list[float], log: bool) -> tuple[list[float], float]:
    """What :func:`bar` draws for each value, and the top: the values themselves (linear), or
    on a log scale their decades above a floor a decade below the smallest positive value, so
    that the smallest still shows and 1e-7 never looks like 0.05.  Zero, negative and
    non-finite values get no bar."""
    if not log:
        return [abs(v) if math.isfinite(v) else 0.0 for v in values], max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    positive = [v for v in values if math.isfinite(v) and v > 0]
    if not positive:
        return [0.0] * len(values), 0.0
    floor = math.log10(min(positive)) - 1
    top = math.log10(max(positive)) - floor
    return [math.log10(v) - floor if math.isfinite(v) and v > 0 else 0.0 for v in values], top


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return lines


def render_block(block: Block) -> list[str]:
    """Lines of one block."""
    if isinstance(block, KeyValues):
        width = max((len(k) for k, _ in block.rows), default=0)
        return [f"{k.ljust(width)}  {v}" for k, v in block.rows]
    if isinstance(block, Table):
        lines = [block.caption] if block.caption else []
        lines += _table(block.headers, block.rows)
        if block.total_rows is not None and block.total_rows > len(block.rows):
            lines.append(f"... {block.total_rows - len(block.rows):,} more rows not shown")
        return lines
    if isinstance(block, Note):
        return [f"{_MARK[block.level]} {block.text}"]
    if isinstance(block, Bars):
        lines = [block.caption + (" (log scale)" if block.log else "")] if block.caption else []
        lengths, top = bar_lengths(block.values, block.log)
        width = max((len(label) for label in block.labels), default=0)
        for label, value, length in zip(block.labels, block.values, lengths):
            lines.append(f"{label.rjust(width)} │{bar(length, top).ljust(BAR_WIDTH)}│ {block.value_format.format(value)}")
        return lines
    if isinstance(block, Picture):
        out: list[str] = []
        for i, part in enumerate(block.text):
            if i:
                out.append("")
            out += render_block(part)
        return out
    if isinstance(block, Preformatted):
        return block.text.splitlines()
    if isinstance(block, Action):
        return [f"· {block.fallback}"]
    raise TypeError(f"unknown block {type(block).__name__}")  # pragma: no cover


def render_panel(panel: Panel) -> str:
    """The whole panel as text: title, headline, then each section under a heading."""
    lines = [panel.title, f"{_MARK[panel.headline_level]} {panel.headline}"]
    for section in panel.sections:
        lines += ["", f"── {section.title} " + "─" * max(0, 60 - len(section.title))]
        first = True
        for block in section.blocks:
            got = render_block(block)
            if not got:
                continue  # a picture with no text version
            if not first:
                lines.append("")
            lines += got
            first = False
    return "\n".join(lines)
