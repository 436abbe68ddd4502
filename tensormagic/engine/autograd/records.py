"""What the recorder keeps of each gradient computation: its roots, targets and record, as plain data.

A :class:`CallRecord` per ``backward`` / ``torch.autograd.grad`` call of the cell (what it started
from, which tensors' gradients it gives, what was captured), and the small helpers that read a
tensor's autograd state without running user code.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from tensormagic.engine.autograd.graph import GraphInfo
from tensormagic.engine.autograd.summary import GradSummary, summarise

CallKind = Literal["backward", "grad", "computed"]

BACKWARD_CODE = torch.autograd.backward.__code__
GRAD_CODE = torch.autograd.grad.__code__


@dataclass(slots=True, kw_only=True)
class RootInfo:
    """One tensor a gradient computation started from."""

    key: int  # id() while the record lives
    name: str | None
    shape: list[int] | None
    dtype: str
    value: Any  # a number for one-element tensors
    seeded: bool = False  # the call was given the gradient to start from (a vector-Jacobian product)
    seed_key: int | None = None  # id() of that gradient tensor
    ref: Any = None  # weakref to the output (--check replays it)
    version: int = 0  # its version counter then (a value read later must be the same)


@dataclass(slots=True, kw_only=True)
class Target:
    """A tensor the report gives a gradient for: a graph leaf or a named intermediate."""

    key: int
    name: str | None
    kind: Literal["leaf", "intermediate"]
    ref: Any  # weakref to the tensor
    node: int  # its node id in the call's graph (the leaf's AccumulateGrad, or its grad_fn)
    retains_grad: bool = False


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """One gradient computation: a ``backward``/``grad`` call of the cell, or the magic's own."""

    index: int
    kind: CallKind
    roots: list[RootInfo]
    graph: GraphInfo
    targets: dict[int, Target]
    line: int | None = None  # the cell line of the call
    function: str | None = None  # the function the cell defined that made the call (None: the cell itself)
    grads: dict[int, GradSummary | None] = field(default_factory=dict)
    seconds: float = 0.0
    flops: int | None = None
    inputs_only: bool = False  # backward(inputs=...) / grad(inputs): only those were computed
    asked: set[int] = field(default_factory=set)
    non_finite_at: tuple[int, str, int | None] | None = None  # node id, op, line where a NaN/inf first appears
    error: str | None = None  # the call raised this
    user_code: list[str] = field(default_factory=list)  # user code in the graph (custom Functions, hooks)
    source: str | None = None  # for the magic's own computations: why it made them
    ones: bool = False  # the magic used ones as the gradient of a non-scalar output
    handles: list[Any] = field(default_factory=list)  # removable hooks (empty once the call is over)
    group: tuple[Any, ...] = ()  # calls of one group differentiate the same output (a training loop)
    was_none: set[int] = field(default_factory=set)  # leaves whose .grad was None when the call started
    graph_from: int = 0  # the call whose walk gave the graph (a training loop reuses the first)
    pending: dict[int, tuple[Any, int]] = field(default_factory=dict)  # leaf -> (weakref to its .grad, version) to read later
    taken_from: dict[int, int] = field(default_factory=dict)  # leaf -> the earlier call whose gradient is shown
    watching: list[tuple[Any, tuple[int, int] | None]] = field(default_factory=list)  # (weakref, .grad state) of named leaves a no-walk call watches
    nan_first: list[tuple[int, str, int | None]] = field(default_factory=list)  # (node, op, line) where a hook saw NaN/inf appear
    results: list[Any] = field(default_factory=list)  # weakrefs to the gradients torch.autograd.grad returned
    on_lane: bool = False  # recorded by the repeat lane (a training loop's same call again)
    repeats: int = 1  # the calls this record stands for: a loop's run of lane calls, folded into the last (index is its)
    past_roots: set[int] = field(default_factory=set)  # id() of the earlier calls' outputs a fold replaced, still alive then
    unhooked: set[int] = field(default_factory=set)  # named intermediates found in its graph after the cell: their gradient was not recorded
    checked: bool = False  # a call that shares an earlier call's graph had its own graph read after the cell (settle)

    def result_keys(self) -> set[int]:
        """id() of the gradients this call returned that are still alive."""
        return {id(t) for t in (ref() for ref in self.results) if t is not None}

    def read_pending(self) -> list[int]:
        """Summarise the gradients left to read after the cell; the leaves whose ``.grad`` was
        set to None or changed in place since the call (their gradient is gone)."""
        lost = []
        for key, (ref, version) in self.pending.items():
            g = ref()
            if g is not None and g._version == version:
                summary = self.grads[key] = summarise(g)
                if summary is not None:
                    summary.after_cell = True  # (called once the cell is over: see GradSummary.is_of)
            else:
                lost.append(key)
        self.pending = {}
        return lost


@dataclass(slots=True, kw_only=True)
class LeafTrack:
    """One leaf's ``.grad`` across the cell's backward calls."""

    name: str | None
    ref: Any
    before: GradSummary | None  # .grad when a call of the cell first touched it
    had_grad: bool
    calls: int = 0
    state: tuple[int, int] | None = None  # (id, version) of .grad after the last call
    reset: int = 0  # times .grad was set to None between calls (zero_grad)
    changed: int = 0  # times .grad was changed in place between calls

    def note(self, grad: torch.Tensor | None) -> None:
        """One more call touched the leaf, whose ``.grad`` is ``grad`` as the call starts: count a
        reset (None since the last call) or an in-place change."""
        state = state_of(grad)
        if self.state is not None and state != self.state:
            if state is None:
                self.reset += 1
            else:
                self.changed += 1
        self.calls += 1


