"""One forward pass with module hooks: a row per module call, in call order, nested by depth.

During the pass torch's FlopCounterMode counts FLOPs (:mod:`.flops`), :class:`LiveTensors`
tracks the activations alive at once and :class:`SavedTensors` charges what each op saves for
backward to the module call running it (:mod:`.memory`).  The probe's own work in its hooks
(statistics, bookkeeping) is kept out of every figure: its FLOPs are subtracted, its tensors
are not tracked, its time is not counted.  Every hook and mode is removed before :meth:`run`
returns, and the outputs are dropped, so the forward's graph is freed.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from tensormagic.engine.layers import flops
from tensormagic.engine.layers.activations import (
    DEFAULT_LAYER_BUDGET,
    activation_stats,
    has_nonfinite,
    output_bytes,
    output_tensors,
    with_values,
)
from tensormagic.engine.layers.inputs import describe_shapes, shape_of
from tensormagic.engine.layers.memory import LiveTensors, SavedTensors, storage_keys
from tensormagic.engine.layers.report import ActivationStats, LayerRow
from tensormagic.engine.naming import describe_exception


def _modes_off() -> Any:
    """The probe's own reads run below the dispatch modes (FLOP counter, memory tracker): they
    are neither counted nor slowed by them.  (The counters also discount them, should this
    private torch helper ever be missing.)"""
    try:
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return _disable_current_modes()


class ForwardError(RuntimeError):
    """The model's forward raised; the message (one line) names the layer and its input shapes."""


@dataclass
class _Call:
    index: int
    module: torch.nn.Module
    inputs: list[torch.Tensor]
    start: float
    overhead_at_start: float
    flops_at_start: int
    child_flops: int = 0


@dataclass
class ProbeResult:
    """What one pass measured (rows still without the inclusive saved bytes)."""

    rows: list[LayerRow]
    flops: int
    peak_activation_bytes: int
    saved_bytes: int
    output_shape: list[list[int] | None]
    output_bytes: int
    time_s: float
    uncounted_ops: dict[str, int]
    input_nonfinite: bool
    grad_enabled: bool
    notes: list[str] = field(default_factory=list)


