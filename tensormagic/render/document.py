"""The neutral document every panel is built as, before it becomes text, HTML or widgets.

One builder per report turns the report into a :class:`Panel`; the text, HTML and widget
renderers each render any panel, so the three views always show the same facts (the idea of
rich's single render pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tensormagic.engine.naming import describe_exception
from tensormagic.render.format import truncate

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
    """A horizontal bar chart drawn with characters (the text view of a chart).

    ``log``: bar lengths on a log scale (values from 1e-7 to 0.05 stay apart); zero, negative
    and non-finite values then get no bar, and their value says what they are."""

    labels: list[str]
    values: list[float]
    caption: str | None = None
    value_format: str = "{:,.4g}"
    log: bool = False


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
    run: Callable[[str], Panel]
    fallback: str
    button: str = "Run"


@dataclass
class Drawing:
    """A picture once drawn: inline SVG markup already made inert (:func:`~.svg.inert_svg`) or
    PNG bytes, with its alt text; or ``missing``: why it could not be drawn and how to get it."""

    svg: str | None = None
    png: bytes | None = None
    alt: str = ""
    missing: str | None = None
    notes: list[str] = field(default_factory=list)  # what the reader should know about it


@dataclass
class Picture:
    """A picture, drawn only when a view shows one (``draw`` runs once, on first use).

    The text view shows ``text`` instead (and nothing when it is empty); HTML and widgets show
    the picture, its ``caption`` and, when ``text_summary`` is set, ``text`` collapsed under that
    summary; where the picture cannot be drawn they show ``text`` and why."""

    draw: Callable[[], Drawing]
    text: Sequence[Block] = field(default_factory=list)
    caption: str | None = None
    text_summary: str | None = None
    _drawing: Drawing | None = field(default=None, init=False, repr=False, compare=False)

    def drawing(self) -> Drawing:
        """The drawing (made on the first call; a failure becomes ``missing``, never an error)."""
        if self._drawing is None:
            try:
                self._drawing = self.draw()
            except Exception as exc:  # noqa: BLE001 - a picture that fails leaves the text view
                self._drawing = Drawing(missing=f"the picture could not be drawn ({truncate(describe_exception(exc), 200)})")
        return self._drawing


Block = KeyValues | Table | Note | Bars | Preformatted | Action | Picture


@dataclass
class Section:
    """One tab of the widget, one headed part of the text and HTML views."""

    title: str
    blocks: Sequence[Block] = field(default_factory=list)


@dataclass
class Panel:
    """A whole panel: a title, a one-line headline and its sections."""

    title: str
    headline: str
    sections: list[Section] = field(default_factory=list)
    headline_level: Level = "info"
