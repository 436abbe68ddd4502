"""The HTML of automatic display: the one line and a small picture, opening the full panel.

A ``<details>`` element whose ``<summary>`` is the line and the picture, and whose body is the
``%tensorinfo`` panel's own static HTML: it opens with a click in JupyterLab, in nbconvert's
HTML and on GitHub, offline, with no JavaScript.  Every user-derived string is escaped.
"""

from __future__ import annotations

from tensormagic.engine.preview import Preview
from tensormagic.render import html
from tensormagic.render.document import Panel
from tensormagic.render.thumbnail import data_uri, sparkline

#: What each kind of picture is, for its ``alt`` text.
ALT = {"image": "image", "heatmap": "heatmap of the values", "histogram": "histogram of the values", "bars": "parameters per child module"}

STYLE = (
    "<style>"
    ".tm-auto summary{font-weight:normal;cursor:pointer;margin:0}"
    ".tm-auto code{font-size:12px;white-space:pre-wrap}"
    ".tm-auto img{vertical-align:middle;image-rendering:pixelated;margin-left:8px;"
    "border:1px solid rgba(128,128,128,.4)}"
    ".tm-auto .tm-spark{font-family:monospace;color:var(--tm-bar);margin-left:8px}"
    # (in the widget: the header wraps instead of ipywidgets' one-line ellipsis)
    ".tensormagic-auto .widget-html-content{white-space:normal;overflow:visible;line-height:1.4;min-width:0}"
    ".tensormagic-auto .widget-html{min-width:0}"
    "</style>"
)


def picture_html(preview: Preview | None) -> str:
    """An ``<img>`` with the PNG inline, the block-character sparkline without Pillow, or ''."""
    if preview is None:
        return ""
    uri = data_uri(preview)
    if uri is not None:
        return f"<img src=\"{html.e(uri)}\" alt=\"{html.e(ALT.get(preview.kind, 'picture') + (f' ({preview.note})' if preview.note else ''))}\">"
    spark = sparkline(preview)
    return f"<span class=\"tm-spark\">{html.e(spark)}</span>" if spark else ""


def summary_html(line: str, preview: Preview | None, level: str = "info") -> str:
    """The line (with a mark when it reports NaN/inf) and the picture, as inline HTML."""
    mark = "<span class=\"tm-error\">⚠</span> " if level == "error" else ""
    return f"{mark}<code>{html.e(line)}</code>{picture_html(preview)}"


def auto_html(line: str, preview: Preview | None, panel: Panel, level: str = "info") -> str:
    """The whole ``text/html`` of an automatically displayed object."""
    body = html.render_panel(panel).removeprefix(html.STYLE)
    return (
        html.STYLE + STYLE + "<div class=\"tensormagic tm-auto\"><details><summary>"
        + summary_html(line, preview, level) + "</summary>" + body + "</details></div>"
    )


__all__ = ["auto_html", "picture_html", "summary_html"]
