"""The magic's own gradient computations: only where they change nothing and run no user code.

The cell's own backward calls are observed (:mod:`.recorder`).  Anything more - the gradients of
a cell that calls no backward, of ``--of`` outputs, of leaves its ``torch.autograd.grad`` did not
ask for, Jacobians, the search for where a NaN starts - needs a backward pass of the magic's own
over the user's graph.  :class:`ExtraWork` makes one only when

* nothing in that graph is user code that the pass would run again: custom
  ``autograd.Function`` backwards, module backward hooks, saved-tensor hooks (checkpointing,
  offloading), tensor hooks or ``retain_grad`` (whose ``.grad`` a pass would change), or a part
  made in an earlier cell, where hooks cannot be ruled out;
* it fits the time budget, estimated before starting from what the cell's own passes took.

Otherwise it records a :class:`~.report.NotComputed` saying what was left out and why.  Its passes
use ``retain_graph=True`` and ``torch.autograd.grad`` (no ``.grad`` changes) and run with the
user's modes and saved-tensor hooks set aside.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from tensormagic.engine.autograd.guards import without_user_modes
from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.records import CallRecord, leaf_node, root_info, turns_non_finite
from tensormagic.engine.autograd.report import NotComputed
from tensormagic.engine.autograd.summary import local_shard, summarise
from tensormagic.engine.autograd.targets import targets_of
from tensormagic.engine.autograd.walk import Walk, walk_graph
from tensormagic.engine.naming import describe_exception


class ExtraWork:
    """Bounded, side-effect-free extra computations for one cell (see the module docstring)."""

    def __init__(self, recorder: Recorder, budget_s: float) -> None:
        self.recorder = recorder
        self.budget_s = budget_s
        self.spent_s = 0.0
        self.pass_s: float | None = None  # how long the magic's own gradient pass took, once made
        self.not_computed: list[NotComputed] = []
        self._said: set[tuple[str, str]] = set()

    # -- may we? -------------------------------------------------------------------------------

    def user_code(self, walk: Walk) -> list[str]:
        """What in ``walk``'s graph a pass of the magic's own would run or change (empty: nothing)."""
        reasons = list(walk.user_code)
        if any(n.before_cell for n in walk.info.nodes if n.kind == "op"):
            reasons.append("part of the graph was made before this cell (hooks on it cannot be ruled out)")
        if self.recorder.hooks_registered:
            reasons.append(f"the cell registered {self.recorder.hooks_registered} tensor hook(s) or retain_grad (a pass would run or change them)")
        for leaf in walk.leaves.values():
            if getattr(leaf, "_backward_hooks", None) or getattr(leaf, "_post_accumulate_grad_hooks", None):
                reasons.append("a leaf of the graph has hooks (register_hook / register_post_accumulate_grad_hook)")
                break
        if any(local_shard(leaf) is not None or type(leaf).__name__ == "DTensor" for leaf in walk.leaves.values()):
            reasons.append("the graph holds DTensors (a pass of the magic's own would communicate, and hang unless every rank made it)")
        return reasons

    def estimate(self, passes: float) -> float:
        """Seconds ``passes`` backward passes would take, from what the cell's own took (or its
        forward, about as long as a backward, when it made none)."""
        rec = self.recorder
        calls = rec.backward_calls + rec.grad_calls
        known = [rec.forward_estimate()]
        if calls and rec.backward_seconds > 0:
            known.append(rec.backward_seconds / calls)
        if self.pass_s is not None:
            known.append(self.pass_s)
        return passes * max(min(known), 1e-5)

    def allowed(self, what: str, walk: Walk, passes: float, option: str | None = "extra_seconds") -> bool:
        """True when ``passes`` backward passes over ``walk``'s graph may run; else say why not."""
        reasons = self.user_code(walk)
        if reasons:
            self.skip(what, "it would need a backward pass of the magic's own, and " + "; ".join(reasons[:3]), None)
            return False
        cost = self.estimate(passes)
        if self.spent_s + cost > self.budget_s:
            self.skip(what, f"it would take about {_seconds(cost)} (the magic's extra work is kept under {_seconds(self.budget_s)})", option, cost)
            return False
        return True

    def skip(self, what: str, why: str, option: str | None = None, estimate_s: float | None = None) -> None:
        if (what, why) not in self._said:
            self._said.add((what, why))
            self.not_computed.append(NotComputed(what=what, why=why, option=option, estimate_s=estimate_s))

    def timed(self, t0: float) -> None:
        self.spent_s += time.perf_counter() - t0

    # -- the passes ----------------------------------------------------------------------------

    def walk_of(self, output: torch.Tensor, names: Any, lines: Any, cell: Any) -> Walk:
        """The graph of an output the magic differentiates itself (user modes set aside)."""
        with without_user_modes():
            call_names = names.for_call()
            return walk_graph(
                [leaf_node(output)], call_names.primary(), call_names.grad_fns,
                lines=lines, leaf_lines=cell.assigned, source_lines=cell.lines, first_seq=self.recorder.first_seq,
                modules=self.recorder.module_calls.table() if self.recorder.module_calls is not None else None,
            )

    def gradients(self, name: str, output: torch.Tensor, walk: Walk, names: Any, source: str) -> CallRecord:
        """The gradients of ``output`` w.r.t. its leaves and the cell's named intermediates, in one
        pass of the magic's own (none, and a NotComputed saying why, when it may not run)."""
        rec = self.recorder
        was, rec.busy = rec.busy, True
        try:
            record = CallRecord(
                index=0, kind="computed", roots=[root_info(output, name, None)], graph=walk.info,
                targets=targets_of(walk, names.for_call(), {id(output)}, rec.leaves, track_leaves=False), source=source, user_code=walk.user_code,
            )
            if not self.allowed(f"the gradients of {name}", walk, 1.0):
                return record
            seed = None
            if output.numel() != 1:
                seed = torch.ones_like(output)
                record.ones = True
            live = [(k, t.ref()) for k, t in record.targets.items()]
            live = [(k, t) for k, t in live if t is not None]
            t0 = time.perf_counter()
            try:
                with without_user_modes(), torch.enable_grad():
                    got = torch.autograd.grad([output], [t for _, t in live], [seed] if seed is not None else None, retain_graph=True, allow_unused=True) if live else ()
                for (k, _), g in zip(live, got):
                    record.grads[k] = summarise(g)
                record.seconds = time.perf_counter() - t0
                self.pass_s = record.seconds if self.pass_s is None else min(self.pass_s, record.seconds)
            except Exception as exc:  # noqa: BLE001 - a graph the magic cannot differentiate
                self.skip(f"the gradients of {name}", f"the magic's backward pass failed: {describe_exception(exc)}")
            finally:
                self.timed(t0)
            if any(s is not None and (s.plain()["nan"] or s.plain()["inf"]) for s in record.grads.values()):
                record.non_finite_at = self.locate_nonfinite(walk, output, seed)
            return record
        finally:
            rec.busy = was

    def missing_grads(self, record: CallRecord, walk: Walk, outputs: Sequence[torch.Tensor], seeds: Sequence[Any]) -> int:
        """The leaves a cell's ``torch.autograd.grad`` did not ask for, in one extra pass before
        the cell's own call (graph retained); how many were computed."""
        extra = [(k, t.ref()) for k, t in record.targets.items() if t.kind == "leaf" and k not in record.asked]
        extra = [(k, t) for k, t in extra if t is not None]
        if not extra or not self.allowed("gradients torch.autograd.grad was not asked for", walk, 1.0):
            return 0
        rec = self.recorder
        was, rec.busy = rec.busy, True
        t0 = time.perf_counter()
        try:
            with without_user_modes(), torch.enable_grad():
                got = torch.autograd.grad(list(outputs), [t for _, t in extra], list(seeds) or None, retain_graph=True, allow_unused=True)
            for (k, _), g in zip(extra, got):
                record.grads[k] = summarise(g)
            return len(extra)
        except Exception as exc:  # noqa: BLE001 - the user's own call reports its own errors
            self.skip("gradients torch.autograd.grad was not asked for", describe_exception(exc))
            return 0
        finally:
            rec.busy = was
            self.timed(t0)

    def locate_nonfinite(self, walk: Walk, output: torch.Tensor, seed: torch.Tensor | None) -> tuple[int, str, int | None] | None:
        """One more pass with a post-hook on every node: the first whose gradient turns NaN/inf."""
        if not self.allowed("where the first NaN/inf gradient appears", walk, 1.0, "locate_nan"):
            return None
        first: list[int] = []
        handles = []
        rec = self.recorder
        was, rec.busy = rec.busy, True
        nodes = walk.info.nodes
        for i, obj in enumerate(walk.node_objects):
            if nodes[i].kind == "leaf":
                continue

            def post(grad_inputs: Any, grad_outputs: Any, i: int = i) -> None:
                if not first and turns_non_finite(grad_inputs, grad_outputs):
                    first.append(i)

            handles.append(obj.register_hook(post))
        t0 = time.perf_counter()
        try:
            with without_user_modes(), torch.enable_grad():
                torch.autograd.grad([output], list(walk.leaves.values()), [seed] if seed is not None else None, retain_graph=True, allow_unused=True)
        except Exception:  # noqa: BLE001
            return None
        finally:
            for h in handles:
                h.remove()
            rec.busy = was
            self.timed(t0)
        if not first:
            return None
        node = nodes[first[0]]
        return (node.id, node.op, node.line)


def _seconds(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.1f} s"


__all__ = ["ExtraWork"]
