"""The pictures of one tensor as plain values: RGB bytes, sizes, counts and numbers (no tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: The colours of the values a heatmap cannot place on its scale (RGB).
NAN_COLOR = (255, 0, 255)  # magenta
POSINF_COLOR = (255, 255, 255)  # white
NEGINF_COLOR = (0, 0, 0)  # black
#: What each colour is called in alt texts and legends.
COLOR_NAMES = {"NaN": "magenta", "+inf": "white", "-inf": "black"}


@dataclass(frozen=True, kw_only=True)
class Raster:
    """One RGB picture made on the tensor's device: ``width * height * 3`` bytes, row by row.

    ``step``: every k-th row and column of the source was read (1, 1: every one);
    ``source``: the (height, width) it was read from; ``label``: which part of the tensor it is
    (``[0]``, ``channel 2``, ``[1, :, :]``)."""

    width: int
    height: int
    rgb: bytes
    label: str
    step: tuple[int, int] = (1, 1)
    source: tuple[int, int] = (0, 0)


@dataclass(frozen=True, kw_only=True)
class ChannelStats:
    """One channel's own statistics (over every value of the channel, or a sample of it)."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    nan: int
    exact: bool


@dataclass(frozen=True, kw_only=True)
class ImageView:
    """The tensor drawn as a picture (or a grid of the first few pictures of a batch).

    ``mode``: "RGB" or "grey"; ``layout``: how the dims were read ("(3, H, W)", "(H, W, 3)",
    "(N, 3, H, W)"...); ``scale``: what 0 and full intensity are; ``clipped``: values shown that
    fell outside the scale and were clipped, out of ``shown`` values; ``nan``: NaN/inf pixels shown
    (drawn magenta)."""

    mode: Literal["RGB", "grey"]
    layout: str
    tiles: list[Raster]
    total: int
    scale: str
    denorm: str | None
    clipped: int
    shown: int
    nan: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ChannelView:
    """One small picture per channel, each on its own colour scale (its min to its max)."""

    layout: str
    tiles: list[Raster]
    stats: list[ChannelStats]
    total: int
    colormap: str = "viridis"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class HeatmapView:
    """A 2-D tensor (or the first few 2-D slices of the last two dims) as colours.

    ``lo``/``hi``: the finite values the scale spans (None: no finite value).  ``nonfinite``:
    pixels drawn in each non-finite colour; ``marks_exact``: every NaN/inf of the slices shown
    is marked (a pixel takes the colour when any value it stands for is NaN/inf); False: only
    the values read (every k-th) were looked at."""

    tiles: list[Raster]
    total: int
    lo: float | None
    hi: float | None
    colormap: str
    legend: list[tuple[int, int, int]]
    nonfinite: dict[str, int]
    marks_exact: bool
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class HistogramView:
    """Counts of the finite values in equal bins between ``edges[0]`` and ``edges[-1]`` (the last
    bin holds its right edge, as ``numpy.histogram``'s), or one bar per value (``integer``:
    bar i is the value ``edges[i]``; ``boolean``: False, True).

    ``exact``: counted over every element; False: over a fixed-seed sample (the tensor is
    above the statistics' budget).  ``markers``: min, max, mean, mean - std, mean + std, from
    the report's statistics.  ``log``: the counts span decades (drawn on a log scale)."""

    edges: list[float]
    counts: list[int]
    integer: bool
    boolean: bool
    exact: bool
    counted: int
    left_out: dict[str, int]
    markers: dict[str, float]
    sample_reason: str = ""  # why a sample (not exact): above the budget, or counting all would cost more than the statistics
    log: bool


@dataclass(frozen=True, kw_only=True)
class Pictures:
    """Every picture ``%tensorinfo`` drew of a tensor, and why others were not drawn."""

    image: ImageView | None = None
    channels: ChannelView | None = None
    heatmap: HeatmapView | None = None
    histogram: HistogramView | None = None
    notes: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        """The names of the pictures drawn, in the order they show."""
        return [k for k in ("image", "channels", "heatmap", "histogram") if getattr(self, k) is not None]


__all__ = [
    "COLOR_NAMES",
    "NAN_COLOR",
    "NEGINF_COLOR",
    "POSINF_COLOR",
    "ChannelStats",
    "ChannelView",
    "HeatmapView",
    "HistogramView",
    "ImageView",
    "Pictures",
    "Raster",
]
