"""Which cell line made which autograd node.

Every node torch records gets the next autograd *sequence number*.  :class:`LineTracer` notes
the sequence number at which each line of the cell's own code starts (``sys.settrace`` line
events, which fire only in the cell's frames), so :class:`LineSpans` can later map any node of
the cell to the line that was running when it was made.  Under a debugger or coverage tool the
trace function is theirs, so :class:`OpLineMode` (a light ``TorchFunctionMode``) notes the line
of each op's result instead, in a :class:`LineMap`.
"""

from __future__ import annotations

import bisect
import sys
from typing import Any, Protocol

import torch
from torch.overrides import TorchFunctionMode


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


class LineMap:
    """The line of each recorded op result, by its node's sequence number."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.lines: list[int] = []

    def add(self, seq: int, line: int) -> None:
        if self.seqs and seq <= self.seqs[-1]:
            # sequence numbers only grow in one thread; an older one means another thread
            i = bisect.bisect_left(self.seqs, seq)
            if i < len(self.seqs) and self.seqs[i] == seq:
                return
            self.seqs.insert(i, seq)
            self.lines.insert(i, line)
            return
        self.seqs.append(seq)
        self.lines.append(line)

    def line_of(self, seq: int) -> int | None:
        """The line of the recorded op whose call made node ``seq`` (the first recorded at or
        after it: nodes made inside one op call are numbered up to its result's node)."""
        i = bisect.bisect_left(self.seqs, seq)
        return self.lines[i] if i < len(self.seqs) else None


class LineTracer:
    """``sys.settrace`` line events of the cell's frames, as :class:`LineSpans`.

    A few microseconds per executed cell line; nothing per torch op.  :meth:`pause` switches the
    global trace function off while the magic's own analysis runs (it would be called on every
    Python call of a graph walk); the cell's frames keep their local tracer.
    """

    def __init__(self, filename: str, spans: LineSpans) -> None:
        self.filename = filename
        self.spans = spans
        self.previous: Any = None
        self.paused = False
        self.running = False

    def _call(self, frame: Any, event: str, arg: Any) -> Any:
        return self._line if frame.f_code.co_filename == self.filename else None

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


class OpLineMode(TorchFunctionMode):
    """Notes the cell line of every op result that has a graph node (used when a debugger or
    coverage tool already owns ``sys.settrace``)."""

    def __init__(self, filename: str, lines: LineMap) -> None:
        super().__init__()
        self.filename = filename
        self.lines = lines
        self.paused = False

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        __tracebackhide__ = True
        result = func(*args, **(kwargs or {}))
        if self.paused:
            return result
        node = None
        if type(result) is torch.Tensor:
            node = result.grad_fn
        elif isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
            node = next((r.grad_fn for r in result if type(r) is torch.Tensor and r.grad_fn is not None), None)
        if node is not None:  # the innermost frame of the cell's own code made it
            frame: Any = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename != self.filename:
                frame = frame.f_back
            if frame is not None:
                self.lines.add(node._sequence_nr(), frame.f_lineno)
        return result


def cell_line(filename: str) -> tuple[int | None, str | None]:
    """The line of the cell running now (the innermost frame of the cell's code), and the name
    of the function the cell defined that it runs in (None at the cell's top level)."""
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename != filename:
        frame = frame.f_back
    if frame is None:
        return None, None
    name = frame.f_code.co_name
    return frame.f_lineno, None if name == "<module>" else name


__all__ = ["LineMap", "LineSpans", "LineTracer", "Lines", "OpLineMode", "can_trace_lines", "cell_line", "next_sequence_nr"]
