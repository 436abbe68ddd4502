"""The neutral document every panel is built as, before it becomes text, HTML or widgets.

One builder per report turns the report into a :class:`Panel`; the text, HTML and widget
renderers each render any panel, so the three views always show the same facts (the idea of
rich's single render pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Union

Level = Literal["info", "ok", "warning", "error"]


@dataclass
class KeyValues:
    """A two-column table of labelled facts."""

    rows: list[tuple[str, str]]


@dataclass
class Table:
    """A table; ``total_rows`` > ``len(rows)`` means it was truncated.  The columns listed in
    ``bars`` hold bars drawn with block characters (monospaced and coloured in HTML); a
    ``wide`` table keeps its rows on one line and scrolls sideways in HTML rather than wrap."""

    headers: list[str]
    rows: list[list[str]]
    caption: str | None = None
    total_rows: int | None = None
    bars: tuple[int, ...] = ()
    wide: bool = False


@dataclass
class Note:
    """A sentence worth reading (a warning, an explanation, a fix)."""

    text: str
    level: Level = "info"


@dataclass
class Bars:
    """A horizontal bar chart (histograms, gradient flow) drawn with characters everywhere."""

    labels: list[str]
    values: list[float]
    caption: str | None = None
    value_format: str = "{:,.4g}"


@dataclass
class Preformatted:
    """Monospaced text kept as it is (a graph, a module structure)."""

    text: str


@dataclass
class Action:
    """A widget-only control: pick a choice and press a button; ``run`` returns a new panel.

    Text and HTML renders show ``fallback`` instead (how to do the same with a magic).
    """

    label: str
    choices: list[str]
    run: Callable[[str], "Panel"]
    fallback: str
    button: str = "Run"


Block = Union[KeyValues, Table, Note, Bars, Preformatted, Action]


@dataclass
class Section:
    """One tab of the widget, one headed part of the text and HTML views."""

    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Panel:
    """A whole panel: a title, a one-line headline and its sections."""

    title: str
    headline: str
    sections: list[Section] = field(default_factory=list)
    headline_level: Level = "info"
