"""The report's cost, notes, ``--check`` result and "nothing to differentiate" message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tensormagic.engine.autograd.check import TapeMode, _BoundApply, check_gradients
from tensormagic.engine.autograd.guards import without_user_modes
from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.records import CallRecord
from tensormagic.engine.autograd.report import CheckInfo, CostInfo


def cost(recorder: Recorder, records: Sequence[CallRecord], computed: Sequence[CallRecord], cell_seconds: float, extra_s: float) -> CostInfo:
    """Forward and backward time, bytes saved for backward, FLOPs."""
    rec = recorder
    forward = max(0.0, cell_seconds - rec.backward_seconds - rec.analysis_seconds)
    if rec.backward_calls or rec.grad_calls:
        backward = rec.backward_seconds
        source = "the cell's backward" if rec.backward_calls else "the cell's torch.autograd.grad"
    elif any(r.seconds for r in computed):
        backward = sum(r.seconds for r in computed)
        source = "the magic's own backward pass, not the cell's: the cell did not call backward (its first use includes one-time set-up)"
    else:
        backward, source = 0.0, "none"
    out = CostInfo(
        forward_s=forward,
        backward_s=backward,
        saved_bytes=sum(r.graph.saved_bytes for r in records),
        saved_under_hooks=sum(r.graph.saved_under_hooks for r in records),
        ratio=(backward / forward) if forward > 0 and backward > 0 and (rec.backward_calls or rec.grad_calls) else None,  # the cell's own only
        backward_source=source,
        backward_calls=rec.backward_calls,
        grad_calls=rec.grad_calls,
        magic_s=rec.analysis_seconds,
        extra_s=extra_s,
    )
    if rec.flop_counter is not None:
        total = rec.flop_counter.get_total_flops()
        back = sum(r.flops or 0 for r in rec.calls)
        out.flops_forward = max(0, total - back)
        if rec.backward_calls or rec.grad_calls:
            out.flops_backward = back
    return out


def notes(recorder: Recorder, records: Sequence[CallRecord]) -> list[str]:
    """What the reader should know about how the rows came about."""
    rec = recorder
    out: list[str] = []
    if rec.recorded > len(records):
        out.append(
            f"the cell computed gradients {rec.recorded:,} times (backward {rec.backward_calls:,}, torch.autograd.grad {rec.grad_calls:,}): "
            "the rows show the last computation of each output; the cost adds them all up"
        )
        resets = sum(1 for t in rec.leaves.values() if t.reset)
        if resets:
            out.append(f"last of {rec.recorded:,} gradient computations: .grad was reset by zero_grad in between, so each .grad holds the last step's gradient only")
    for why, n in rec.skipped.items():
        out.append(f"{n:,} gradient computation{'s' if n > 1 else ''} of the cell {why}: not analysed (the cell's results are its own)")
    out += [f"the magic's analysis hit a problem: {e}" for e in rec.errors]
    return out


def check(tape: TapeMode, records: Sequence[CallRecord]) -> CheckInfo:
    """``torch.autograd.gradcheck`` on a replay of the tape (copies only); the tape is dropped."""
    try:
        if tape.full is not None:
            return CheckInfo(ok=None, message=f"not checked: {tape.full}, more than the replay of --check keeps")
        if not records:
            return CheckInfo(ok=None, message="nothing to check: no output")
        outputs = [t for r in records for t in (root.ref() if root.ref is not None else None for root in r.roots) if t is not None]
        seen: set[int] = set()
        inputs: list[tuple[str, torch.Tensor]] = []
        for r in records:
            for key, target in r.targets.items():
                t = target.ref()
                if target.kind == "leaf" and t is not None and key not in seen:
                    seen.add(key)
                    inputs.append((target.name or f"leaf{list(t.shape)}", t))
        if len(outputs) < sum(len(r.roots) for r in records):
            return CheckInfo(ok=None, message="not checked: an output was not kept by the cell", inputs=[n for n, _ in inputs])
        with without_user_modes():
            ok, message = check_gradients(tape.tape, inputs, outputs)
        custom = sorted({e.func.__name__ for e in tape.tape if isinstance(e.func, _BoundApply)})
        if custom and ok is not None:
            message += f" (gradcheck ran {', '.join(custom)} again, forward and backward, on float64 copies)"
        return CheckInfo(ok=ok, message=message, inputs=[n for n, _ in inputs])
    finally:
        tape.tape.clear()


def nothing_message(assigned: Sequence[str], namespace: Mapping[str, Any]) -> str:
    """Why there is nothing to differentiate, and what to do."""
    tensors = [n for n in assigned if isinstance(namespace.get(n), torch.Tensor)]
    if not tensors:
        return "the cell made no tensor, so there is no gradient to explain: compute with tensors that require grad (and call .backward()) to see one"
    wanting = [n for n in tensors if namespace[n].requires_grad]
    if wanting and not torch.is_grad_enabled():
        return (
            f"{', '.join(wanting[:5])} require{'s' if len(wanting) == 1 else ''} grad, but grad mode is off "
            "(torch.set_grad_enabled(False) ran in this cell or before it), so no operation recorded a graph and there is no derivative "
            "to explain: turn it back on with torch.set_grad_enabled(True) and run the cell again"
        )
    if wanting:
        first = wanting[0]
        return (
            f"{', '.join(wanting[:5])} require{'s' if len(wanting) == 1 else ''} grad, but the cell computes nothing from "
            f"{'it' if len(wanting) == 1 else 'them'}, so there is no derivative to explain: compute an output from it and call backward, "
            f"e.g. y = {first} * 3; y.backward()"
        )
    return (
        f"no tensor of this cell needs a gradient ({', '.join(tensors[:5])} do{'es' if len(tensors) == 1 else ''} not require grad): "
        "create the inputs to differentiate with requires_grad=True, e.g. w = torch.tensor(4., requires_grad=True)"
    )


__all__ = ["check", "cost", "notes", "nothing_message"]
