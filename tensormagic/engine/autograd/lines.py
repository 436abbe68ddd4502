"""Which cell line made which autograd node.

Every node torch records gets the next autograd *sequence number*.  :class:`LineSpans` holds the
sequence number at which each executed cell statement started, so any node of the cell maps to
the line that was running when it was made.  The statements note themselves: :func:`instrument`
puts a call of :func:`line_marker` before each statement of the cell's top level (loop and
``if``/``with``/``try`` bodies included, function and class bodies not), which costs a fraction
of a microsecond per statement and nothing anywhere else.  Lines inside functions the cell
defines come from :class:`LineTracer` (``sys.settrace`` line events in those frames), used only
when the cell defines a function and no debugger or coverage tool is tracing: a trace function
slows every Python call by about a fifth while it is set.
"""

from __future__ import annotations

import ast
import bisect
import sys
from collections.abc import Callable
from itertools import repeat
from typing import Any, Protocol

import torch

#: The name the instrumented statements call (a builtin only while the cell runs).
MARKER = "__tensormagic_line__"


def next_sequence_nr() -> int:
    """The sequence number the next autograd node will get (this thread)."""
    return int(torch._C._autograd._get_sequence_nr())


def can_trace_lines() -> bool:
    """True when line events are free to use: no debugger or coverage tool is tracing."""
    return sys.gettrace() is None and hasattr(torch._C._autograd, "_get_sequence_nr")


class Lines(Protocol):
    """Anything that maps a node's sequence number to a cell line."""

    def line_of(self, seq: int) -> int | None: ...


class LineSpans:
    """The sequence number each cell line started at: nodes numbered from one line's start up
    to the next line's start were made while that line ran."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.lines: list[int] = []

    def add(self, seq: int, line: int) -> None:
        starts = self.starts
        if starts and seq <= starts[-1]:
            self.lines[-1] = line  # the previous line made no node: this one starts there
            return
        starts.append(seq)
        self.lines.append(line)

    def line_of(self, seq: int) -> int | None:
        """The line that was running when node ``seq`` was made."""
        i = bisect.bisect_right(self.starts, seq) - 1
        return self.lines[i] if i >= 0 else None


def line_marker(spans: LineSpans) -> Callable[[int], None]:
    """The function the instrumented statements call with their line (as fast as it gets)."""
    starts, lines = spans.starts, spans.lines
    seq = torch._C._autograd._get_sequence_nr

    def mark(line: int) -> None:
        s = seq()
        if starts and s <= starts[-1]:
            lines[-1] = line  # the previous statement made no node: this one starts there
        else:
            starts.append(s)
            lines.append(line)

    return mark


def instrument(tree: ast.Module) -> ast.Module:
    """The cell's tree (changed in place) with ``__tensormagic_line__(n)`` before each top-level statement
    (inside loops, ``if``, ``with`` and ``try`` too; not inside functions or classes, which
    outlive the cell).  Line numbers stay those of the user's code."""

    def marked(body: list[ast.stmt], top: bool = False) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for k, stmt in enumerate(body):
            first_doc = top and k == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
            future = isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
            if not (first_doc or future):  # both must stay first to mean what they mean
                out.append(_marker_call(stmt))
            out.append(stmt)
            if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While, ast.If)):
                stmt.body, stmt.orelse = marked(stmt.body), marked(stmt.orelse)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                stmt.body = marked(stmt.body)
            elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
                stmt.body, stmt.orelse, stmt.finalbody = marked(stmt.body), marked(stmt.orelse), marked(stmt.finalbody)  # type: ignore[attr-defined]
                for handler in stmt.handlers:  # type: ignore[attr-defined]
                    handler.body = marked(handler.body)
            elif type(stmt).__name__ == "Match":
                for case in stmt.cases:  # type: ignore[attr-defined]
                    case.body = marked(case.body)
        return out

    tree.body = marked(tree.body, top=True)
    return tree


def _marker_call(stmt: ast.stmt) -> ast.Expr:
    """``__tensormagic_line__(n)`` at ``stmt``'s place (each node given its location here: cheaper
    than ``copy_location`` and ``fix_missing_locations``, which walk and look up each field)."""
    where: dict[str, Any] = {"lineno": stmt.lineno, "col_offset": stmt.col_offset, "end_lineno": stmt.end_lineno, "end_col_offset": stmt.end_col_offset}
    return ast.Expr(ast.Call(ast.Name(MARKER, ast.Load(), **where), [ast.Constant(stmt.lineno, **where)], [], **where), **where)


def defines_functions(tree: ast.AST) -> bool:
    """True when the cell defines a function, lambda or class (their bodies are not instrumented)."""
    return any(map(isinstance, ast.walk(tree), repeat((ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))))


class LineTracer:
    """``sys.settrace`` line events in the frames of functions the cell defines, as :class:`LineSpans`
    (the cell's own statements mark themselves: see :func:`instrument`).

    :meth:`pause` switches the global trace function off while the magic's own analysis runs
    (it would be called on every Python call of a graph walk).
    """

    def __init__(self, filename: str, spans: LineSpans, module_frames: bool = False) -> None:
        self.filename = filename
        self.spans = spans
        self.module_frames = module_frames  # also top-level code (a block that is not a cell)
        self.previous: Any = None
        self.paused = False
        self.running = False

    def _call(self, frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        return self._line if code.co_filename == self.filename and (self.module_frames or code.co_name != "<module>") else None

    def _line(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self.spans.add(next_sequence_nr(), frame.f_lineno)
        elif event == "return":  # back in a calling cell line: the rest of it is that line's
            caller = frame.f_back
            if caller is not None and caller.f_code.co_filename == self.filename:
                self.spans.add(next_sequence_nr(), caller.f_lineno)
        return self._line

    def start(self) -> None:
        self.previous = sys.gettrace()
        self.paused = False
        self.running = True
        sys.settrace(self._call)

    def pause(self, paused: bool) -> None:
        if not self.running:
            return
        if paused and not self.paused and sys.gettrace() == self._call:
            sys.settrace(None)
            self.paused = True
        elif not paused and self.paused:
            sys.settrace(self._call)
            self.paused = False

    def stop(self) -> None:
        """Remove the tracer and put back whatever was there before (also mid-cell frames)."""
        if not self.running:
            return
        if sys.gettrace() == self._call or self.paused:
            sys.settrace(self.previous)
        frame: Any = sys._getframe()
        while frame is not None:  # frames still running keep a local tracer: take ours off
            if frame.f_trace == self._line:
                frame.f_trace = None
            frame = frame.f_back
        self.running = False
        self.paused = False


def cell_frame(filename: str, frame: Any) -> Any:
    """The innermost frame of the cell's code, looked for from ``frame`` outwards (None: none)."""
    while frame is not None and frame.f_code.co_filename != filename:
        frame = frame.f_back
    return frame


def cell_line(filename: str, frame: Any = None) -> tuple[int | None, str | None]:
    """The line of the cell running now (the innermost frame of the cell's code, looked for from
    ``frame`` outwards, or from the caller's), and the name of the function the cell defined
    that it runs in (None at the cell's top level)."""
    frame = cell_frame(filename, sys._getframe(1) if frame is None else frame)
    if frame is None:
        return None, None
    name = frame.f_code.co_name
    return frame.f_lineno, None if name == "<module>" else name


__all__ = ["MARKER", "LineSpans", "LineTracer", "Lines", "can_trace_lines", "cell_frame", "cell_line", "defines_functions", "instrument", "line_marker", "next_sequence_nr"]
