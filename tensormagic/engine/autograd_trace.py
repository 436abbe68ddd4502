"""Recording what a cell does with autograd, and putting every global back afterwards.

Pure (torch only).  :class:`AutogradRecorder` is a context manager around the cell's execution:

* it wraps ``torch.autograd.backward`` (which ``Tensor.backward`` calls) and ``torch.autograd.grad``:
  before the user's own call runs, it walks the graph (names, lines, bytes saved for backward) and
  puts removable hooks on the graph's leaves and the namespace's intermediate tensors, so that the
  gradients of *this* backward are captured as it runs - no second backward pass, ``.grad`` ends
  exactly as without the magic;
* a light ``TorchFunctionMode`` notes the cell line of each op that records a graph node (by the
  node's sequence number: no tensor or node is kept alive);
* optionally ``FlopCounterMode`` counts FLOPs.

On exit - normal, exception or KeyboardInterrupt - the patched functions, the mode stacks, grad
mode, anomaly mode and the saved-tensor hooks stack are put back as they were on entry (what the
cell itself changed at the top level is the cell's business and stays, as in a normal cell).
"""

from __future__ import annotations

import inspect
import math
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from tensormagic.engine.autograd_graph import GraphInfo, LineMap, LineSpans, Walk, walk_graph
from tensormagic.engine.stats import cpu_moments

#: Tensors up to this many elements have their gradient kept as values; bigger ones as statistics.
SMALL_GRAD = 64

_ORIG_BACKWARD = torch.autograd.backward
_ORIG_GRAD = torch.autograd.grad
_BACKWARD_SIG = inspect.signature(_ORIG_BACKWARD)
_GRAD_SIG = inspect.signature(_ORIG_GRAD)


# ---------------------------------------------------------------------------------------------
# gradient summaries (tensors until the end of the cell, then plain values)


@dataclass
class GradSummary:
    """A gradient as small tensors: the values (small) or statistics (big), never the gradient."""

    shape: list[int]
    dtype: str
    values: torch.Tensor | None  # a copy, small tensors only
    stats: tuple[Any, ...] | None  # (norm, min, max, sum, finite count, nan count, inf count): 0-d tensors or numbers

    def plain(self) -> dict[str, Any]:
        """``{shape, dtype, value|None, norm, min, max, mean, nan, inf}`` as Python values."""
        out: dict[str, Any] = {"shape": self.shape, "dtype": self.dtype, "value": None}
        if self.values is not None:
            v = self.values.detach().cpu()
            if v.is_complex():
                out["value"] = v.tolist() if v.dim() else complex(v.item())
                vr = v.abs().double()
            else:
                out["value"] = v.tolist()
                vr = v.double()
            finite = vr[torch.isfinite(vr)]
            out.update(
                norm=float(torch.linalg.vector_norm(vr)) if vr.numel() else 0.0,
                min=float(finite.min()) if finite.numel() else math.nan,
                max=float(finite.max()) if finite.numel() else math.nan,
                mean=float(finite.mean()) if finite.numel() else math.nan,
                nan=int(torch.isnan(vr).sum()),
                inf=int(torch.isinf(vr).sum()),
            )
        elif self.stats is not None:
            norm, lo, hi, total, count, nan, inf = (_num(v) for v in self.stats)
            finite_count = count if count else 0
            out.update(
                norm=norm,
                min=lo if finite_count else math.nan,
                max=hi if finite_count else math.nan,
                mean=total / finite_count if finite_count else math.nan,
                nan=int(nan),
                inf=int(inf),
            )
        return out


