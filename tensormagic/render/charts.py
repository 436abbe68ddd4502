"""Charts drawn with matplotlib as inert inline SVG: the gradient-flow chart of ``%%autograd``.

matplotlib is imported only when a chart is drawn (about 0.4 s, once per process), through its
object API (``Figure`` and the SVG canvas: no pyplot, no global state, no backend switch in a
notebook) under a local ``rc_context``.  Text stays text in the SVG (``svg.fonttype: none``),
lines and labels are drawn in :data:`~.svg.THEME_COLOR` (so they follow the theme), and names
are passed with ``$`` escaped (matplotlib would read ``$...$`` as mathtext).  Charts are cached
by their data.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from typing import Any

from tensormagic.engine.autograd.health import EXPLODING, VANISHING
from tensormagic.engine.autograd.report import HealthRow
from tensormagic.render.document import Drawing
from tensormagic.render.format import truncate
from tensormagic.render.svg import THEME_COLOR, inert_svg

#: Bar colours by flag.
FLAG_COLORS = {None: "#2563eb", "vanishing": "#d97706", "exploding": "#d97706", "NaN/inf": "#dc2626"}
FONT = "DejaVu Sans"
#: What the browser draws the chart's text in.
WEB_FONT = "Helvetica,Arial,sans-serif"



#: matplotlib settings of every chart: text stays text (``svg.fonttype: none``), colours follow the
#: theme (:data:`~.svg.THEME_COLOR`), no background, no inline images, a stable id salt.
CHART_STYLE: dict[str, Any] = {
    "svg.fonttype": "none", "svg.hashsalt": "tensormagic", "font.family": FONT, "font.size": 8,
    "text.color": THEME_COLOR, "axes.edgecolor": THEME_COLOR, "axes.labelcolor": THEME_COLOR,
    "xtick.color": THEME_COLOR, "ytick.color": THEME_COLOR, "axes.facecolor": "none",
    "figure.facecolor": "none", "savefig.facecolor": "none", "savefig.transparent": True,
    "axes.spines.top": False, "axes.spines.right": False, "svg.image_inline": False,
}  # fmt: skip


def missing_matplotlib() -> str | None:
    """A one-line hint when matplotlib is not installed (None: it is)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "to see this chart drawn, install matplotlib (pip install matplotlib)"
    return None


def _decade(value: float, _: object = None) -> str:
    """``1e-7``, ``0.01``, ``1``, ``100``, ``1e5`` for a tick at a power of ten."""
    k = round(math.log10(value)) if value > 0 else 0
    return f"{10.0 ** k:g}" if -2 <= k <= 3 else f"1e{k}"


def _plain(label: str) -> str:
    return truncate(label, 40).replace("$", r"\$")


def gradient_flow(rows: Sequence[HealthRow]) -> Drawing:
    """Each parameter's gradient norm as a bar on a log scale, inputs first (top), coloured by
    flag; exact zeros and NaN/inf are marked and named, never drawn as bars."""
    alt = f"gradient flow chart: the gradient norm of {len(rows):,} parameter{'s' if len(rows) != 1 else ''} on a log scale, inputs first"
    flagged = [f"{r.name} ({r.flag})" for r in rows if r.flag]
    if flagged:
        alt += "; flagged: " + truncate(", ".join(flagged[:6]), 200)
    hint = missing_matplotlib()
    if hint is not None:
        return Drawing(alt=alt, missing=hint)
    key = tuple((r.name, float(r.grad_norm), r.flag) for r in rows)
    return Drawing(svg=_chart(key, alt), alt=alt)


@functools.lru_cache(maxsize=32)
def _chart(rows: tuple[tuple[str, float, str | None], ...], alt: str) -> str:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    finite = [v for _, v, _ in rows if math.isfinite(v) and v > 0]
    # from a decade below the smallest norm (so that its bar shows) to the decade above the largest
    lo = 10.0 ** (math.floor(math.log10(min(finite))) - 1) if finite else 1e-8
    hi = 10.0 ** math.ceil(math.log10(max(finite)) + 1e-9) if finite else 1.0
    with matplotlib.rc_context(CHART_STYLE):  # type: ignore[arg-type]  # keys checked by matplotlib at run time
        height = 0.9 + 0.2 * len(rows)
        fig = Figure(figsize=(6.4, height), dpi=72)
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        # decades only, as plain text (mathtext labels and minor ticks cost most of a draw)
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=12))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(_decade))
        ys = list(range(len(rows)))
        widths, lefts, colors = [], [], []
        for _name, value, flag in rows:
            ok = math.isfinite(value) and value > 0
            widths.append(value - lo if ok else 0.0)
            lefts.append(lo)
            colors.append(FLAG_COLORS.get(flag, FLAG_COLORS[None]))
        ax.barh(ys, widths, left=lefts, color=colors, height=0.7)
        for y, (_name, value, _flag) in zip(ys, rows):
            if not math.isfinite(value):
                ax.text(lo * 1.2, y, " NaN/inf", va="center", color=FLAG_COLORS["NaN/inf"], fontsize=8, fontweight="bold")
            elif value <= 0:
                ax.text(lo * 1.2, y, " 0 (no gradient flows)", va="center", color=FLAG_COLORS["vanishing"], fontsize=8)
            else:
                ax.text(value * 1.15, y, f"{value:.3g}", va="center", fontsize=7)
        for x, words in ((VANISHING, "vanishing"), (EXPLODING, "exploding")):
            if lo < x < hi:
                ax.axvline(x, color=THEME_COLOR, linewidth=0.8, linestyle=":", alpha=0.6)
                ax.text(x, -0.9, words, fontsize=7, ha="center", alpha=0.8)
        ax.set_yticks(ys, [_plain(name) for name, _, _ in rows])
        ax.set_ylim(len(rows) - 0.5, -1.1 if any(lo < x < hi for x in (VANISHING, EXPLODING)) else -0.6)
        ax.set_xlabel("gradient norm (log scale)")
        ax.grid(axis="x", which="major", color=THEME_COLOR, alpha=0.15, linewidth=0.6)
        ax.tick_params(axis="y", length=0)
        widest = max((len(_plain(name)) for name, _, _ in rows), default=4)
        left = min(0.5, (widest * 4.6 + 10) / (6.4 * 72))
        fig.subplots_adjust(left=left, right=0.97, top=1 - 0.1 / height, bottom=0.55 / height)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return inert_svg(out.getvalue(), alt, font=WEB_FONT)


__all__ = ["gradient_flow", "missing_matplotlib"]
