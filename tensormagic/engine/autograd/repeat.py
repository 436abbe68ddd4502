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

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tensormagic.engine.autograd.graph import GraphInfo
from tensormagic.engine.autograd.records import (
    CallKind,
    CallRecord,
    LeafTrack,
    RootInfo,
    root_info,
)


@dataclass(slots=True, kw_only=True)
class RepeatLane:
    """The call a loop repeats (see the module docstring)."""

    kind: CallKind
    root_name: str
    root_type: type  # the type of the output's grad_fn (a different op: not the same call)
    line: int | None
    function: str | None
    site: tuple[Any, int]  # (code, instruction offset) of the cell's frame at the call: the same place in the cell
    leaves: list[tuple[int, Any, LeafTrack]]  # (key, weakref to the leaf, its track)
    last: CallRecord  # the latest call on the lane
    earlier: list[str]  # the names mentioned before root_name: one of them holding the output names it instead
    slim: GraphInfo | None = None  # what the older calls keep of the graph they share (made once)
    run: CallRecord | None = None  # the record a run of calls that captured nothing is kept in
    _pending_root: RootInfo | None = None  # the call fold_begin took, until fold_end
    _pending_index: int = 0
    cuda: bool = False  # that call's output is on a CUDA device (its time needs a sync)
    refs: list[Any] = field(default_factory=list)  # the leaves' weakrefs (as in leaves)

    def __post_init__(self) -> None:
        self.refs = [ref for _, ref, _ in self.leaves]

    @classmethod
    def open(cls, record: CallRecord, root: torch.Tensor, seeds: list[Any], inputs: list[Any], tracks: Mapping[int, LeafTrack], mentioned: list[str], frame: Any) -> RepeatLane | None:
        """The lane that ``record`` (a call on the no-walk path, about to run) opens, or None where
        the lane could miss something: several outputs, a seed, ``inputs``, an unnamed output,
        targets other than leaves, a leaf the recorder does not track, no frame of the cell.
        ``mentioned``: the cell's names in the order that picks an output's name (the first that
        holds it); ``frame``: the cell's frame making the call (where it is in the cell)."""
        if record.kind != "backward" or len(record.roots) != 1 or seeds or inputs or frame is None:
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
        return cls(kind=record.kind, root_name=name, root_type=type(root.grad_fn), line=record.line, function=record.function, site=(frame.f_code, frame.f_lasti), leaves=leaves, last=record, earlier=earlier)

    def same_call(self, caller: Any, root: torch.Tensor, namespace: Mapping[str, Any], frame: Any) -> bool:
        """The backward call ``caller`` (its frame) makes on ``root``, from the cell's ``frame``,
        is the lane's call again (every check the full path's naming and grouping would make)."""
        if frame is None or frame.f_code is not self.site[0] or frame.f_lasti != self.site[1]:
            return False  # (the same code and instruction: the same line and function, read cheaply)
        if namespace.get(self.root_name) is not root or type(root.grad_fn) is not self.root_type:
            return False
        for n in self.earlier:  # an earlier-mentioned name holding it: the full path would name it so
            if namespace.get(n) is root:
                return False
        local = caller.f_locals
        inputs = local.get("inputs")
        return local.get("grad_tensors") is None and (inputs is None or (isinstance(inputs, (tuple, list)) and not inputs))

    def _new_record(self, index: int, root: RootInfo) -> CallRecord:
        last = self.last
        return CallRecord(
            index=index, kind=self.kind, roots=[root], graph=last.graph, targets=last.targets.copy(), line=self.line, function=self.function,
            user_code=last.user_code, group=last.group, graph_from=last.graph_from, on_lane=True,
        )

    def _became_last(self, record: CallRecord) -> None:
        # only the latest call of an output keeps its graph (as on the full path); the older
        # calls of the lane share one slimmed copy of it
        if self.slim is None:
            self.slim = self.last.graph.slim()
        self.last.graph = self.slim
        self.last = record

    def record(self, kind: CallKind, caller: Any, roots: list[torch.Tensor], namespace: Mapping[str, Any], frame: Any, index: int) -> CallRecord | None:
        """This call's record when it is the lane's call again, else None (the full path runs)."""
        if kind != self.kind or len(roots) != 1 or not self.same_call(caller, roots[0], namespace, frame):
            return None
        leaves = [ref() for _, ref, _ in self.leaves]
        for t in leaves:
            if t is None:
                return None
        record = self._new_record(index, root_info(roots[0], self.root_name, None, read_value=False))
        was_none = record.was_none
        for (key, _, track), t in zip(self.leaves, leaves):
            g = t.grad
            if g is None:
                was_none.add(key)
            track.note(g)
        self._became_last(record)
        return record

    # -- a run of calls that capture nothing, kept as one record ------------------------------------

    def fold_begin(self, caller: Any, root: torch.Tensor, namespace: Mapping[str, Any], frame: Any, index: int) -> bool:
        """True when this backward call is the lane's call again and every leaf's ``.grad`` is
        None (``zero_grad`` ran): the call needs no hook (each ``.grad`` ends holding exactly its
        gradient), and :meth:`fold_end` keeps it in the lane's run record.  False: nothing noted
        (the recorder's other paths take the call)."""
        if not self.same_call(caller, root, namespace, frame):
            return False
        for ref in self.refs:
            t = ref()
            if t is None or t.grad is not None:  # a leaf is gone, or its .grad is set
                return False
        self._pending_root = root_info(root, self.root_name, None, read_value=False)
        self.cuda = root.is_cuda
        self._pending_index = index
        return True

    def fold_end(self, seconds: float, error: str | None) -> CallRecord | None:
        """After a call :meth:`fold_begin` took: the lane's run record (the previous call's, when
        it was the lane's latest and this call did not raise) now stands for this call too -- what
        it held of the previous call is what no report reads (the output the last call replaces,
        the gradients only the last call of an output has read after the cell) -- and None is
        returned; else a new record for this call, returned for the recorder to keep."""
        root, index = self._pending_root, self._pending_index
        self._pending_root = None
        if root is None:
            return None
        run = self.run
        if error is None and run is not None and run is self.last:
            run.index = index
            for older in run.roots:  # an earlier step's output another name still holds is the cell's, not "other"
                if older.ref is not None and older.ref() is not None:
                    run.past_roots.add(older.key)
            run.roots = [root]
            run.repeats += 1
            run.seconds += seconds
            run.grads.clear()
            run.pending.clear()
            self._read_after(run)
            return None
        record = self._new_record(index, root)
        record.was_none.update(key for key, _, _ in self.leaves)
        record.seconds = seconds
        record.error = error
        self._read_after(record)
        self._became_last(record)
        self.run = record if error is None else None
        return record

    def _read_after(self, record: CallRecord) -> None:
        """``read_after_call`` for a folded call (every target a leaf whose ``.grad`` was None as
        the call started, not an output's first call), with each leaf's ``LeafTrack.note(None)``
        for the call's start: one pass over the leaves, since a loop's every step comes here
        (calling those two instead costs a quarter more instructions per step: callgrind)."""
        grads, pending = record.grads, record.pending
        read = record.error is None
        for key, ref, track in self.leaves:
            if track.state is not None:
                track.reset += 1
            track.calls += 1
            t = ref()
            if t is None:
                continue
            g = t.grad
            if g is None:
                track.state = None
                if read:
                    grads[key] = None
            else:
                version = g._version
                track.state = (id(g), version)
                if read:
                    pending[key] = (weakref.ref(g), version)


__all__ = ["RepeatLane"]
