"""One observed run of a cell: :meth:`AutogradSession.observe` around it, then :meth:`report`::

    session = AutogradSession(namespace, source, filename, AutogradOptions(), tree=tree)
    code = compile(session.prepare(tree), filename, "exec")  # the cell notes its lines as it runs
    with session.observe():
        value = run_the_cell(code)
    report = session.report(value)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from tensormagic.engine.autograd import keeper, summaries
from tensormagic.engine.autograd.check import TapeMode, custom_functions_as_one_call
from tensormagic.engine.autograd.extra import ExtraWork
from tensormagic.engine.autograd.graph import merge_graphs
from tensormagic.engine.autograd.guards import (
    builtin,
    engine_calls,
    flop_counter,
    function_mode,
    hook_registrations,
    line_tracer,
)
from tensormagic.engine.autograd.health import first_non_finite, health
from tensormagic.engine.autograd.lines import (
    MARKER,
    LineSpans,
    LineTracer,
    can_trace_lines,
    defines_functions,
    instrument,
    line_marker,
    next_sequence_nr,
)
from tensormagic.engine.autograd.modules import ModuleCalls, module_infos
from tensormagic.engine.autograd.naming import CellNames
from tensormagic.engine.autograd.options import AutogradOptions
from tensormagic.engine.autograd.outputs import (
    evaluate,
    graph_roots,
    last_of_each_output,
    name_roots,
    of_tensor,
    output_infos,
)
from tensormagic.engine.autograd.passes import OwnPasses
from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.records import CallRecord, root_value
from tensormagic.engine.autograd.report import AutogradReport
from tensormagic.engine.autograd.rows import RowBuilder
from tensormagic.engine.autograd.settle import settle
from tensormagic.engine.autograd.source import analyse_source
from tensormagic.engine.autograd.wrt import wrt_rows
from tensormagic.engine.namespace import HIDDEN_NAMES, Snapshot
from tensormagic.engine.sharding.fsdp import fsdp_roots, grad_marks


class AutogradSession:
    """Observe one cell and report every derivative it computed (see the module docstring)."""

    def __init__(self, namespace: dict[str, Any], source: str, filename: str, options: AutogradOptions | None = None, hidden: frozenset[str] | set[str] = frozenset(), tree: Any = None) -> None:
        self.namespace = namespace
        self.options = options or AutogradOptions()
        self.hidden = set(hidden) | set(HIDDEN_NAMES)
        self.cell = analyse_source(source, tree)
        self._before = Snapshot(namespace)  # the names the cell rebinds out of sight of its source
        self._used: list[str] | None = None
        # the .grad of each DTensor parameter of the modules the cell names (FSDP2's hooks set them)
        # (and of every FSDP2 model in the namespace: a cell may train one through a function)
        self.sharded_grads = grad_marks([namespace.get(n) for n in self.cell.loaded] + [m for _, m in fsdp_roots(namespace)])
        self.names = CellNames(namespace, self.cell, self.hidden)
        self.lines: LineSpans | None = LineSpans() if self.options.lines else None
        self._trace_functions = False  # set by prepare(): the cell defines functions
        self.recorder = Recorder(filename, self.cell, self.names, self.lines, locate_nan=self.options.locate_nan)
        self.module_calls = ModuleCalls()
        self.recorder.module_calls = self.module_calls
        self.extra = ExtraWork(self.recorder, self.options.extra_seconds)
        self.passes = OwnPasses(self.options, namespace, self.names, self.lines, self.cell, self.extra)
        self.recorder.before_call = self.passes.before_call
        self.tape: TapeMode | None = TapeMode() if self.options.check else None
        self.cell_seconds = 0.0

    def prepare(self, tree: Any) -> Any:
        """The cell's parsed tree, made to note its lines as it runs (unchanged with lines off);
        compile this one and run it inside :meth:`observe`."""
        if self.lines is None:
            return tree
        self._trace_functions = defines_functions(tree)
        return instrument(tree)

    @contextmanager
    def observe(self) -> Iterator[AutogradSession]:
        """Run the cell inside this block; every hook, mode and tracer is gone after it."""
        rec = self.recorder
        with ExitStack() as stack:
            stack.callback(keeper.sweep)
            stack.callback(rec.close)
            stack.enter_context(engine_calls(rec.run))
            stack.enter_context(hook_registrations(rec.note_hook))
            if self.options.flops:
                rec.flop_counter = stack.enter_context(flop_counter())
            tracer: LineTracer | None = None
            modes: list[Any] = []
            if self.tape is not None:
                modes.append(stack.enter_context(function_mode(self.tape)))
                stack.enter_context(custom_functions_as_one_call(self.tape))
            if self.lines is not None:
                stack.enter_context(builtin(MARKER, line_marker(self.lines)))
                if self._trace_functions and can_trace_lines():
                    tracer = stack.enter_context(line_tracer(LineTracer(rec.filename, self.lines)))
            if tracer is not None or modes:
                rec.pause, rec.pausing = _pauser(tracer, modes), True
            rec.first_seq = next_sequence_nr()
            stack.callback(self.module_calls.stop)
            self.module_calls.resume()
            rec.started = time.perf_counter()
            try:
                yield self
            finally:
                rec.ended = time.perf_counter()
                self.cell_seconds = rec.ended - rec.started

    # -- after the cell -----------------------------------------------------------------------

    def used_names(self) -> list[str]:
        """The names the cell binds or uses, in cell order (also ones it rebinds out of sight)."""
        if self._used is None:  # once, after the cell
            out = [*self.cell.assigned, *sorted(self.cell.loaded - set(self.cell.assigned))]
            out += [n for n in self._before.rebound() if n not in self.cell.assigned]
            self._used = [n for n in dict.fromkeys(out) if not n.startswith("_") and n not in self.hidden]
        return list(self._used)

    def _outputs(self, last_value: Any) -> tuple[list[CallRecord], list[str]]:
        rec = self.recorder
        passes = self.passes
        if self.options.of:
            for expr in self.options.of:
                if expr not in passes.of_records:
                    passes.of_records[expr] = passes.compute(expr, of_tensor(expr, evaluate(expr, self.namespace)), "--of")
            return [passes.of_records[e] for e in self.options.of], ["--of"] * len(self.options.of)
        if rec.calls:
            records = last_of_each_output(rec)
            return records, ["backward" if r.kind == "backward" else "torch.autograd.grad" for r in records]
        if isinstance(last_value, torch.Tensor) and last_value.grad_fn is not None:
            return [passes.compute(self.cell.last_expression or "last expression", last_value, "last expression")], ["last expression"]
        assigned = dict(self.cell.assigned.items()) | {n: 0 for n in self.used_names() if n not in self.cell.assigned}
        roots = graph_roots(assigned, self.namespace, self.names.for_call().primary())
        return [passes.compute(n, t, "graph root") for n, t in roots], ["graph root"] * len(roots)

    def report(self, last_value: Any = None) -> AutogradReport:
        """The report of the cell (an AutogradUsageError when an option names something wrong)."""
        t0 = time.perf_counter()
        rec = self.recorder
        records, sources = self._outputs(last_value)
        for r in records:
            settle(rec, r)
            for root in r.roots:
                root.value = root_value(root)
        names = self.names.final({k for r in records for k in r.targets})
        for r in records:
            for root in r.roots:
                root.name = root.name or (names.name(root.ref()) if root.ref is not None and root.ref() is not None else None)
            name_roots(r, self.cell)
        used = self.used_names()
        builder = RowBuilder(self.namespace, self.cell, names, rec, used, self.sharded_grads)
        rows = [row for r in records for row in builder.rows(r)]
        if self.options.wrt:
            rows = wrt_rows(self.options.wrt, rows, records, self.namespace, builder)
        graph = merge_graphs([r.graph for r in records]) if records else merge_graphs([])
        if self.module_calls.modules and any(n.module is not None for n in graph.nodes):
            graph.modules = module_infos(self.module_calls, self.namespace, self.names.mentioned, self.hidden)
        params = {t.name: t.ref() for r in records for t in r.targets.values() if t.kind == "leaf" and t.name}
        computed = [r for r in records if r.kind == "computed"] + [r for r in self.passes.of_records.values() if r not in records]
        seed_name = lambda key: next((n for n in used if id(self.namespace.get(n)) == key), None)  # noqa: E731
        report = AutogradReport(
            outputs=output_infos(records, sources, rec, self.cell, seed_name),
            gradients=rows,
            graph=graph,
            cost=summaries.cost(rec, records, computed, self.cell_seconds, self.extra.spent_s),
            health=health(rows, graph, params),
            jacobian=self.passes.jacobians,
            notes=summaries.notes(rec, records) + self.passes.notes + _sharded_note(rows),
            not_computed=self.extra.not_computed,
        )
        if not records:
            report.message = summaries.nothing_message(list(dict.fromkeys([*self.cell.assigned, *used])), self.namespace)
        report.non_finite = first_non_finite(records, rows, [o.value for o in report.outputs], self.cell, self.namespace)
        if self.tape is not None:
            report.check = summaries.check(self.tape, records)
        report.cost.report_s = time.perf_counter() - t0
        return report


def _sharded_note(rows: list[Any]) -> list[str]:
    """What the gradients of DTensors are, when the cell has any (no communication was run)."""
    if any("local shard" in (r.reason or "") for r in rows):
        return [("gradients of DTensors (and their norms in Health) are this rank's local shards', read without communication; "
                 "with Shard placements the global norm is the square root of the sum over ranks of the squared local norms")]
    return []


def _pauser(tracer: LineTracer | None, modes: list[Any]) -> Any:
    """One switch for the line tracer and the recording modes (off while the magic analyses)."""

    def pause(paused: bool) -> None:
        if tracer is not None:
            tracer.pause(paused)
        for mode in modes:
            mode.paused = paused

    return pause


__all__ = ["AutogradSession"]
