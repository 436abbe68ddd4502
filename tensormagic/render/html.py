"""Render a :class:`~tensormagic.render.document.Panel` as plain semantic HTML.

No JavaScript and nothing that needs CSS to read well (GitHub strips both): headings, tables,
``details``/``summary`` and ``code``.  A small scoped style sheet only improves the look where it
is allowed.  Every string is escaped here, so user-derived names and reprs can never inject markup.
"""

from __future__ import annotations

import base64
from html import escape

from tensormagic.render.document import (
    Action,
    Bars,
    Block,
    KeyValues,
    Note,
    Panel,
    Picture,
    Preformatted,
    Section,
    Table,
)
from tensormagic.render.text import bar, bar_lengths

_MARK = {"info": "ℹ", "ok": "✔", "warning": "⚠", "error": "✘"}

STYLE = (
    # Colours: our own variables, darker on light themes and lighter on dark ones (JupyterLab,
    # nbconvert --theme dark, VS Code), each at least 4.5:1 against the background (WCAG AA);
    # JupyterLab's --jp-warn-color0 & co. are too pale for text on white.
    "<style>"
    ".tensormagic{--tm-bar:#2563eb;--tm-warn:#b45309;--tm-err:#b91c1c;--tm-ok:#15803d;"
    "line-height:1.45;color:var(--jp-content-font-color1,inherit)}"
    "[data-jp-theme-light=false] .tensormagic,.vscode-dark .tensormagic,.vscode-high-contrast .tensormagic"
    "{--tm-bar:#60a5fa;--tm-warn:#fbbf24;--tm-err:#f87171;--tm-ok:#4ade80}"
    # Row labels and first columns (names) stay on one line; other cells wrap to fit the panel.
    ".tensormagic table{border-collapse:collapse;margin:4px 0 8px;font-size:12px}"
    ".tensormagic th[scope=row],.tensormagic td:first-child,.tensormagic td:not(:last-child){white-space:nowrap}"
    # (in the widget: let ipywidgets' flex boxes shrink to the panel instead of growing to the table)
    ".tensormagic-panel .widget-html,.tensormagic-panel .widget-html-content{min-width:0}"
    ".tensormagic caption{text-align:left;font-weight:600;padding:2px 8px}"
    ".tensormagic th,.tensormagic td{padding:3px 10px;text-align:left;vertical-align:top;"
    "border-bottom:1px solid var(--jp-border-color2,rgba(128,128,128,.25))}"
    ".tensormagic th{font-weight:600}"
    ".tensormagic .tm-bar{font-family:monospace;white-space:pre;color:var(--tm-bar)}"
    ".tensormagic .tm-warning{color:var(--tm-warn)}.tensormagic .tm-error{color:var(--tm-err)}"
    ".tensormagic .tm-ok{color:var(--tm-ok)}"
    ".tensormagic p{margin:4px 0}"
    ".tensormagic summary{font-weight:600;cursor:pointer;margin-top:4px}"
    ".tensormagic pre{font-size:12px;margin:2px 0;line-height:1.35}"
    ".tensormagic .tm-wide{overflow-x:auto;max-width:100%}.tensormagic .tm-wide td{white-space:nowrap}"
    # Pictures: never wider than the panel (their width and height attributes are the most)
    ".tensormagic .tm-picture{max-width:100%;height:auto;display:block;margin:4px 0}"
    # (a tensor's pixels, drawn larger than they are: as squares, not blurred)
    ".tensormagic .tm-pixels{image-rendering:pixelated}"
    "</style>"
)


def e(text: object) -> str:
    """Escape any value for HTML text and attributes."""
    return escape(str(text), quote=True)


def render_block(block: Block) -> str:
    """HTML of one block."""
    if isinstance(block, KeyValues):
        rows = "".join(f"<tr><th scope=\"row\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in block.rows)
        return f"<table>{rows}</table>"
    if isinstance(block, Table):
        caption = f"<caption>{e(block.caption)}</caption>" if block.caption else ""
        head = "".join(f"<th scope=\"col\">{e(h)}</th>" for h in block.headers)
        cell = ["<td class=\"tm-bar\">" if i in block.bars else "<td>" for i in range(len(block.headers))]
        body = "".join("<tr>" + "".join(f"{cell[i] if i < len(cell) else '<td>'}{e(c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in block.rows)
        more = ""
        if block.total_rows is not None and block.total_rows > len(block.rows):
            more = f"<p><em>… {block.total_rows - len(block.rows):,} more rows not shown</em></p>"
        table = f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return (f"<div class=\"tm-wide\">{table}</div>" if block.wide else table) + more
    if isinstance(block, Note):
        return f"<p class=\"tm-{e(block.level)}\">{_MARK[block.level]} {e(block.text)}</p>"
    if isinstance(block, Bars):
        caption = f"<caption>{e(block.caption + (' (log scale)' if block.log else ''))}</caption>" if block.caption else ""
        lengths, top = bar_lengths(block.values, block.log)
        rows = "".join(
            f"<tr><td>{e(label)}</td><td class=\"tm-bar\">{e(bar(length, top) or '▏')}</td><td>{e(block.value_format.format(v))}</td></tr>"
            for label, v, length in zip(block.labels, block.values, lengths)
        )
        return f"<table>{caption}<tbody>{rows}</tbody></table>"
    if isinstance(block, Picture):
        return _picture(block)
    if isinstance(block, Preformatted):
        return f"<pre><code>{e(block.text)}</code></pre>"
    if isinstance(block, Action):
        return f"<p>{e(block.fallback)}</p>"
    raise TypeError(f"unknown block {type(block).__name__}")  # pragma: no cover


def _picture(block: Picture) -> str:
    """The picture (inline SVG, or a PNG data URI with its alt text), its caption and notes, and
    the text version collapsed under it; where it cannot be drawn, the text version and why."""
    drawing = block.drawing()
    text = "".join(render_block(b) for b in block.text)
    if drawing.svg is None and drawing.png is None:
        why = render_block(Note(drawing.missing, "info")) if drawing.missing else ""
        return text + why
    if drawing.svg is not None:
        picture = drawing.svg  # already inert: parsed, allowlisted and escaped by render.svg
    else:
        data = base64.b64encode(drawing.png or b"").decode("ascii")
        size = f" width=\"{drawing.size[0]}\" height=\"{drawing.size[1]}\"" if drawing.size else ""
        css = "tm-picture tm-pixels" if drawing.size else "tm-picture"
        picture = f"<img class=\"{css}\" alt=\"{e(drawing.alt)}\"{size} src=\"data:image/png;base64,{data}\">"
    out = [f"<div>{picture}</div>"]
    if block.caption:
        out.append(render_block(Note(block.caption)))
    out += [render_block(Note(n)) for n in drawing.notes]
    if text and block.text_summary:
        out.append(f"<details><summary>{e(block.text_summary)}</summary>{text}</details>")
    return "".join(out)


def render_section(section: Section) -> str:
    """The blocks of one section (no heading)."""
    return "".join(render_block(b) for b in section.blocks)


def render_panel(panel: Panel) -> str:
    """The whole panel: a heading, the headline, the first section open, the rest in details."""
    parts = [STYLE, "<div class=\"tensormagic\">", f"<h4>{e(panel.title)}</h4>"]
    parts.append(f"<p class=\"tm-{e(panel.headline_level)}\"><strong>{e(panel.headline)}</strong></p>")
    for i, section in enumerate(panel.sections):
        opened = " open" if i == 0 else ""
        parts.append(f"<details{opened}><summary>{e(section.title)}</summary>{render_section(section)}</details>")
    parts.append("</div>")
    return "".join(parts)