class Probe:
    """Runs ``model(*args, **kwargs)`` once under hooks (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, root_name: str, budget: int = DEFAULT_LAYER_BUDGET) -> None:
        self.model = model
        self.root_name = root_name
        self.budget = budget
        self.names = {id(m): n for n, m in model.named_modules()}
        holders: Counter[int] = Counter()
        for m in model.modules():
            for p in m._parameters.values():
                if p is not None:
                    holders[id(p)] += 1
        self.holders = holders
        self.rows: list[LayerRow] = []
        self.stack: list[_Call] = []
        self.calls: Counter[int] = Counter()
        self.overhead = 0.0  # seconds the hooks spent on their own work
        self.flop_offset = 0  # FLOPs of the hooks' own work (subtracted)
        self.first_nonfinite: int | None = None
        self._stats_cache: dict[int, tuple[Any, int, ActivationStats | None]] = {}
        self.sync = any(p.device.type == "cuda" for p in model.parameters())

    # -- bookkeeping ----------------------------------------------------------------------

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _flops(self) -> int:
        return flops.total_flops(self.counter) - self.flop_offset

    def current(self) -> int | None:
        """The row index of the innermost call running now."""
        return self.stack[-1].index if self.stack else None

    def _own_parameters(self, module: torch.nn.Module) -> tuple[int, int, int]:
        total = trainable = tied = 0
        for p in module._parameters.values():
            if p is None or isinstance(p, torch.nn.parameter.UninitializedParameter):
                continue
            n = p.numel()
            total += n
            trainable += n if p.requires_grad else 0
            tied += n if self.holders[id(p)] > 1 else 0
        return total, trainable, tied

    # -- hooks ----------------------------------------------------------------------------

    def _pre(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        begin = time.perf_counter()
        self.live.paused = True
        index = len(self.rows)
        self.calls[id(module)] += 1
        name = self.names.get(id(module), type(module).__name__)
        params, trainable, tied = self._own_parameters(module)
        self.rows.append(
            LayerRow(
                index=index, name=name or self.root_name, type=type(module).__name__, depth=len(self.stack),
                parent=self.current(), call=self.calls[id(module)], input_shape=shape_of((args, kwargs)),
                output_shape=[], parameters=params, trainable=trainable, tied_parameters=tied, macs=0, flops=0,
                macs_inclusive=0, flops_inclusive=0, activation_bytes=0, saved_bytes=0, saved_bytes_inclusive=0,
                time_s=0.0, stats=None,
            )
        )
        inputs = output_tensors((args, kwargs))
        self.live.paused = False
        self.overhead += time.perf_counter() - begin
        self.stack.append(_Call(index, module, inputs, self._now(), self.overhead, self._flops()))

    def _post(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        end = self._now()
        begin = time.perf_counter()
        self.live.paused = True
        flops_before = flops.total_flops(self.counter)
        call = self.stack.pop()
        row = self.rows[call.index]
        inclusive = self._flops() - call.flops_at_start
        row.flops_inclusive = inclusive
        row.flops = max(0, inclusive - call.child_flops)
        row.macs_inclusive, row.macs = inclusive // 2, row.flops // 2
        if self.stack:
            self.stack[-1].child_flops += inclusive
        row.time_s = max(0.0, end - call.start - (self.overhead - call.overhead_at_start))
        outs = output_tensors(output)
        row.output_shape = shape_of(output)
        row.activation_bytes = output_bytes(outs)
        if outs:
            row.dtype, row.device = str(outs[0].dtype), str(outs[0].device)
        readable = with_values(outs)
        with torch.no_grad(), _modes_off():
            row.stats = self._cached_stats(readable)
            s = row.stats
            if self.first_nonfinite is None and s is not None and (s.nan or s.inf or (not s.exact and has_nonfinite(readable))):
                self._locate_nonfinite(call)
        self.flop_offset += flops.total_flops(self.counter) - flops_before
        self.live.paused = False
        self.overhead += time.perf_counter() - begin

    def _cached_stats(self, tensors: list[torch.Tensor]) -> ActivationStats | None:
        """A container returns its last child's tensor: its statistics are not read twice."""
        if len(tensors) != 1:
            return activation_stats(tensors, self.budget)
        t = tensors[0]
        hit = self._stats_cache.get(id(t))
        if hit is not None and hit[0]() is t and hit[1] == t._version:
            return hit[2]
        stats = activation_stats(tensors, self.budget)
        self._stats_cache[id(t)] = (weakref.ref(t), t._version, stats)
        return stats

    def _locate_nonfinite(self, call: _Call) -> None:
        """The output holds NaN/inf: this call made it if its inputs were finite, else the
        innermost enclosing call with finite inputs did (in its own ops)."""
        for c in [call, *self.stack[::-1]]:
            if not has_nonfinite(with_values(c.inputs)):
                self.first_nonfinite = c.index
                self.rows[c.index].nonfinite_origin = True
                return
        self.first_nonfinite = -1  # the model's input itself holds NaN/inf

    # -- the pass -------------------------------------------------------------------------

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ProbeResult:
        """One forward; raises :class:`ForwardError` (one line) if the model raises."""
        model = self.model
        skip = storage_keys(list(model.parameters()) + list(model.buffers()) + output_tensors((args, kwargs)))
        self.counter = flops.flop_counter_mode()
        self.live = LiveTensors(skip, lambda packet: flops.has_formula(self.counter, packet))
        saved = SavedTensors(skip, self.current)
        grad = any(p.requires_grad for p in model.parameters()) or any(t.requires_grad for t in output_tensors((args, kwargs)))
        input_nonfinite = has_nonfinite(with_values(output_tensors((args, kwargs))))
        handles = []
        try:
            for m in model.modules():
                try:
                    handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
                    handles.append(m.register_forward_hook(self._post, with_kwargs=True))
                except Exception as exc:  # noqa: BLE001 - e.g. a TorchScript module takes no hooks
                    label = self.names.get(id(m)) or self.root_name
                    raise ForwardError(f"{label} ({type(m).__name__}) takes no module hooks ({describe_exception(exc)}), so it cannot be read layer by layer") from None
            start = self._now()
            with torch.enable_grad(), saved.hooks(), self.counter, self.live:
                output = model(*args, **kwargs)
            wall = self._now() - start - self.overhead
            result = ProbeResult(
                rows=self.rows, flops=self._flops(), peak_activation_bytes=self.live.peak, saved_bytes=saved.total,
                output_shape=shape_of(output), output_bytes=output_bytes(output_tensors(output)), time_s=max(0.0, wall),
                uncounted_ops=dict(self.live.uncounted), input_nonfinite=input_nonfinite, grad_enabled=grad,
            )
            for index, size in saved.by_call.items():
                self.rows[index].saved_bytes = size
            if saved.outside:
                result.notes.append(f"{saved.outside:,} B saved for backward outside any module call")
            del output
        except ForwardError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's forward: one line naming the layer
            raise ForwardError(self._failure(exc)) from None
        finally:
            for h in handles:
                h.remove()
            self.stack.clear()
            self._stats_cache.clear()
        return result

    def _failure(self, exc: BaseException) -> str:
        where = self.stack[-1] if self.stack else None
        if where is None:
            return f"the forward raised {describe_exception(exc)}"
        row = self.rows[where.index]
        label = f"{self.root_name}.{row.name}" if row.index and self.root_name else row.name
        return f"the forward raised in {label} ({row.type}), given {describe_shapes(row.input_shape)}: {describe_exception(exc)}"


__all__ = ["ForwardError", "Probe", "ProbeResult"]
