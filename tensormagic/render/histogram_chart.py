"""The histogram of ``%tensorinfo`` drawn with matplotlib as inert inline SVG.

Bars over the bin edges (one bar per value for integers and booleans), a log count axis when
the counts span decades, and markers for min, max, mean and mean ± std.  matplotlib is
imported only when a chart is drawn (the object API, no pyplot), as in :mod:`.charts`; lines and
labels use :data:`~.svg.THEME_COLOR`, so they follow the light or dark theme.
"""

from __future__ import annotations

import functools
import io

from tensormagic.engine.tensorinfo.pictures.reports import HistogramView
from tensormagic.render.charts import CHART_STYLE, WEB_FONT, missing_matplotlib
from tensormagic.render.document import Drawing
from tensormagic.render.format import fmt_number, truncate
from tensormagic.render.svg import THEME_COLOR, inert_svg

BAR = "#2563eb"
#: Marker colours: the mean, the ±1 std band's edges, min and max.
MEAN = "#dc2626"
STD = "#d97706"


def histogram_alt(name: str, h: HistogramView) -> str:
    """What the chart shows, in words (its aria-label)."""
    what = "one bar per value" if h.integer else f"{len(h.counts)} equal bins from {fmt_number(h.edges[0])} to {fmt_number(h.edges[-1])}"
    how = "every element" if h.exact else "a fixed-seed sample"
    alt = f"histogram of {truncate(name, 60)}: {what}, {h.counted:,} values counted over {how}"
    if h.log:
        alt += ", counts on a log scale"
    if "mean" in h.markers:
        alt += f"; mean {fmt_number(h.markers['mean'])}"
    return alt


def histogram_drawing(name: str, h: HistogramView) -> Drawing:
    """The chart as a :class:`Drawing` (the reason instead when matplotlib is missing)."""
    alt = histogram_alt(name, h)
    hint = missing_matplotlib()
    if hint is not None:
        return Drawing(alt=alt, missing=hint)
    key = (tuple(h.edges), tuple(h.counts), h.integer, h.boolean, h.log, tuple(sorted(h.markers.items())))
    return Drawing(svg=_chart(key, alt), alt=alt)


@functools.lru_cache(maxsize=32)
def _chart(key: tuple[tuple[float, ...], tuple[int, ...], bool, bool, bool, tuple[tuple[str, float], ...]], alt: str) -> str:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    edges, counts, integer, boolean, log, marker_items = key
    markers = dict(marker_items)
    with matplotlib.rc_context(CHART_STYLE):  # type: ignore[arg-type]
        fig = Figure(figsize=(6.4, 2.6), dpi=72)
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        if integer:
            xs = [edges[i] for i in range(len(counts))]
            ax.bar(xs, counts, width=0.8, color=BAR)
            if boolean:
                ax.set_xticks([0, 1], ["False", "True"])
            elif len(xs) <= 16:
                ax.set_xticks(xs, [f"{x:g}" for x in xs])
        else:
            widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
            ax.bar(edges[:-1], counts, width=widths, align="edge", color=BAR, edgecolor=BAR, linewidth=0.3)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(0.7, max(counts) * 1.6)
        else:
            ax.set_ylim(0, max(max(counts), 1) * 1.12)
        top = ax.get_ylim()[1]
        if not boolean:
            for label, colour, style_ in (("min", THEME_COLOR, ":"), ("max", THEME_COLOR, ":"), ("mean", MEAN, "-"), ("mean - std", STD, "--"), ("mean + std", STD, "--")):
                x = markers.get(label)
                if x is None:
                    continue
                ax.axvline(x, color=colour, linewidth=1.0, linestyle=style_, alpha=0.9)
                if label in ("mean", "mean - std", "mean + std"):
                    text = "mean" if label == "mean" else ("−1 std" if label == "mean - std" else "+1 std")
                    ax.text(x, top, text, fontsize=7, ha="center", va="bottom", color=colour)
        ax.set_xlabel("value")
        ax.set_ylabel("count (log scale)" if log else "count")
        ax.grid(axis="y", color=THEME_COLOR, alpha=0.15, linewidth=0.6)
        fig.subplots_adjust(left=0.11, right=0.98, top=0.88, bottom=0.2)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return inert_svg(out.getvalue(), alt, font=WEB_FONT)


__all__ = ["histogram_alt", "histogram_drawing"]