def summarise(grad: torch.Tensor | None) -> GradSummary | None:
    """Summarise a gradient without keeping it (called inside backward hooks): a copy of a small
    one, else a few 0-d tensors (no device sync: they are read after the cell)."""
    if grad is None:
        return None
    # no torch-function mode (the line recorder, the user's) sees the magic's own ops
    with torch.no_grad(), torch._C.DisableTorchFunction():
        g = grad.detach() if grad.requires_grad else grad
        if g.layout != torch.strided:
            g = g.to_dense()
        shape, dtype = list(g.shape), str(g.dtype)
        if g.numel() <= SMALL_GRAD:
            return GradSummary(shape, dtype, g.clone(), None)
        gd = g.abs() if g.is_complex() else g
        if gd.dtype in (torch.float16, torch.bfloat16) or "float8" in str(gd.dtype):
            gd = gd.float()
        got = cpu_moments(gd)  # one pass of the C helper on the CPU: microseconds, not four ops
        if got is not None and all(math.isfinite(v) for v in got[:4]):
            lo_f, hi_f, s1, s2, _ = got
            return GradSummary(shape, dtype, None, (math.sqrt(s2), lo_f, hi_f, s1, gd.numel(), 0, 0))
        # a NaN/inf anywhere makes the float64 norm non-finite; counted only then (free on the CPU)
        norm = torch.linalg.vector_norm(gd, dtype=torch.float64)
        lo, hi = torch.aminmax(gd)
        total = gd.sum(dtype=torch.float64)
        stats: tuple[Any, ...] = (norm, lo, hi, total, gd.numel(), 0, 0)
        if gd.device.type != "cpu" or not math.isfinite(norm.item()):
            finite = torch.isfinite(gd)
            nan = torch.isnan(gd).sum()
            count = finite.sum()
            inf = gd.numel() - count - nan
            big = torch.finfo(gd.dtype).max
            lo = torch.where(finite, gd, torch.full((), big, dtype=gd.dtype, device=gd.device)).min()
            hi = torch.where(finite, gd, torch.full((), -big, dtype=gd.dtype, device=gd.device)).max()
            total = torch.where(finite, gd, torch.zeros((), dtype=gd.dtype, device=gd.device)).sum(dtype=torch.float64)
            stats = (norm, lo, hi, total, count, nan, inf)
        return GradSummary(shape, dtype, None, stats)


def _num(v: Any) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


# ---------------------------------------------------------------------------------------------
# records


@dataclass
class RootInfo:
    """One tensor a backward/grad call started from (plain)."""

    name: str | None
    shape: list[int]
    dtype: str
    value: Any  # a number for one-element tensors
    weighted: bool  # True when the call passed a gradient (a vector-Jacobian product)


@dataclass
class Target:
    """A tensor the report gives a gradient for: a graph leaf or a namespace intermediate."""

    key: int  # id() of the tensor while the record lives
    name: str | None
    kind: str  # "leaf" | "intermediate"
    ref: Any  # weakref to the tensor
    node: int | None  # its graph node id (leaves), or its grad_fn's node id
    retains_grad: bool = False
    grad_before: GradSummary | None = None
    had_grad: bool = False


@dataclass
class CallRecord:
    """One gradient computation: a ``backward``/``grad`` call of the cell, or the magic's own."""

    kind: str  # "backward" | "grad" | "computed"
    roots: list[RootInfo]
    walk_info: Any  # GraphInfo
    targets: dict[int, Target]
    grads: dict[int, GradSummary | None] = field(default_factory=dict)
    seconds: float = 0.0
    flops: int | None = None
    jacobian: list[Any] = field(default_factory=list)  # filled by the report builder's helpers
    inputs_only: bool = False  # backward(inputs=...) / grad(inputs): only those were computed
    asked: set[int] = field(default_factory=set)  # keys the user's own call asked for
    non_finite_at: tuple[int, str, int | None] | None = None  # node id, op, line where a NaN/inf first appears
    saved_ids: set[int] = field(default_factory=set)
    call_line: int | None = None  # the cell line of the backward/grad call
    source: str | None = None  # for the magic's own computations: "--of", "last expression", ...
    ones: bool = False  # the magic used ones as the gradient of a non-scalar output
    extra: int = 0  # gradients the magic added to the cell's torch.autograd.grad (one extra pass)
    root_tensors: list[Any] = field(default_factory=list)  # --check only: the outputs themselves


