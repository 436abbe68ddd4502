"""The removable hooks that capture a call's gradients as the cell's own backward runs.

Before a call the recorder observes, :func:`capture` puts a pre-hook on the ``AccumulateGrad``
node of each leaf target whose ``.grad`` is not None (its ``.grad`` after the call would mix in
what it held before) and a tensor hook on each named intermediate; they summarise the gradient
as it passes (never keeping it) and are removed when the call ends.  With ``locate_nan`` every
node also gets a post-hook that notes where a NaN/inf first appears in the gradients.
"""

from __future__ import annotations

from typing import Any

import torch

from tensormagic.engine.autograd.records import CallRecord, accumulator, turns_non_finite
from tensormagic.engine.autograd.summary import summarise
from tensormagic.engine.autograd.walk import Walk


def capture(record: CallRecord, walk: Walk, *, locate_nan: bool = False) -> None:
    """Removable hooks that summarise each target's gradient as the cell's backward runs."""
    grads = record.grads
    handles = record.handles
    for key, target in record.targets.items():
        if target.kind == "leaf":
            if record.kind == "backward" and key in record.was_none:
                continue  # .grad is None now: after the call it holds exactly this call's gradient

            def pre(grad_outputs: Any, key: int = key) -> None:
                grads[key] = summarise(grad_outputs[0])

            node = walk.node_objects[target.node] if walk.node_objects else accumulator(target.ref())
            if node is not None:
                handles.append(node.register_prehook(pre))
        elif record.kind == "backward":  # torch.autograd.grad returns these itself
            t = target.ref()
            if t is None:
                continue

            def hook(grad: torch.Tensor, key: int = key) -> None:
                grads[key] = summarise(grad)

            handles.append(t.register_hook(hook))
    if locate_nan:
        nodes = record.graph.nodes
        first = record.nan_first
        for i, obj in enumerate(walk.node_objects):
            if nodes[i].kind == "leaf":
                continue

            def post(grad_inputs: Any, grad_outputs: Any, i: int = i) -> None:
                if not first and turns_non_finite(grad_inputs, grad_outputs):
                    first.append((i, nodes[i].op, nodes[i].line))

            handles.append(obj.register_hook(post))


__all__ = ["capture"]
