"""``with autograd() as run:`` - observe a block of ordinary Python code as ``%%autograd`` observes
a cell (scripts, tests, a debugger); ``run.report`` afterwards.

The block's names are its frame's (locals, then globals), looked up live; its lines are the
file's, from ``sys.settrace`` line events in that file's frames (a trace function is the only
way to see lines of code that was not compiled by the magic: the block runs a little slower).
"""

from __future__ import annotations

import ast
import linecache
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tensormagic.engine.autograd.guards import line_tracer
from tensormagic.engine.autograd.lines import LineTracer, can_trace_lines
from tensormagic.engine.autograd.options import AutogradOptions
from tensormagic.engine.autograd.report import AutogradReport
from tensormagic.engine.autograd.session import AutogradSession


class FrameNamespace(Mapping[str, Any]):
    """A frame's names, live: its locals, then its globals."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def _maps(self) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        return self.frame.f_locals, self.frame.f_globals

    def __getitem__(self, key: str) -> Any:
        local, glob = self._maps()
        if key in local:
            return local[key]
        return glob[key]

    def __iter__(self) -> Iterator[str]:
        local, glob = self._maps()
        yield from local
        yield from (k for k in glob if k not in local)

    def __len__(self) -> int:
        local, glob = self._maps()
        return len(set(local) | set(glob))

    def __contains__(self, key: object) -> bool:
        local, glob = self._maps()
        return key in local or key in glob


def block_tree(source: str, line: int) -> ast.Module | None:
    """The statements of the ``with`` block whose header is at ``line`` (their line numbers the
    file's), so that only the names the block uses are the report's; None when the file's source
    is not there (then the whole source is read, as before)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found: ast.With | ast.AsyncWith | None = None
    blocks = [n for n in ast.walk(tree) if isinstance(n, (ast.With, ast.AsyncWith)) and n.body]
    for node in blocks:
        starts_there = node.lineno <= line < max(node.body[0].lineno, node.lineno + 1)
        if starts_there and (found is None or node.lineno > found.lineno):
            found = node  # the innermost block that starts there
    return None if found is None else ast.Module(body=found.body, type_ignores=[])


class BlockRun:
    """What ``with autograd() as run:`` gives: :attr:`report` once the block is over."""

    def __init__(self) -> None:
        self.report: AutogradReport | None = None
        self.error: BaseException | None = None


@contextmanager
def observe_block(options: AutogradOptions | None = None, depth: int = 2) -> Iterator[BlockRun]:
    """Observe the ``with`` block of the frame ``depth`` levels up (see the module docstring).

    The report is built when the block ends, also when it raises (the exception goes on)."""
    frame = sys._getframe(depth)
    filename = frame.f_code.co_filename
    source = "".join(linecache.getlines(filename, frame.f_globals))
    namespace = FrameNamespace(frame)
    session = AutogradSession(namespace, source, filename, options, tree=block_tree(source, frame.f_lineno))  # type: ignore[arg-type]
    run = BlockRun()
    tracer = LineTracer(filename, session.lines, module_frames=True) if session.lines is not None and can_trace_lines() else None
    try:
        with session.observe():
            if tracer is not None:
                with line_tracer(tracer):
                    frame.f_trace = tracer._line  # the block's own frame, already running
                    try:
                        yield run
                    finally:
                        frame.f_trace = None
            else:
                yield run
    except BaseException as exc:
        run.error = exc
        try:
            run.report = session.report()
        except Exception:  # noqa: BLE001 - the block's own exception is what the caller sees
            pass
        raise
    run.report = session.report()


__all__ = ["BlockRun", "FrameNamespace", "observe_block"]