@dataclass
class GlobalState:
    """Every process-wide autograd setting the recorder touches."""

    grad_enabled: bool
    anomaly: bool
    anomaly_nan: bool
    inference: bool
    backward_fn: Any
    grad_fn: Any
    tensor_backward: Any
    function_modes: int
    dispatch_modes: int
    saved_hooks: Any
    function_apply: Any = None

    @staticmethod
    def capture() -> "GlobalState":
        return GlobalState(
            grad_enabled=torch.is_grad_enabled(),
            anomaly=torch.is_anomaly_enabled(),
            anomaly_nan=torch.is_anomaly_check_nan_enabled(),
            inference=torch.is_inference_mode_enabled(),
            backward_fn=torch.autograd.backward,
            grad_fn=torch.autograd.grad,
            tensor_backward=torch.Tensor.backward,
            function_modes=torch._C._len_torch_function_stack(),
            dispatch_modes=len(_dispatch_stack()),
            saved_hooks=torch._C._autograd._top_saved_tensors_default_hooks(False),
            function_apply=torch.autograd.Function.__dict__.get("apply"),
        )


def _dispatch_stack() -> list[Any]:
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return _get_current_dispatch_mode_stack()


class LineRecorder(TorchFunctionMode):
    """Notes the cell line of every op that makes a graph node (a sequence number -> a line)."""

    def __init__(self, filename: str, lines: LineMap, tape: list[Any] | None = None, track_lines: bool = True) -> None:
        super().__init__()
        self.filename = filename
        self.lines = lines
        self.paused = False
        self.tape = tape  # --check: every torch call, to replay (holds its tensors)
        self.track_lines = track_lines

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        __tracebackhide__ = True
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.paused:
            return result
        if self.tape is not None:
            from tensormagic.engine.autograd_check import TapeEntry

            self.tape.append(TapeEntry(func, args, kwargs, result, torch.is_grad_enabled()))
        if not self.track_lines:
            return result
        node = None
        if type(result) is torch.Tensor:
            node = result.grad_fn
        elif isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
            node = next((r.grad_fn for r in result if type(r) is torch.Tensor and r.grad_fn is not None), None)
        if node is not None:  # the innermost frame of the cell's own code made it
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename != self.filename:
                frame = frame.f_back
            if frame is not None:
                self.lines.add(node._sequence_nr(), frame.f_lineno)
        return result


