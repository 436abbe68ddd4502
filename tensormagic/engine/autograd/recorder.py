"""What the cell does with autograd: every backward and ``torch.autograd.grad`` call, observed.

:class:`Recorder` sees each gradient computation through ``torch.autograd._engine_run_backward``
(see :func:`~tensormagic.engine.autograd.guards.engine_calls`).  Before the cell's own call runs
it walks the graph and puts removable hooks on the tensors whose gradient the report gives, so
the gradients of *that* call are captured as it runs: no second pass, ``.grad`` ends exactly as
without the magic, and no user hook or saved-tensor hook runs more often.  Calls it cannot
analyse (inside ``torch.func`` transforms, batched, on ``GradientEdge``s) run untouched and are
counted in the report's notes; calls from another thread, and calls made while a call it
observes or its own analysis is running, run untouched and uncounted.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch

from tensormagic.engine.autograd import keeper
from tensormagic.engine.autograd.capture import capture
from tensormagic.engine.autograd.lines import Lines, cell_frame, cell_line
from tensormagic.engine.autograd.modules import ModuleCalls
from tensormagic.engine.autograd.naming import CellNames, Names
from tensormagic.engine.autograd.records import (
    BACKWARD_CODE,
    GRAD_CODE,
    HAS_GRADIENT_EDGE,
    CallKind,
    CallRecord,
    FastPath,
    LeafTrack,
    Target,
    as_list,
    functorch_active,
    grad_state,
    leaf_node,
    read_after_call,
    root_info,
)
from tensormagic.engine.autograd.repeat import RepeatLane
from tensormagic.engine.autograd.source import CellSource
from tensormagic.engine.autograd.summary import summarise
from tensormagic.engine.autograd.targets import caught_after, targets_of
from tensormagic.engine.autograd.walk import Walk, keep_if_deep, light_walk, walk_graph
from tensormagic.engine.naming import describe_exception
from tensormagic.engine.todevice.devices import synchronize


class Recorder:
    """Observes the gradient computations of one cell (see the module docstring)."""

    def __init__(self, filename: str, cell: CellSource, names: CellNames, lines: Lines | None, *, locate_nan: bool = False) -> None:
        self.filename = filename
        self.cell = cell
        self.names = names
        self.lines = lines
        self.locate_nan = locate_nan
        self.calls: list[CallRecord] = []  # a loop's run of folded calls is one record (see RepeatLane.fold_end)
        self.recorded = 0  # the calls recorded (the index of the latest)
        self.leaves: dict[int, LeafTrack] = {}
        self.skipped: dict[str, int] = {}  # why -> how many calls went unanalysed
        self.errors: list[str] = []  # the magic's own problems (the report says them)
        self.hooks_registered = 0  # tensor hooks / retain_grad the cell registered
        self.backward_calls = 0
        self.grad_calls = 0
        self.backward_seconds = 0.0
        self.analysis_seconds = 0.0
        self.first_seq = 0
        self.flop_counter: Any = None
        self.module_calls: ModuleCalls | None = None  # which module call made which node
        self.pause: Callable[[bool], None] = lambda paused: None  # the line recorder's switch
        self.pausing = False  # the switch has something to switch (a line tracer, a recording mode)
        # called before the cell's own call runs (the graph still whole): the magic's extra work
        self.before_call: Callable[[CallRecord, Walk, list[torch.Tensor], list[Any]], None] | None = None
        self.busy = False  # the magic's own computations run: pass the engine through, count no hook
        self.started = time.perf_counter()
        self.ended: float | None = None  # set when the cell is over
        self._thread = threading.get_ident()
        self._inside = False
        self._last_of_group: dict[tuple[Any, ...], CallRecord] = {}
        self.walked: dict[tuple[Any, ...], tuple[Walk, int, FastPath | None]] = {}  # group -> its full walk (plain part), the call it was made on, the no-walk path
        self._lane: RepeatLane | None = None  # the call a loop repeats, recorded with the least work

    # -- the engine wrapper ---------------------------------------------------------------------

    def note_hook(self, what: str) -> None:
        if not self.busy:
            self.hooks_registered += 1

    def forward_estimate(self) -> float:
        """Seconds the cell spent (so far) outside backward passes and the magic's analysis."""
        end = self.ended if self.ended is not None else time.perf_counter()
        return max(0.0, end - self.started - self.backward_seconds - self.analysis_seconds)

    def run(self, original: Callable[..., Any], t_outputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Stands in for ``torch.autograd._engine_run_backward`` while the cell runs."""
        __tracebackhide__ = True
        if self._inside or self.busy or threading.get_ident() != self._thread:
            return original(t_outputs, *args, **kwargs)
        caller = sys._getframe(2)  # run <- guards.engine_calls.run <- backward / grad / vjp
        code = caller.f_code
        lane = self._lane
        if lane is not None and code is BACKWARD_CODE and self.flop_counter is None and self._folds(lane, caller, t_outputs):
            return self._run_folded(lane, original, t_outputs, args, kwargs)
        kind: CallKind | None = "backward" if code is BACKWARD_CODE else ("grad" if code is GRAD_CODE else None)
        if kind == "backward":
            self.backward_calls += 1
        elif kind == "grad":
            self.grad_calls += 1
        record = self._begin(kind, caller, t_outputs, args, kwargs)
        flops0 = self.flop_counter.get_total_flops() if self.flop_counter is not None else None
        synchronize()
        t0 = time.perf_counter()
        self._inside = True
        try:
            result = original(t_outputs, *args, **kwargs)
        except BaseException as exc:
            if record is not None:
                record.error = describe_exception(exc)
            raise
        else:
            if record is not None and kind == "grad":
                self._read_grad_results(record, caller, result)
            return result
        finally:
            self._inside = False
            synchronize()
            dt = time.perf_counter() - t0
            self.backward_seconds += dt
            if record is not None:
                record.seconds = dt
                if flops0 is not None:
                    record.flops = self.flop_counter.get_total_flops() - flops0
                self._end(record)

    # -- a training loop's same call again, capturing nothing (see RepeatLane.fold_begin) -------------

    def _folds(self, lane: RepeatLane, caller: Any, t_outputs: Any) -> bool:
        if len(t_outputs) != 1 or not isinstance(t_outputs[0], torch.Tensor) or functorch_active():
            return False
        t0 = time.perf_counter()
        pausing = self.pausing
        if pausing:
            self.pause(True)
        try:
            with torch._C.DisableTorchFunction():
                return lane.fold_begin(caller, t_outputs[0], self.names.namespace, cell_frame(self.filename, caller), self.recorded + 1)
        except Exception as exc:  # noqa: BLE001 - the full path takes the call
            self.errors.append(f"analysing a backward call: {type(exc).__name__}: {exc}")
            self._lane = None
            return False
        finally:
            if pausing:
                self.pause(False)
            self.analysis_seconds += time.perf_counter() - t0

    def _run_folded(self, lane: RepeatLane, original: Callable[..., Any], t_outputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        self.backward_calls += 1
        error = None
        cuda = lane.cuda  # (on the CPU, backward has ended when it returns)
        if cuda:
            synchronize()
        t0 = time.perf_counter()
        self._inside = True
        try:
            return original(t_outputs, *args, **kwargs)
        except BaseException as exc:
            error = describe_exception(exc)
            raise
        finally:
            self._inside = False
            if cuda:
                synchronize()
            t1 = time.perf_counter()
            self.backward_seconds += t1 - t0
            pausing = self.pausing
            if pausing:
                self.pause(True)
            try:
                with torch._C.DisableTorchFunction():
                    record = lane.fold_end(t1 - t0, error)
                self.recorded += 1
                if record is not None:
                    self.calls.append(record)
                    self._last_of_group[record.group] = record
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"reading the gradients of call {self.recorded}: {type(exc).__name__}: {exc}")
            finally:
                if pausing:
                    self.pause(False)
                self.analysis_seconds += time.perf_counter() - t1

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    # -- before the call ------------------------------------------------------------------------

    def _begin(self, kind: CallKind | None, caller: Any, t_outputs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CallRecord | None:
        if kind is None:
            self._skip("called the autograd engine directly or batched (is_grads_batched, torch.autograd.functional with vectorize=True)")
            return None
        if functorch_active():
            self._skip("ran inside a torch.func transform (grad, vjp, jacrev, vmap): its tensors are the transform's own")
            return None
        roots = list(t_outputs)
        if not roots or not all(isinstance(r, torch.Tensor) for r in roots):
            self._skip("started from GradientEdge objects, not tensors")
            return None
        t0 = time.perf_counter()
        self.pause(True)
        self.busy = True
        try:
            with torch._C.DisableTorchFunction():
                return self._prepare(kind, caller, roots)
        except Exception as exc:  # noqa: BLE001 - the report loses this call, the cell does not
            self.errors.append(f"analysing a {kind} call: {type(exc).__name__}: {exc}")
            return None
        finally:
            self.busy = False
            self.pause(False)
            self.analysis_seconds += time.perf_counter() - t0

    def _prepare(self, kind: CallKind, caller: Any, roots: list[torch.Tensor]) -> CallRecord:
        lane = self._lane
        if lane is not None:
            self._lane = None
            record = lane.record(kind, caller, roots, self.names.namespace, cell_frame(self.filename, caller), self.recorded + 1)
            if record is not None:  # a loop's same call again: the lane recorded it
                self._lane = lane
                walk = Walk(info=record.graph, node_objects=[], leaves={}, user_code=record.user_code, reused=True)
                self._take(record, walk, roots, [])
                return record
        keeper.sweep()
        local = caller.f_locals
        seeds = as_list(local.get("grad_tensors") if kind == "backward" else local.get("grad_outputs"))
        inputs = [t for t in as_list(local.get("inputs")) if isinstance(t, torch.Tensor)]
        names = self.names.for_call(full=False)
        line, function = cell_line(self.filename, caller)
        root_names = tuple(names.name(r) for r in roots)
        group = (kind, root_names) if all(root_names) else (kind, root_names, line)
        walk, graph_from = self._walk(group, roots, names, kind)
        record = CallRecord(
            index=self.recorded + 1,
            kind=kind,
            roots=[root_info(r, root_names[i], seeds[i] if i < len(seeds) else None, read_value=not walk.reused) for i, r in enumerate(roots)],
            graph=walk.info,
            targets={},
            line=line,
            function=function,
            user_code=walk.user_code,
            group=group,
        )
        record.graph_from = graph_from or record.index
        prev = self._last_of_group.get(group) if walk.reused else None
        record.targets = targets_of(walk, names, {id(r) for r in roots}, self.leaves, was_none=record.was_none, reuse=prev.targets if prev is not None else None)
        if walk.reused and not walk.node_objects:  # no walk at all: watch the other named leaves
            entry = self.walked[group][2]
            for ref in entry.watch if entry is not None else ():
                t = ref()
                if t is not None:
                    record.watching.append((ref, grad_state(t)))
        if inputs:
            record.inputs_only = True
            record.asked = {id(t) for t in inputs}
            for t in inputs:  # an intermediate asked for by torch.autograd.grad(y, h)
                if id(t) not in record.targets and t.grad_fn is not None:
                    nid = walk.node_index().get(id(t.grad_fn))
                    if nid is not None:
                        record.targets[id(t)] = Target(key=id(t), name=names.name(t), kind="intermediate", ref=weakref.ref(t), node=nid, retains_grad=t.retains_grad)
        # a training loop calls backward on "loss" again and again: only the last call of a group
        # keeps its graph (the report shows it); older ones keep their gradients
        old = self._last_of_group.get(group)
        if old is not None:
            old.graph = old.graph.slim()
        self._take(record, walk, roots, seeds)
        if walk.reused and not walk.node_objects and not self.locate_nan:  # the no-walk path: a loop may repeat this call
            self._lane = RepeatLane.open(record, roots[0], seeds, inputs, self.leaves, self.names.mentioned, cell_frame(self.filename, caller))
        return record

    def _take(self, record: CallRecord, walk: Walk, roots: list[torch.Tensor], seeds: list[Any]) -> None:
        """``record`` is the call's: the magic's extra work before it runs, then the hooks."""
        self.calls.append(record)
        self.recorded = record.index
        if self.before_call is not None:
            self.before_call(record, walk, roots, seeds)
        capture(record, walk, locate_nan=self.locate_nan)
        self._last_of_group[record.group] = record

    def _walk(self, group: tuple[Any, ...], roots: list[torch.Tensor], names: Names, kind: CallKind) -> tuple[Walk, int | None]:
        """The call's graph, walked in full the first time.  A later call of the same output (a
        training loop) reuses that walk's plain result: with no walk at all when every leaf of
        the first graph has a name and is alive (the leaves' ``.grad`` tells what reached them,
        and a named tensor the first graph lacked is caught after the call), else after a light
        walk that finds the same structure and leaves."""
        nodes = [leaf_node(r) for r in roots]
        prev = self.walked.get(group)
        if prev is not None:
            walk, index, fast = prev
            if fast is not None and kind == "backward" and not self.locate_nan and HAS_GRADIENT_EDGE:
                leaves = {nid: ref() for nid, ref in fast.leaves.items()}
                if all(t is not None for t in leaves.values()):
                    if self.module_calls is not None:
                        self.module_calls.pause()  # a loop repeats this graph: its modules are known already
                    return Walk(info=walk.info, node_objects=[], leaves=leaves, user_code=walk.user_code, shape=walk.shape, reused=True), index
            objects, light_leaves, shape = light_walk(nodes)
            if shape == walk.shape:
                if self.module_calls is not None:
                    self.module_calls.pause()  # a loop repeats this graph: its modules are known already
                keep_if_deep(objects, walk.info)
                return Walk(info=walk.info, node_objects=objects, leaves=light_leaves, user_code=walk.user_code, shape=shape, reused=True), index
        full = self.names.for_call()
        calls = self.module_calls
        walk = self.full_walk(nodes, full)
        if calls is not None:
            calls.resume()  # a new graph: the next forward may make another
        fast = None
        if walk.leaves and all(full.name(t) for t in walk.leaves.values()) and walk.info.depth < keeper.KEEP_FROM:
            known = {id(t) for t in walk.leaves.values()}
            watch = [weakref.ref(t) for k, t in full.objects.items() if k not in known and t.requires_grad and t.is_leaf]
            fast = FastPath(leaves={nid: weakref.ref(t) for nid, t in walk.leaves.items()}, watch=watch)
        self.walked[group] = (Walk(info=walk.info, node_objects=[], leaves={}, user_code=walk.user_code, shape=walk.shape), self.recorded + 1, fast)
        return walk, None

    def group_of(self, record: CallRecord) -> tuple[Any, ...]:
        """Calls of one group differentiate the same output: the same name, or the same line."""
        return record.group

    # -- after the call -------------------------------------------------------------------------

    def _read_grad_results(self, record: CallRecord, caller: Any, result: Any) -> None:
        try:
            inputs = as_list(caller.f_locals.get("inputs"))
            record.results = [weakref.ref(g) for g in list(result) if isinstance(g, torch.Tensor)]
            for t, g in zip(inputs, list(result)):
                if isinstance(t, torch.Tensor) and id(t) in record.targets:
                    record.grads[id(t)] = summarise(g)
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"reading the result of torch.autograd.grad: {exc}")

    def _end(self, record: CallRecord) -> None:
        t0 = time.perf_counter()
        self.pause(True)
        self.busy = True
        try:
            for handle in record.handles:
                handle.remove()
            record.handles = []
            read_after_call(record, self.leaves)
            if record.watching and caught_after(record):  # the graph changed: the output's later calls walk again
                entry = self.walked.get(record.group)
                if entry is not None:
                    self.walked[record.group] = (entry[0], entry[1], None)
            if record.nan_first:
                record.non_finite_at = record.nan_first[0]
                record.nan_first = []
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"reading the gradients of call {record.index}: {type(exc).__name__}: {exc}")
        finally:
            self.busy = False
            self.pause(False)
            self.analysis_seconds += time.perf_counter() - t0

    def full_walk(self, nodes: list[Any], names: Names) -> Walk:
        """A full walk of the graph from ``nodes`` (names, lines, modules) as the cell stands now."""
        calls = self.module_calls
        return walk_graph(
            nodes, names.primary(), names.grad_fns,
            lines=self.lines, leaf_lines=self.cell.assigned, source_lines=self.cell.lines, first_seq=self.first_seq,
            modules=calls.table() if calls is not None else None,
        )

    def close(self) -> None:
        """Remove every hook still in place (a cell interrupted mid-backward)."""
        for record in self.calls:
            for handle in record.handles:
                try:
                    handle.remove()
                except Exception:  # noqa: BLE001
                    pass
            record.handles = []


__all__ = ["Recorder"]
