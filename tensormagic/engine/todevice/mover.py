"""The compute phase of a move: every moved object is built first, nothing is mutated.

Tensors and arrays give new tensors; dicts, lists and tuples give new containers; a module's
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

from tensormagic.engine.tensorinfo.dtypes import torch_twin_of_numpy
from tensormagic.engine.todevice.devices import float64_note, is_accelerator, unsupported_dtype
from tensormagic.engine.todevice.placement import CONTAINERS, MAX_DEPTH, container_items, key_label

class ObjectFailure(Exception):
    """One object could not move (the reason is the message)."""


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


class Mover:
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

    def tensor(self, t: torch.Tensor, direct: bool) -> torch.Tensor:
        """A new tensor on the device (the same tensor when it already is there)."""
        if id(t) in self.memo:
            return self.memo[id(t)]
        dtype = self._dtype_for(t, direct)
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
        self.memo[id(t)] = new
        self.keep.append(t)
        return new

    def array(self, a: np.ndarray | np.generic, direct: bool, notes: list[str] | None = None) -> torch.Tensor:
        """A torch tensor of a NumPy array on the device (sharing its memory when it stays on cpu)."""
        if id(a) in self.memo:
            return self.memo[id(a)]
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
        self.memo[id(a)] = new
        self.keep.append(a)
        return new

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

    def _set_entry(self, table: dict, key: str, old: Any, new: Any, owner: str, sub: torch.nn.Module) -> Install:
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
        self.memo[id(p)] = new
        self.keep.append(p)
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
                if isinstance(v, torch.Tensor) and not (k == "step" and v.dim() == 0 and keeps_step.get(id(p), True)):
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

    # -- containers ---------------------------------------------------------------------------

    def container(self, obj: Any, label: str, installs: list[Install], owner: str, depth: int = 0, stack: frozenset[int] = frozenset()) -> Any:
        """A new dict, list or tuple with every tensor, array and module inside moved."""
        if id(obj) in stack or depth > MAX_DEPTH:
            return obj
        items = []
        changed = False
        for key, value in container_items(obj):
            new = self.value(value, key_label(label, key), installs, owner, depth + 1, stack | {id(obj)})
            changed = changed or new is not value
            items.append((key, new))
        if not changed:
            return obj
        values = [v for _, v in items]
        if isinstance(obj, dict):
            new_obj = copy.copy(obj)
            new_obj.clear()
            new_obj.update(items)
            return new_obj
        if isinstance(obj, list):
            new_obj = copy.copy(obj)
            new_obj[:] = values
            return new_obj
        if hasattr(obj, "_fields"):  # a namedtuple
            return type(obj)(*values)
        try:
            return type(obj)(values)
        except Exception:  # noqa: BLE001 - a tuple subclass with another constructor
            return tuple(values)

    def value(self, value: Any, label: str, installs: list[Install], owner: str, depth: int, stack: frozenset[int]) -> Any:
        """One element of a container, moved (modules in place; other objects kept)."""
        if isinstance(value, torch.Tensor):
            return self.tensor(value, direct=False)
        if isinstance(value, (np.ndarray, np.generic)):
            return self.array(value, direct=False)
        if isinstance(value, torch.nn.Module):
            if id(value) not in self.memo:
                self.memo[id(value)] = value
                installs += self.module(value, owner)
            return value
        if isinstance(value, CONTAINERS) and not isinstance(value, str):
            return self.container(value, label, installs, owner, depth, stack)
        return value


def _refresh(sub: torch.nn.Module) -> None:
    """Modules that cache their parameters (RNNs) rebuild the cache after a swap."""
    if isinstance(sub, torch.nn.RNNBase):
        sub._init_flat_weights()


def compute_plan(mover: Mover, plan: Plan) -> None:
    obj = plan.old
    if isinstance(obj, torch.Tensor):
        plan.new = mover.tensor(obj, direct=True)
        if obj.requires_grad and not obj.is_leaf and plan.new is not obj:
            plan.notes.append("not a leaf: the copy keeps its autograd history, gradients flow back to the original")
        plan.changed = plan.new is not obj
    elif isinstance(obj, (np.ndarray, np.generic)):
        plan.new = mover.array(obj, direct=True, notes=plan.notes)
        plan.changed = True
    elif isinstance(obj, torch.nn.Module):
        mover.memo.setdefault(id(obj), obj)
        plan.installs = mover.module(obj, plan.name)
        plan.new = obj
        plan.changed = bool(plan.installs)
    elif isinstance(obj, torch.optim.Optimizer):
        plan.installs = mover.optimizer(obj, plan.name)
        plan.new = obj
        plan.changed = bool(plan.installs)
    else:
        plan.new = mover.container(obj, plan.name, plan.installs, plan.name)
        plan.changed = plan.new is not obj or bool(plan.installs)