class LineTracer:
    """Notes the autograd sequence number at which each line of the cell's own code starts.

    ``sys.settrace`` line events fire in the cell's frames only (other frames are not traced
    line by line), so this costs a few microseconds per cell line instead of a torch-function
    mode's overhead on every torch call.  Used unless another tracer (a debugger, coverage) is
    active or ``--check`` needs the mode's tape.
    """

    def __init__(self, filename: str, spans: LineSpans) -> None:
        self.filename = filename
        self.spans = spans
        self.previous: Any = None

    def _call(self, frame: Any, event: str, arg: Any) -> Any:
        return self._line if frame.f_code.co_filename == self.filename else None

    def _line(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self.spans.add(_next_sequence_nr(), frame.f_lineno)
        elif event == "return":  # back in a calling cell line: the rest of it is that line's
            caller = frame.f_back
            if caller is not None and caller.f_code.co_filename == self.filename:
                self.spans.add(_next_sequence_nr(), caller.f_lineno)
        return self._line

    def start(self) -> None:
        self.previous = sys.gettrace()
        self.paused = False
        sys.settrace(self._call)

    def pause(self, paused: bool) -> None:
        """Off while the magic's own analysis runs: a global trace function is called on every
        Python call, thousands of them in a graph walk (about 2 ms on a 50-conv cell).  The cell's
        frames keep their line tracer and get line events again once resumed."""
        if paused and not self.paused and sys.gettrace() == self._call:
            sys.settrace(None)
            self.paused = True
        elif not paused and self.paused:
            sys.settrace(self._call)
            self.paused = False

    def stop(self) -> None:
        if sys.gettrace() == self._call or self.paused:
            sys.settrace(self.previous)
        self.paused = False


def _next_sequence_nr() -> int:
    return torch._C._autograd._get_sequence_nr()


def _recording_apply(original: Any, mode: "LineRecorder") -> Callable[..., Any]:
    """``Function.apply`` that puts one tape entry per custom-Function call (--check replays the
    user's own forward and backward, not the ops inside)."""
    func = original.__func__

    def apply(cls: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if mode.paused or mode.tape is None:
            return func(cls, *args, **kwargs)
        mode.paused = True
        try:
            result = func(cls, *args, **kwargs)
        finally:
            mode.paused = False
        from tensormagic.engine.autograd_check import TapeEntry

        mode.tape.append(TapeEntry(_BoundApply(func, cls), args, kwargs, result, torch.is_grad_enabled()))
        return result

    return apply


class _BoundApply:
    """``MyFunction.apply`` as a plain callable, for the replay."""

    def __init__(self, func: Any, cls: Any) -> None:
        self.func = func
        self.cls = cls
        self.__name__ = f"{cls.__name__}.apply"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(self.cls, *args, **kwargs)


def _as_tensors(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class AutogradRecorder:
    """Run a cell inside ``with recorder:`` to record its gradient computations.

    ``namespace`` is looked up at each backward call to name tensors.  ``names_of`` returns
    ``(id(tensor) -> name, id(grad_fn) -> name, keep-alive list)`` for the namespace's tensors.
    """

    def __init__(
        self,
        filename: str,
        names_of: Callable[[], tuple[dict[int, str], dict[int, str], list[Any], dict[int, Any]]],
        source_lines: Sequence[str] = (),
        leaf_lines: Mapping[str, int] | None = None,
        lines: bool = True,
        flops: bool = False,
        locate_nan: bool = False,
        before_call: Callable[["AutogradRecorder", list[torch.Tensor]], None] | None = None,
        check: bool = False,
    ) -> None:
        self.filename = filename
        self.names_of = names_of
        self.source_lines = list(source_lines)
        self.leaf_lines = dict(leaf_lines or {})
        self.want_lines = lines
        self.want_flops = flops
        self.locate_nan = locate_nan
        self.before_call = before_call
        self.line_map: LineMap | LineSpans = LineMap()
        self._tracer: LineTracer | None = None
        self.tape: list[Any] | None = [] if check else None
        self.calls: list[CallRecord] = []
        self.backward_calls = 0
        self.grad_calls = 0
        self.backward_seconds = 0.0
        self.analysis_seconds = 0.0
        self.cell_seconds = 0.0
        self.errors: list[str] = []
        self.flop_counter: Any = None
        self._busy = False
        self._inside = False  # inside the user's own call: torch re-enters the patched names
        self._state: GlobalState | None = None
        self._modes: list[Any] = []
        self._pending: list[CallRecord] = []  # records whose hooks are still registered
        self._last_of_group: dict[tuple[Any, ...], CallRecord] = {}
        self._t0 = 0.0

    # -- the context manager ------------------------------------------------------------------

    def __enter__(self) -> "AutogradRecorder":
        self._state = GlobalState.capture()
        try:
            torch.autograd.backward = self._backward  # Tensor.backward calls torch.autograd.backward
            torch.autograd.grad = self._grad
            if self.want_flops:
                from torch.utils.flop_counter import FlopCounterMode

                self.flop_counter = FlopCounterMode(display=False)
                self.flop_counter.__enter__()
                self._modes.append(self.flop_counter)
            if self.want_lines and self.tape is None and sys.gettrace() is None and hasattr(torch._C._autograd, "_get_sequence_nr"):
                self.line_map = LineSpans()
                self._tracer = LineTracer(self.filename, self.line_map)
                self._tracer.start()
            elif self.want_lines or self.tape is not None:
                mode = LineRecorder(self.filename, self.line_map, self.tape, self.want_lines)
                mode.__enter__()
                self._modes.append(mode)
                if self.tape is not None:
                    torch.autograd.Function.apply = classmethod(_recording_apply(self._state.function_apply, mode))
        except BaseException:
            self._restore()
            raise
        _sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            _sync()
        except BaseException:  # noqa: BLE001 - a failed device must not keep the patches in place
            pass
        finally:
            self.cell_seconds = time.perf_counter() - self._t0
            self._restore()

    def cell_line(self) -> int | None:
        """The line of the cell running now (the innermost frame of the cell's code)."""
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename != self.filename:
            frame = frame.f_back
        return frame.f_lineno if frame is not None else None

    def pause_lines(self, paused: bool) -> None:
        for m in self._modes:
            if isinstance(m, LineRecorder):
                m.paused = paused
        if self._tracer is not None:
            self._tracer.pause(paused)

    def _restore(self) -> None:
        """Put every global back as it was on entry (also called when entering fails half-way)."""
        state = self._state
        if state is None:
            return
        if self._tracer is not None:
            self._tracer.stop()
            self._tracer = None
        for record in self._pending:
            for handle in getattr(record, "_handles", ()):
                handle.remove()
            record._handles = []  # type: ignore[attr-defined]
        self._pending.clear()
        torch.autograd.backward = state.backward_fn
        torch.autograd.grad = state.grad_fn
        if torch.Tensor.backward is not state.tensor_backward:
            torch.Tensor.backward = state.tensor_backward
        if state.function_apply is not None and torch.autograd.Function.__dict__.get("apply") is not state.function_apply:
            torch.autograd.Function.apply = state.function_apply
        # pop our modes (and anything the cell left above them) from the stacks
        for mode in reversed(self._modes):
            try:
                if isinstance(mode, LineRecorder):
                    while torch._C._len_torch_function_stack() > state.function_modes:
                        top = torch._C._pop_torch_function_stack()
                        if top is mode:
                            break
                else:
                    mode.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"restoring {type(mode).__name__}: {exc}")
        self._modes.clear()
        while torch._C._len_torch_function_stack() > state.function_modes:  # what the cell left
            torch._C._pop_torch_function_stack()
        from torch.utils._python_dispatch import _pop_mode

        while len(_dispatch_stack()) > state.dispatch_modes:
            _pop_mode()
        torch._C._set_grad_enabled(state.grad_enabled)
        torch.set_anomaly_enabled(state.anomaly, state.anomaly_nan)
        self._state = None

    # -- the wrappers -------------------------------------------------------------------------

    def _backward(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if self._busy or self._inside:
            return _ORIG_BACKWARD(*args, **kwargs)
        self.backward_calls += 1
        try:
            bound = _BACKWARD_SIG.bind(*args, **kwargs)
            tensors = _as_tensors(bound.arguments.get("tensors"))
            gts = bound.arguments.get("grad_tensors", bound.arguments.get("grad_variables"))
            inputs = _as_tensors(bound.arguments.get("inputs"))
        except TypeError:
            return self._timed(_ORIG_BACKWARD, args, kwargs)
        record = self._prepare("backward", tensors, _as_tensors(gts), inputs)
        try:
            return self._timed(_ORIG_BACKWARD, args, kwargs, record)
        finally:
            self._finish(record)

    def _grad(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if self._busy or self._inside:
            return _ORIG_GRAD(*args, **kwargs)
        self.grad_calls += 1
        try:
            bound = _GRAD_SIG.bind(*args, **kwargs)
            outputs = _as_tensors(bound.arguments.get("outputs"))
            inputs_arg = bound.arguments.get("inputs")
            inputs = _as_tensors(inputs_arg)
            gos = _as_tensors(bound.arguments.get("grad_outputs"))
            batched = bool(bound.arguments.get("is_grads_batched", False))
        except TypeError:
            return self._timed(_ORIG_GRAD, args, kwargs)
        record = None if batched else self._prepare("grad", outputs, gos, inputs)
        if record is not None:
            self._extra_grads(record, outputs, gos, inputs)
        try:
            result = self._timed(_ORIG_GRAD, args, kwargs, record)
        except BaseException:
            if record is not None:
                self._finish(record)
            raise
        if record is not None:
            try:
                values = list(result.values()) if isinstance(result, Mapping) else list(result)
                for t, g in zip(inputs, values):
                    if isinstance(t, torch.Tensor) and id(t) in record.targets:
                        record.grads[id(t)] = summarise(g)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"reading the result of torch.autograd.grad: {exc}")
            self._finish(record)
        return result

    def _extra_grads(self, record: CallRecord, outputs: list[Any], gos: list[Any], inputs: list[Any]) -> None:
        """Leaves the cell's torch.autograd.grad did not ask for: one extra pass, graph retained."""
        asked = {id(t) for t in inputs}
        extra = [(k, t.ref()) for k, t in record.targets.items() if t.kind == "leaf" and k not in asked]
        extra = [(k, t) for k, t in extra if t is not None]
        if not extra:
            return
        t0 = time.perf_counter()
        self._busy = True
        self.pause_lines(True)
        try:
            with torch.enable_grad():
                got = _ORIG_GRAD(outputs, [t for _, t in extra], gos or None, retain_graph=True, allow_unused=True)
            for (k, _), g in zip(extra, got):
                record.grads[k] = summarise(g)
            record.extra = len(extra)
        except Exception as exc:  # noqa: BLE001 - the user's own call reports its own errors
            self.errors.append(f"computing the gradients torch.autograd.grad was not asked for: {type(exc).__name__}: {exc}")
        finally:
            self._busy = False
            self.pause_lines(False)
            self.analysis_seconds += time.perf_counter() - t0

    def _timed(self, fn: Any, args: Any, kwargs: Any, record: CallRecord | None = None) -> Any:
        __tracebackhide__ = True
        flops0 = self.flop_counter.get_total_flops() if self.flop_counter is not None else None
        _sync()
        t0 = time.perf_counter()
        inside = self._inside
        self._inside = True
        try:
            return fn(*args, **kwargs)
        finally:
            self._inside = inside
            _sync()
            dt = time.perf_counter() - t0
            self.backward_seconds += dt
            if record is not None:
                record.seconds += dt
                if flops0 is not None:
                    record.flops = self.flop_counter.get_total_flops() - flops0

    # -- analysis around one call -------------------------------------------------------------

    def _prepare(self, kind: str, roots: list[Any], weights: list[Any], inputs: list[Any]) -> CallRecord | None:
        """Walk the graph and hook its leaves and named intermediates (never breaks the user's call)."""
        t0 = time.perf_counter()
        self._busy = True
        self.pause_lines(True)
        try:
            with torch._C.DisableTorchFunction():
                return self._prepare_inner(kind, roots, weights, inputs)
        finally:
            self._busy = False
            self.pause_lines(False)
            self.analysis_seconds += time.perf_counter() - t0

    def _prepare_inner(self, kind: str, roots: list[Any], weights: list[Any], inputs: list[Any]) -> CallRecord | None:
        try:
            tensors = [r for r in roots if isinstance(r, torch.Tensor)]
            if not tensors or len(tensors) != len(roots):
                return None  # GradientEdge roots: run the call untouched
            if self.before_call is not None:
                self.before_call(self, tensors)
            record = analyse(
                kind,
                tensors,
                weights,
                inputs,
                self.names_of,
                line_map=self.line_map if self.want_lines else None,
                leaf_lines=self.leaf_lines,
                source_lines=self.source_lines,
            )
            self._pending.append(record)  # its hooks are removed on exit even if interrupted now
            hook_record(record, locate_nan=self.locate_nan)
            record.call_line = self.cell_line()
            if self.tape is not None:
                record.root_tensors = tensors  # --check replays them (dropped with the tape)
            # a training loop calls backward on "loss" again and again: only the last call of a
            # group keeps its graph (the report shows it), older ones keep their gradients
            group = (kind, tuple(r.name for r in record.roots))
            old = self._last_of_group.get(group)
            if old is not None:
                old.walk_info = GraphInfo([], [], [], [], [], old.walk_info.saved_bytes, old.walk_info.truncated)
            self._last_of_group[group] = record
            self.calls.append(record)
            return record
        except Exception as exc:  # noqa: BLE001 - the report loses this call, the cell does not
            self.errors.append(f"analysing a {kind} call: {type(exc).__name__}: {exc}")
            return None

    def _finish(self, record: CallRecord | None) -> None:
        if record is None:
            return
        t0 = time.perf_counter()
        self.pause_lines(True)
        try:
            self._finish_inner(record)
        finally:
            self.pause_lines(False)
            self.analysis_seconds += time.perf_counter() - t0

    def _finish_inner(self, record: CallRecord) -> None:
        for handle in getattr(record, "_handles", ()):
            handle.remove()
        record._handles = []  # type: ignore[attr-defined]
        if record in self._pending:
            self._pending.remove(record)
        if record.kind == "backward":
            for key, target in record.targets.items():
                if target.kind == "leaf" and not target.had_grad and key not in record.grads:
                    t = target.ref()
                    if t is not None and t.grad is not None:
                        record.grads[key] = summarise(t.grad)
        record._handles = []  # type: ignore[attr-defined]
        if getattr(record, "_nan_first", None):
            record.non_finite_at = record._nan_first[0]  # type: ignore[attr-defined]
        record._nan_first = []  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# building and hooking one record


def _root_info(t: torch.Tensor, names: Mapping[int, str], weighted: bool) -> RootInfo:
    value = None
    if t.numel() == 1 and t.layout == torch.strided and t.device.type != "meta":
        with torch.no_grad():
            value = t.detach().reshape(()).item()
    return RootInfo(names.get(id(t)), list(t.shape), str(t.dtype), value, weighted)


def analyse(
    kind: str,
    roots: list[torch.Tensor],
    weights: list[Any],
    inputs: list[Any],
    names_of: Callable[[], tuple[dict[int, str], dict[int, str], list[Any], dict[int, Any]]],
    line_map: LineMap | LineSpans | None = None,
    leaf_lines: Mapping[str, int] | None = None,
    source_lines: Sequence[str] = (),
) -> CallRecord:
    """Walk the graph of ``roots`` and list the tensors whose gradient the report gives."""
    tensor_names, grad_fn_names, keep, named_tensors = names_of()
    walk: Walk = walk_graph(
        [r.grad_fn if r.grad_fn is not None else _leaf_node(r) for r in roots],
        tensor_names,
        grad_fn_names,
        lines=line_map,
        leaf_lines=leaf_lines,
        source_lines=source_lines,
    )
    targets: dict[int, Target] = {}
    for node_id, leaf in walk.leaves.items():
        targets[id(leaf)] = Target(
            key=id(leaf),
            name=walk.info.nodes[node_id].name,
            kind="leaf",
            ref=weakref.ref(leaf),
            node=node_id,
            retains_grad=True,
            had_grad=leaf.grad is not None,
            grad_before=summarise(leaf.grad) if leaf.grad is not None else None,
        )
    node_index = {id(obj): i for i, obj in enumerate(walk.node_objects)}
    root_ids = {id(r) for r in roots}
    for key, t in named_tensors.items():
        if key in targets or key in root_ids or t.grad_fn is None:
            continue
        nid = node_index.get(id(t.grad_fn))
        if nid is None:
            continue
        targets[key] = Target(key=key, name=tensor_names.get(key), kind="intermediate", ref=weakref.ref(t), node=nid, retains_grad=bool(t.retains_grad))
    weighted = [w is not None for w in weights] + [False] * (len(roots) - len(weights))
    record = CallRecord(
        kind=kind,
        roots=[_root_info(r, tensor_names, weighted[i]) for i, r in enumerate(roots)],
        walk_info=walk.info,
        targets=targets,
        saved_ids=walk.saved_ids,
    )
    if inputs:
        record.inputs_only = True
        record.asked = {id(t) for t in inputs if isinstance(t, torch.Tensor)}
    record._walk = walk  # type: ignore[attr-defined]  # dropped by hook_record
    del keep
    return record


def _leaf_node(t: torch.Tensor) -> Any:
    """The AccumulateGrad node of a leaf that requires grad (backward on a leaf itself)."""
    if not t.requires_grad:
        return None
    with torch.enable_grad():
        return t.view_as(t).grad_fn.next_functions[0][0]


def turns_non_finite(grad_inputs: Sequence[Any], grad_outputs: Sequence[Any]) -> bool:
    """For a node's post-hook: the gradients it sends on hold NaN/inf while the ones it received
    are finite, i.e. this op is where a non-finite gradient first appears."""
    bad_in = any(g is not None and not bool(torch.isfinite(g).all()) for g in grad_inputs)
    return bad_in and all(g is None or bool(torch.isfinite(g).all()) for g in grad_outputs)


def hook_record(record: CallRecord, locate_nan: bool = False) -> None:
    """Put removable hooks that summarise the gradient of every target as backward runs."""
    walk: Walk = record._walk  # type: ignore[attr-defined]
    handles: list[Any] = []
    record._handles = handles  # type: ignore[attr-defined]  # filled as hooks go on: removable at any point
    grads = record.grads
    for key, target in record.targets.items():
        if target.kind == "leaf":
            node = walk.node_objects[target.node] if target.node is not None else None
            if node is None or (record.kind == "backward" and not target.had_grad):
                # .grad is None now, so after backward it holds exactly this call's gradient:
                # read it then (cheaper than summarising inside the engine)
                continue

            def pre(grad_outputs: Any, key: int = key) -> None:
                grads[key] = summarise(grad_outputs[0])

            handles.append(node.register_prehook(pre))
        else:
            t = target.ref()
            if t is None:
                continue

            def hook(grad: torch.Tensor, key: int = key) -> None:
                grads[key] = summarise(grad)

            handles.append(t.register_hook(hook))
    if locate_nan:
        first: list[tuple[int, str, int | None]] = []
        nodes = record.walk_info.nodes
        for i, obj in enumerate(walk.node_objects):
            if nodes[i].kind == "leaf":
                continue

            def post(grad_inputs: Any, grad_outputs: Any, i: int = i) -> None:
                if not first and turns_non_finite(grad_inputs, grad_outputs):
                    first.append((i, nodes[i].op, nodes[i].line))

            handles.append(obj.register_hook(post))
        record._nan_first = first  # type: ignore[attr-defined]
    record._walk = None  # type: ignore[attr-defined]




def compile_cell(tree: Any, filename: str, compile_fn: Callable[..., Any] = compile) -> tuple[Any, Any]:
    """Compile a parsed cell as IPython does: the body, and its last expression apart (or None)."""
    import ast

    body = list(tree.body)
    last = body.pop() if body and isinstance(body[-1], ast.Expr) else None
    code = compile_fn(ast.Module(body=body, type_ignores=[]), filename, "exec") if body else None
    expr = None
    if last is not None:
        expression = ast.Expression(body=last.value)
        ast.copy_location(expression, last)
        expr = compile_fn(expression, filename, "eval")
    return code, expr


def run_code(compiled: tuple[Any, Any], globals_: dict[str, Any], locals_: dict[str, Any]) -> Any:
    """Execute a compiled cell and return the value of its last expression (or None).

    The frames of this function are hidden from IPython's tracebacks, so an error in the cell
    shows the user's code, as in a normal cell.
    """
    __tracebackhide__ = True
    code, expr = compiled
    if code is not None:
        exec(code, globals_, locals_)  # noqa: S102 - the user's own cell
    if expr is None:
        return None
    return eval(expr, globals_, locals_)  # noqa: S307


__all__ = [
    "AutogradRecorder",
    "CallRecord",
    "GlobalState",
    "GradSummary",
    "LineRecorder",
    "RootInfo",
    "Target",
    "analyse",
    "hook_record",
    "compile_cell",
    "run_code",
    "summarise",
    "turns_non_finite",
]
