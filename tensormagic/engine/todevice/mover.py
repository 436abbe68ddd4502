"""The compute phase of a move: every moved object is built first, nothing is mutated.

Tensors and arrays give new tensors; dicts, lists and tuples give new containers
(:mod:`.containers`); a module's
new parameters, gradients and buffers, and an optimizer's new state, are built as
:class:`Install` steps (a ``do`` and an ``undo``) that :mod:`.moves` applies only once every
object has been computed.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tensormagic.engine.naming import (
    is_array,
    is_masked_array,
    is_module,
    is_optimizer,
    is_tensor,
    is_uninitialized,
)
from tensormagic.engine.tensorinfo.array import file_backing
from tensormagic.engine.tensorinfo.dtypes import torch_twin_of_numpy
from tensormagic.engine.tensorinfo.statistics.masked import masked_count
from tensormagic.engine.todevice.containers import ContainerMoves, ObjectFailure
from tensormagic.engine.todevice.devices import float64_note, is_accelerator, unsupported_dtype


@dataclass
class Install:
    """One in-place change (a module's tensor, an optimizer's state) and how to undo it."""

    owner: str
    do: Callable[[], None]
    undo: Callable[[], None]


@dataclass
class Plan:
    """What the compute phase built for one named object."""

    name: str
    old: Any
    new: Any = None
    installs: list[Install] = field(default_factory=list)
    changed: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None


class Mover(ContainerMoves):
    """Builds the moved version of objects without changing any of them."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None, non_blocking: bool, pin_memory: bool) -> None:
        self.device = device
        self.dtype = dtype
        self.non_blocking = non_blocking
        self.pin_memory = pin_memory
        #: id(old tensor or array) -> its new object, so shared and tied objects stay shared.
        self.memo: dict[int, Any] = {}
        #: keeps the old objects of ``memo`` alive so their ids stay unique during the move.
        self.keep: list[Any] = []
        self.touched: set[torch.device] = {device}
        self.pageable = False  # a non-blocking copy left from ordinary (pageable) CPU memory
        #: id(old container) -> its new container (or _BUILDING while a tuple is being built),
        #: so that shared sub-containers stay shared and cycles stay cycles.
        self.containers: dict[int, Any] = {}
        #: warnings the compute phase found (tensors used as dict keys, left where they are)
        self.warnings: list[str] = []

    # -- tensors -----------------------------------------------------------------------------

    def _dtype_for(self, t: torch.Tensor, direct: bool) -> torch.dtype:
        if self.dtype is None:
            return t.dtype
        if direct:
            return self.dtype
        floating = self.dtype.is_floating_point or self.dtype.is_complex
        return self.dtype if floating and (t.is_floating_point() or t.is_complex()) else t.dtype

    def _copy(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``t`` on the device in ``dtype`` (autograd history kept; callers detach leaves)."""
        reason = unsupported_dtype(self.device, dtype)
        if reason:
            raise ObjectFailure(reason)
        self.touched.add(t.device)
        src = t
        if self.pin_memory and t.device.type == "cpu" and not t.is_pinned():
            src = t.pin_memory()
        elif self.non_blocking and t.device.type == "cpu" and is_accelerator(self.device) and not t.is_pinned():
            self.pageable = True
        if self.pin_memory and self.device.type == "cpu":
            return src.to(dtype=dtype) if dtype != src.dtype else src
        return src.to(device=self.device, dtype=dtype, non_blocking=self.non_blocking)

    def _needs_copy(self, t: torch.Tensor, dtype: torch.dtype) -> bool:
        pin = self.pin_memory and self.device.type == "cpu" and t.device.type == "cpu" and not t.is_pinned()
        return t.device != self.device or t.dtype != dtype or pin

    def _remember(self, old: Any, new: torch.Tensor) -> torch.Tensor:
        self.memo[id(old)] = new
        self.keep.append(old)
        return new

    def tensor(self, t: torch.Tensor, direct: bool) -> torch.Tensor:
        """A new tensor on the device (the same tensor when it already is there)."""
        if id(t) in self.memo:
            return self.memo[id(t)]  # type: ignore[no-any-return]  # memo maps old ids to new tensors
        dtype = self._dtype_for(t, direct)
        if is_uninitialized(t):
            return self._uninitialized(t, dtype)
        if not self._needs_copy(t, dtype):
            return t
        if t.requires_grad and not t.is_leaf:
            new = self._copy(t, dtype)  # a non-leaf keeps its history: gradients flow back
        else:
            with torch.no_grad():
                data = self._copy(t.detach(), dtype)
            if isinstance(t, torch.nn.Parameter):
                new = torch.nn.Parameter(data, requires_grad=t.requires_grad)
            else:
                new = data.requires_grad_(t.requires_grad) if t.requires_grad else data
            if t.grad is not None:
                with torch.no_grad():
                    new.grad = self._copy(t.grad.detach(), dtype)
        return self._remember(t, new)

    def _uninitialized(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialized parameter or buffer (a lazy module's) stays uninitialized, now on the
        device: it has no data to copy, and its first forward creates it there."""
        if t.device == self.device and t.dtype == dtype:
            return t
        reason = unsupported_dtype(self.device, dtype)
        if reason:
            raise ObjectFailure(reason)
        lazy: torch.Tensor = type(t)(requires_grad=t.requires_grad, device=self.device, dtype=dtype)  # type: ignore[call-overload]  # UninitializedParameter/Buffer(...)
        return self._remember(t, lazy)

    def array(self, a: np.ndarray | np.generic, direct: bool, notes: list[str] | None = None) -> torch.Tensor:
        """A torch tensor of a NumPy array on the device (sharing its memory when it stays on cpu)."""
        if id(a) in self.memo:
            return self.memo[id(a)]  # type: ignore[no-any-return]  # memo maps old ids to new tensors
        if is_masked_array(a):
            masked = masked_count(a)
            raise ObjectFailure(
                f"a masked array ({masked:,} of {a.size:,} values masked): torch has no masked arrays, so the masked values "
                "(a filler) would become data; move a.filled(value) or a.compressed(), or a.data and a.mask as two tensors"
            )
        arr = np.asarray(a)
        twin = torch_twin_of_numpy(arr.dtype)
        if twin.twin is None:
            raise ObjectFailure(twin.note or f"torch has no twin of {arr.dtype}")
        copied = None
        if isinstance(a, np.generic):
            arr, copied = np.array(arr), "a NumPy scalar: copied into a 0-d tensor"
        elif not arr.dtype.isnative:
            arr, copied = arr.astype(arr.dtype.newbyteorder("=")), "non-native byte order: copied"
        elif not arr.flags.writeable:
            arr, copied = np.array(arr), "a read-only array: copied (a tensor sharing it could write to it)"
        elif any(s < 0 for s in arr.strides):
            arr, copied = np.ascontiguousarray(arr), "negative strides cannot be shared: copied"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = torch.from_numpy(arr)
        dtype = self._dtype_for(base, direct)
        new = self._copy(base, dtype) if self._needs_copy(base, dtype) else base
        if notes is not None:
            if copied:
                notes.append(copied)
            if new is base and not copied:
                notes.append("now a torch.Tensor sharing the array's memory (torch.from_numpy): changes to one show in the other")
            note = float64_note(self.device, new.dtype)
            if note:
                notes.append(note)
            if isinstance(a, np.matrix):
                notes.append("was a numpy.matrix: the tensor is a plain 2-D tensor, where * multiplies element-wise (use @ for the matrix product)")
            backing = file_backing(a) if isinstance(a, np.ndarray) else None
            if backing is not None:
                where = repr(backing["file"]) if backing["file"] else "a memory-mapped file"
                notes.append(f"file-backed (np.memmap of {where}): " + ("the tensor shares the mapped pages, so writes to it go to the file" if new is base else "its values were read from the file into the copy"))
        return self._remember(a, new)

    # -- modules and optimizers ---------------------------------------------------------------

    def module(self, m: torch.nn.Module, owner: str) -> list[Install]:
        """The installs that move ``m``'s parameters, gradients and buffers (nothing changed yet)."""
        installs: list[Install] = []
        overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        for sub in m.modules():
            for key, p in list(sub._parameters.items()):
                if p is None:
                    continue
                installs += self._parameter(sub, key, p, owner, overwrite)
            for key, b in list(sub._buffers.items()):
                if b is None:
                    continue
                new = self.tensor(b, direct=False)
                if new is not b:
                    installs.append(self._set_entry(sub._buffers, key, b, new, owner, sub))
        return installs

    def _set_entry(self, table: dict[str, Any], key: str, old: Any, new: Any, owner: str, sub: torch.nn.Module) -> Install:
        def do() -> None:
            table[key] = new
            _refresh(sub)

        def undo() -> None:
            table[key] = old
            _refresh(sub)

        return Install(owner, do, undo)

    def _parameter(self, sub: torch.nn.Module, key: str, p: torch.Tensor, owner: str, overwrite: bool) -> list[Install]:
        if id(p) in self.memo:  # tied: the same parameter registered again
            new = self.memo[id(p)]
            return [self._set_entry(sub._parameters, key, p, new, owner, sub)] if new is not p else []
        dtype = self._dtype_for(p, direct=False)
        if is_uninitialized(p):
            new = self._uninitialized(p, dtype)
            return [self._set_entry(sub._parameters, key, p, new, owner, sub)] if new is not p else []
        if not self._needs_copy(p, dtype) and (p.grad is None or not self._needs_copy(p.grad, dtype)):
            return []
        with torch.no_grad():
            data = self._copy(p.detach(), dtype)
            grad = self._copy(p.grad.detach(), dtype) if p.grad is not None else None
        if torch._has_compatible_shallow_copy_type(p, data) and not overwrite:
            # Like Module.to: the same Parameter object gets new data, so optimizers keep it.
            self.memo[id(p)] = p
            old_data, old_grad = p.data, p.grad

            def do() -> None:
                p.grad = None
                p.data = data
                p.grad = grad

            def undo() -> None:
                p.grad = None
                p.data = old_data
                p.grad = old_grad

            return [Install(owner, do, undo)]
        new = torch.nn.Parameter(data, requires_grad=p.requires_grad)
        new.grad = grad
        self._remember(p, new)
        return [self._set_entry(sub._parameters, key, p, new, owner, sub)]

    def optimizer(self, opt: torch.optim.Optimizer, owner: str) -> list[Install]:
        """Installs that move an optimizer's state and follow its parameters if they were replaced."""
        new_state: dict[Any, dict[str, Any]] = {}
        keeps_step = {}
        for group in opt.param_groups:
            special = bool(group.get("capturable") or group.get("fused"))
            for p in group["params"]:
                keeps_step[id(p)] = not special
        for p, st in opt.state.items():
            moved = {}
            for k, v in st.items():
                if is_tensor(v) and not (k == "step" and v.dim() == 0 and keeps_step.get(id(p), True)):
                    v = self.tensor(v, direct=False)
                moved[k] = v
            new_state[p] = moved
        new_groups = [[self.memo.get(id(p), p) for p in group["params"]] for group in opt.param_groups]
        old_groups = [list(group["params"]) for group in opt.param_groups]
        old_state = opt.state

        def do() -> None:
            state = copy.copy(old_state)  # a defaultdict like torch's own
            state.clear()
            for p, st in new_state.items():
                state[self.memo.get(id(p), p)] = st
            opt.state = state
            for group, params in zip(opt.param_groups, new_groups):
                group["params"] = params

        def undo() -> None:
            opt.state = old_state
            for group, params in zip(opt.param_groups, old_groups):
                group["params"] = params

        changed = any(a is not b for old, new in zip(old_groups, new_groups) for a, b in zip(old, new))
        changed = changed or any(v is not opt.state[p].get(k) for p, st in new_state.items() for k, v in st.items())
        return [Install(owner, do, undo)] if changed else []


def _refresh(sub: torch.nn.Module) -> None:
    """Modules that cache their parameters (RNNs) rebuild the cache after a swap."""
    if isinstance(sub, torch.nn.RNNBase):
        sub._init_flat_weights()


def compute_plan(mover: Mover, plan: Plan) -> None:
    obj = plan.old
    if is_tensor(obj):
        plan.new = mover.tensor(obj, direct=True)
        if obj.requires_grad and not obj.is_leaf and plan.new is not obj:
            plan.notes.append("not a leaf: the copy keeps its autograd history, gradients flow back to the original")
        plan.changed = plan.new is not obj
    elif is_array(obj):
        plan.new = mover.array(obj, direct=True, notes=plan.notes)
        plan.changed = True
    elif is_module(obj):
        mover.memo.setdefault(id(obj), obj)
        plan.installs = mover.module(obj, plan.name)
        plan.new = obj
        plan.changed = bool(plan.installs)
    elif is_optimizer(obj):
        plan.installs = mover.optimizer(obj, plan.name)
        plan.new = obj
        plan.changed = bool(plan.installs)
    else:
        plan.new = mover.container(obj, plan.name, plan.installs, plan.name)
        plan.changed = plan.new is not obj or bool(plan.installs)