def state_of(g: torch.Tensor | None) -> tuple[int, int] | None:
    """(id, version) of a gradient (None for None): whether ``.grad`` is still what a call left."""
    return None if g is None else (id(g), g._version)


def grad_state(t: torch.Tensor) -> tuple[int, int] | None:
    return state_of(t.grad)


def read_after_call(record: CallRecord, tracks: Mapping[int, LeafTrack]) -> None:
    """After a call: each leaf target's ``.grad`` state goes into its track, and a leaf whose
    ``.grad`` was None as the call started holds this call's gradient: summarised at once on an
    output's first call (or when None), else left to read after the cell if still as the call
    left it (``record.pending``).  One pass with no call per leaf it can spare: a training loop
    comes here every step."""
    grads, pending, was_none = record.grads, record.pending, record.was_none
    read = record.kind == "backward" and record.error is None
    first = record.graph_from == record.index
    for key, target in record.targets.items():
        if target.kind != "leaf":
            continue
        t = target.ref()
        if t is None:
            continue
        g = t.grad
        if read and key in was_none and key not in grads:
            if first or g is None:
                grads[key] = summarise(g)
            else:
                pending[key] = (weakref.ref(g), g._version)
        track = tracks.get(key)
        if track is not None:
            track.state = None if g is None else (id(g), g._version)  # state_of(g), without the call


def root_info(t: torch.Tensor, name: str | None, seed: Any, read_value: bool = True) -> RootInfo:
    """The output of a call.  A one-element output's value is read at once on the CPU with
    ``read_value`` (a device would have to sync); else after the cell (:func:`root_value`), if the
    tensor is still as the call left it."""
    value = None
    shape: list[int] | None
    try:
        shape = list(t.shape)
        if read_value and type(t) is torch.Tensor and t.device.type == "cpu" and t.numel() == 1 and t.layout == torch.strided:
            value = t.item()
    except Exception:  # noqa: BLE001 - nested, fake or subclass outputs: no value
        shape = None
    seeded = isinstance(seed, torch.Tensor)
    return RootInfo(key=id(t), name=name, shape=shape, dtype=str(t.dtype), value=value, seeded=seeded, seed_key=id(seed) if seeded else None, ref=weakref.ref(t), version=t._version)


def root_value(root: RootInfo) -> Any:
    """A one-element output's value, read after the cell (None when it is gone or not readable)."""
    if root.value is not None or root.ref is None:
        return root.value
    t = root.ref()
    try:
        if type(t) is torch.Tensor and t._version == root.version and t.numel() == 1 and t.layout == torch.strided and t.device.type != "meta":
            return t.item()
    except Exception:  # noqa: BLE001
        return None
    return None


def leaf_node(t: torch.Tensor) -> Any:
    """The AccumulateGrad node of a leaf that requires grad (a backward started on a leaf)."""
    if not t.requires_grad or t.grad_fn is not None:
        return t.grad_fn
    with torch.enable_grad(), torch._C.DisableTorchFunction():
        node = t.view_as(t).grad_fn
        assert node is not None  # a view of a tensor that requires grad has one
        return node.next_functions[0][0]


HAS_GRADIENT_EDGE = hasattr(torch.autograd.graph, "get_gradient_edge")


def accumulator(t: torch.Tensor | None) -> Any:
    """The AccumulateGrad node of a leaf, without walking a graph."""
    if t is None:
        return None
    try:
        return torch.autograd.graph.get_gradient_edge(t).node
    except Exception:  # noqa: BLE001 - an older torch: the walk gave the node objects
        return None


def turns_non_finite(grad_inputs: Sequence[Any], grad_outputs: Sequence[Any]) -> bool:
    """For a node's post-hook: the gradients it sends on hold NaN/inf while the ones it received
    are finite, i.e. this op is where a non-finite gradient first appears."""
    with torch.no_grad(), torch._C.DisableTorchFunction():
        bad_in = any(isinstance(g, torch.Tensor) and not bool(torch.isfinite(g).all()) for g in grad_inputs)
        return bad_in and all(not isinstance(g, torch.Tensor) or bool(torch.isfinite(g).all()) for g in grad_outputs)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def functorch_active() -> bool:
    """A ``torch.func`` transform (grad, vjp, jacrev, vmap) is running now."""
    try:
        return bool(_TRANSFORMS_ACTIVE())
    except Exception:  # noqa: BLE001 - an older torch
        return False


# (cheap: peek_interpreter_stack copies functorch's thread-local state, at every backward call)
_TRANSFORMS_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", None) or (lambda: torch._C._functorch.peek_interpreter_stack() is not None)


@dataclass(slots=True)
class FastPath:
    """What lets a loop's later calls skip the walk: the first graph's leaves (all named), and the
    other named leaves to watch (one of them changing means the graph changed)."""

    leaves: dict[int, Any]  # node id -> weakref to the leaf
    watch: list[Any]  # weakrefs


__all__ = ["BACKWARD_CODE", "GRAD_CODE", "HAS_GRADIENT_EDGE", "CallKind", "CallRecord", "FastPath", "LeafTrack", "RootInfo", "Target", "accumulator", "as_list", "functorch_active", "grad_state", "leaf_node", "read_after_call", "root_info", "root_value", "state_of", "turns_non_finite"]
