"""The blocks of a tensor's pictures in the ``%tensorinfo`` panel: image, channels, heatmap
(the Pictures section) and the histogram chart (the Values section).

Every picture has an alt text that says what it shows; the text view shows that alt text and a
one-line description (the histogram: block-character bars of the same counts).
"""

from __future__ import annotations

from collections.abc import Callable

from tensormagic.engine.tensorinfo.pictures.reports import (
    COLOR_NAMES,
    ChannelView,
    HeatmapView,
    HistogramView,
    ImageView,
    Pictures,
    Raster,
)
from tensormagic.render.document import Bars, Block, Drawing, Note, Picture, Table
from tensormagic.render.format import fmt_number, truncate
from tensormagic.render.histogram_chart import histogram_drawing
from tensormagic.render.picture_png import PNG_BUDGET, compose, encode, missing_pillow


def _every(step: tuple[int, int]) -> str:
    k = step[0]
    return "every value" if k == 1 else f"every {k}{'nd' if k == 2 else ('rd' if k == 3 else 'th')} row and column"


def _tiles_drawing(tiles: list[Raster], alt: str, budget: int, legend: list[tuple[int, int, int]] | None = None, ends: tuple[str, str] | None = None) -> Callable[[], Drawing]:
    def draw() -> Drawing:
        hint = missing_pillow()
        if hint is not None:
            return Drawing(alt=alt, missing=hint)
        data, size, halved = encode(compose(tiles, legend, ends), budget)
        notes = [f"drawn at 1/{2 ** halved} of its {tiles[0].width}x{tiles[0].height} pixels per picture (to keep the page small)"] if halved else []
        return Drawing(png=data, alt=alt, size=size, notes=notes)

    return draw


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2g}%" if whole else "0%"


def image_block(name: str, view: ImageView, budget: int) -> Picture:
    first = view.tiles[0]
    count = f"{len(view.tiles)} of {view.total:,} images" if view.total > 1 else "one image"
    alt = f"{view.mode} image of {truncate(name, 60)}: {view.layout}, {count}, {first.source[0]}x{first.source[1]} pixels ({_every(first.step)})"
    facts = [f"intensities {view.scale}"]
    if view.clipped:
        facts.append(f"{view.clipped:,} of the {view.shown:,} values shown were outside and clipped ({_pct(view.clipped, view.shown)})")
    else:
        facts.append("nothing clipped")
    if view.nan:
        facts.append(f"{view.nan:,} pixels hold NaN/inf (drawn magenta)")
    text = "; ".join(facts + view.notes)
    return Picture(draw=_tiles_drawing(view.tiles, alt, budget), text=[Note(alt), Note(text)], caption=text)


def channel_blocks(name: str, view: ChannelView, budget: int) -> list[Block]:
    first = view.tiles[0]
    alt = f"channel view of {truncate(name, 60)}: {len(view.tiles)} of {view.total:,} channels of {view.layout}, {first.source[0]}x{first.source[1]} each ({_every(first.step)}), each coloured from its own min (dark purple) to its own max (yellow)"
    caption = "; ".join([f"channels left to right, top to bottom: {', '.join(t.label for t in view.tiles[:3])}{', …' if len(view.tiles) > 3 else ''}", *view.notes])
    rows = [[t.label, fmt_number(s.min), fmt_number(s.max), fmt_number(s.mean), fmt_number(s.std), fmt_number(s.nan)] for t, s in zip(view.tiles, view.stats)]
    exact = all(s.exact for s in view.stats)
    table = Table(["channel", "min", "max", "mean", "std", "NaN"], rows, caption="each channel's own statistics" + ("" if exact else " (from a sample)"))
    return [Picture(draw=_tiles_drawing(view.tiles, alt, budget), text=[Note(alt)], caption=caption), table]


def heatmap_block(name: str, view: HeatmapView, budget: int) -> Picture:
    first = view.tiles[0]
    count = f"the first {len(view.tiles)} of {view.total:,} slices, " if view.total > 1 else ""
    scale = f"{view.colormap} from {fmt_number(view.lo)} (dark purple) to {fmt_number(view.hi)} (yellow)" if view.lo is not None else "no finite value to scale"
    marks = ", ".join(f"{k} {COLOR_NAMES[k]} ({v:,} pixel{'s' if v != 1 else ''})" for k, v in view.nonfinite.items() if v)
    alt = f"heatmap of {truncate(name, 60)}: {count}{first.source[0]}x{first.source[1]} ({_every(first.step)}), {scale}" + (f"; {marks}" if marks else "; no NaN or inf")
    facts = [f"colour scale: {scale}"]
    if marks:
        facts.append(marks + (": a pixel takes the colour when any value it stands for is NaN/inf" if view.marks_exact else " among the values read (others may hide between them)"))
    else:
        facts.append(f"NaN {COLOR_NAMES['NaN']}, +inf {COLOR_NAMES['+inf']}, -inf {COLOR_NAMES['-inf']}: no NaN or inf here")
    if len(view.tiles) > 1:
        facts.append("slices " + ", ".join(t.label for t in view.tiles))
    text = "; ".join(facts + view.notes)
    ends = (fmt_number(view.lo), fmt_number(view.hi)) if view.lo is not None else None
    return Picture(draw=_tiles_drawing(view.tiles, alt, budget, view.legend, ends), text=[Note(alt), Note(text)], caption=text)


def picture_blocks(name: str, pictures: Pictures) -> list[Block]:
    """The Pictures section's blocks (empty when there is no image, channel view or heatmap)."""
    views = [v for v in (pictures.image, pictures.channels, pictures.heatmap) if v is not None]
    budget = PNG_BUDGET // max(1, len(views))
    blocks: list[Block] = []
    if pictures.image is not None:
        blocks.append(image_block(name, pictures.image, budget))
    if pictures.channels is not None:
        blocks += channel_blocks(name, pictures.channels, budget)
    if pictures.heatmap is not None:
        blocks.append(heatmap_block(name, pictures.heatmap, budget))
    if blocks:
        blocks += [Note(n) for n in pictures.notes]
    return blocks


def histogram_labels(h: HistogramView) -> list[str]:
    if h.boolean:
        return ["False", "True"]
    if h.integer:
        return [fmt_number(int(h.edges[i])) for i in range(len(h.counts))]
    return [f"{h.edges[i]:.3g} … {h.edges[i + 1]:.3g}" for i in range(len(h.counts))]


def histogram_block(name: str, h: HistogramView) -> Picture:
    """The chart, with the same counts as block-character bars for the text view."""
    caption = "histogram" + ("" if h.exact else f" (from a sample: {h.sample_reason or 'the tensor is above the statistics budget'})")
    bars = Bars(histogram_labels(h), [float(c) for c in h.counts], caption, value_format="{:,.0f}", log=h.log)
    left = [f"{v:,} {k}" for k, v in h.left_out.items() if v]
    notes = [f"{h.counted:,} values counted over {'every element' if h.exact else 'a fixed-seed sample'}" + (f"; left out: {', '.join(left)}" if left else "")]
    return Picture(draw=lambda: histogram_drawing(name, h), text=[bars, *[Note(n) for n in notes]], caption=notes[0], text_summary="the counts")


__all__ = ["histogram_block", "picture_blocks"]
