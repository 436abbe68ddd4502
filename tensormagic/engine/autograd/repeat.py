"""The repeat lane: a training loop's later backward calls, recorded with the least work.

A loop calls ``loss.backward()`` on a new ``loss`` of the same graph at every step.  Once the
recorder has taken its no-walk path for such a call (every leaf of the first graph named and
alive, see ``Recorder._walk``), it opens a :class:`RepeatLane`.  The next call that is the same
call again -- a backward (no ``inputs``, no seed) on the one tensor the same variable holds now,
at the same cell line, made by the same kind of op, with every leaf still alive -- is recorded
by :meth:`RepeatLane.record`: the record shares the earlier call's targets and graph, and only
what belongs to this call is read (its output, each leaf's ``.grad`` state, its time).  Its
result is the record the full path would have made: the lane only skips finding out again what
cannot have changed (names, the call's line, the targets, the graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tensormagic.engine.autograd.records import CallKind, CallRecord, LeafTrack, root_info


@dataclass(slots=True, kw_only=True)
class RepeatLane:
    """The call a loop repeats (see the module docstring)."""

    kind: CallKind
    root_name: str
    root_type: type  # the type of the output's grad_fn (a different op: not the same call)
    line: int | None
    function: str | None
    leaves: list[tuple[int, Any, LeafTrack]]  # (key, weakref to the leaf, its track)
    last: CallRecord  # the latest call on the lane
    earlier: list[str]  # the names mentioned before root_name: one of them holding the output names it instead

    @classmethod
    def open(cls, record: CallRecord, root: torch.Tensor, seeds: list[Any], inputs: list[Any], tracks: Mapping[int, LeafTrack], mentioned: list[str]) -> RepeatLane | None:
        """The lane that ``record`` (a call on the no-walk path, about to run) opens, or None where
        the lane could miss something: several outputs, a seed, ``inputs``, an unnamed output,
        targets other than leaves, a leaf the recorder does not track.  ``mentioned``: the cell's
        names in the order that picks an output's name (the first that holds it)."""
        if record.kind != "backward" or len(record.roots) != 1 or seeds or inputs:
            return None
        name = record.roots[0].name
        if name is None or root.grad_fn is None or record.watching or name not in mentioned:
            return None
        leaves = []
        for key, target in record.targets.items():
            track = tracks.get(key)
            if target.kind != "leaf" or track is None:
                return None
            leaves.append((key, target.ref, track))
        earlier = mentioned[: mentioned.index(name)]
        return cls(kind=record.kind, root_name=name, root_type=type(root.grad_fn), line=record.line, function=record.function, leaves=leaves, last=record, earlier=earlier)

    def record(self, kind: CallKind, caller: Any, roots: list[torch.Tensor], namespace: Mapping[str, Any], where: tuple[int | None, str | None], index: int) -> CallRecord | None:
        """This call's record when it is the lane's call again, else None (the full path runs)."""
        if kind != self.kind or len(roots) != 1 or where != (self.line, self.function):
            return None
        root = roots[0]
        if namespace.get(self.root_name) is not root or type(root.grad_fn) is not self.root_type:
            return None
        if any(namespace.get(n) is root for n in self.earlier):  # the full path would name it otherwise
            return None
        local = caller.f_locals
        inputs = local.get("inputs")
        if local.get("grad_tensors") is not None or not (inputs is None or (isinstance(inputs, (tuple, list)) and not inputs)):
            return None
        leaves = [ref() for _, ref, _ in self.leaves]
        if any(t is None for t in leaves):
            return None
        last = self.last
        record = CallRecord(
            index=index,
            kind=kind,
            roots=[root_info(root, self.root_name, None, read_value=False)],
            graph=last.graph,
            targets=dict(last.targets),
            line=self.line,
            function=self.function,
            user_code=last.user_code,
            group=last.group,
        )
        record.graph_from = last.graph_from
        was_none = record.was_none
        for (key, _, track), t in zip(self.leaves, leaves):
            g = t.grad
            if g is None:
                was_none.add(key)
            track.note(g)
        # only the latest call of an output keeps its graph (as on the full path)
        last.graph = last.graph.slim()
        self.last = record
        return record


__all__ = ["RepeatLane"]
