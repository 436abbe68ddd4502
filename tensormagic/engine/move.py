"""Moving named objects to a device, all or nothing.

How a move stays atomic
-----------------------
1. **Resolve**: every name must exist and hold something movable, the device must be present
   (:func:`~tensormagic.engine.devices.parse_device`); otherwise :class:`MoveError`, nothing done.
2. **Compute**: every new object is built first, nothing is mutated.  Tensors and arrays give new
   tensors; dicts, lists and tuples give new containers; a *module*'s new parameters, gradients and
   buffers are built but not yet swapped in; an *optimizer*'s new state is built (optimizers come
   last, so they can follow parameters that get replaced).  If any object fails (a real reason
   such as ``meta`` -> ``cpu``, out of memory, a dtype the device lacks, or a test's ``hook``),
   every new object is dropped (and the CUDA cache emptied), nothing was mutated, and
   :class:`MoveError` says which object failed and why.
3. **Install**: modules and optimizers are changed in place like ``Module.to`` does (``param.data =``
   where the tensor types are compatible, a new ``Parameter`` otherwise, e.g. to or from ``meta``),
   recording each old value; if an install fails, the ones done are undone in reverse order.
4. **Rebind**: the new objects are returned as ``bindings`` (name -> object); the caller applies
   them in one ``namespace.update(bindings)``.

``--dtype`` converts a directly named tensor or array whatever its dtype; inside modules,
optimizers and containers it converts floating-point (and complex) tensors only, like
``Module.to(dtype)``, so integer labels and step counters keep their dtype.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tensormagic.engine import memory
from tensormagic.engine.devices import (
    DeviceError,
    auto_device,
    available_devices,
    device_label,
    device_names,
    devices_here,
    float64_note,
    is_accelerator,
    parse_device,
    parse_dtype,
    synchronize,
    unsupported_dtype,
)
from tensormagic.engine.dtypes import numpy_dtype_name, torch_twin_of_numpy
from tensormagic.engine.namespace import describe_non_array, suggest, user_names
from tensormagic.engine.placement import (
    CONTAINERS,
    MAX_DEPTH,
    container_items,
    device_of,
    dtype_of,
    has_leaves,
    is_array,
    is_movable,
    key_label,
    leaves,
    nbytes_of,
    placement,
)
from tensormagic.engine.tensorinfo import _type_name
from tensormagic.engine.todevice_report import FAILED, MOVED, NOT_ATTEMPTED, ROLLED_BACK, UNCHANGED, MoveRow, TodeviceReport

#: A test hook: called as ``hook(phase, name)`` before each object is computed (phase
#: ``"compute"``) and before each module or optimizer is installed (phase ``"install"``);
#: whatever it raises fails the move there.
Hook = Callable[[str, str], None]

#: Aliasing warnings listed at most (then "... and N more").
MAX_WARNINGS = 20


class MoveError(Exception):
    """Nothing was moved; ``str(error)`` is one line, ``error.report`` the per-object statuses."""

    def __init__(self, message: str, report: TodeviceReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class _Failure(Exception):
    """One object could not move (the reason is the message)."""


@dataclass
class MoveOutcome:
    """The report of a move that succeeded, and the names to rebind."""

    report: TodeviceReport
    bindings: dict[str, Any]


@dataclass
class _Install:
    """One in-place change (a module's tensor, an optimizer's state) and how to undo it."""

    owner: str
    do: Callable[[], None]
    undo: Callable[[], None]


@dataclass
class _Plan:
    """What the compute phase built for one named object."""

    name: str
    old: Any
    new: Any = None
    installs: list[_Install] = field(default_factory=list)
    changed: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


class _Mover:
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
            raise _Failure(reason)
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
            raise _Failure(twin.note or f"torch has no twin of {arr.dtype}")
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

    def module(self, m: torch.nn.Module, owner: str) -> list[_Install]:
        """The installs that move ``m``'s parameters, gradients and buffers (nothing changed yet)."""
        installs: list[_Install] = []
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

    def _set_entry(self, table: dict, key: str, old: Any, new: Any, owner: str, sub: torch.nn.Module) -> _Install:
        def do() -> None:
            table[key] = new
            _refresh(sub)

        def undo() -> None:
            table[key] = old
            _refresh(sub)

        return _Install(owner, do, undo)

    def _parameter(self, sub: torch.nn.Module, key: str, p: torch.Tensor, owner: str, overwrite: bool) -> list[_Install]:
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

            return [_Install(owner, do, undo)]
        new = torch.nn.Parameter(data, requires_grad=p.requires_grad)
        new.grad = grad
        self.memo[id(p)] = new
        self.keep.append(p)
        return [self._set_entry(sub._parameters, key, p, new, owner, sub)]

    def optimizer(self, opt: torch.optim.Optimizer, owner: str) -> list[_Install]:
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
        return [_Install(owner, do, undo)] if changed else []

    # -- containers ---------------------------------------------------------------------------

    def container(self, obj: Any, label: str, installs: list[_Install], owner: str, depth: int = 0, stack: frozenset[int] = frozenset()) -> Any:
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

    def value(self, value: Any, label: str, installs: list[_Install], owner: str, depth: int, stack: frozenset[int]) -> Any:
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


# ---------------------------------------------------------------------------------------------
# resolving names


def resolve_names(namespace: Mapping[str, Any], names: Sequence[str], hidden: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The names to move, deduplicated; unknown, non-identifier or unmovable names raise MoveError."""
    out: list[str] = []
    for name in names:
        if name in out:
            continue
        if not name.isidentifier():
            raise MoveError(f"nothing moved: {name!r} is not a variable name; %todevice rebinds names, so give the variable (e.g. model, not model.fc)")
        if name not in namespace:
            close = suggest(name, namespace, hidden)
            hint = f"; did you mean {', '.join(close)}?" if close else "; run %todevice with no argument to list what can move"
            raise MoveError(f"nothing moved: name {name!r} is not defined{hint}")
        obj = namespace[name]
        if not is_movable(obj):
            if isinstance(obj, CONTAINERS) and not isinstance(obj, str):
                why = f"is a {type(obj).__name__} with no tensors, arrays or modules inside"
            else:
                why = describe_non_array(obj)
            raise MoveError(f"nothing moved: {name} {why}")
        out.append(name)
    if not out:
        raise MoveError("nothing moved: name what to move, as in %todevice x model cuda")
    return out


def movable_names(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """(what ``--all`` moves, the NumPy arrays it leaves alone): tensors, modules, optimizers and
    containers of tensors; arrays and containers holding arrays would change type, so they stay."""
    chosen, arrays = [], []
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        if isinstance(obj, (np.ndarray, np.generic)):
            arrays.append(name)
        elif isinstance(obj, (torch.Tensor, torch.nn.Module, torch.optim.Optimizer)):
            chosen.append(name)
        elif isinstance(obj, CONTAINERS) and has_leaves(obj):
            if any(isinstance(leaf, (np.ndarray, np.generic)) for _, leaf in leaves(obj, name)):
                arrays.append(name)
            else:
                chosen.append(name)
    return chosen, arrays


# ---------------------------------------------------------------------------------------------
# aliasing: what shared memory (or was the same object) before, and no longer does


def _kind(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return "NumPy array"
    if isinstance(obj, torch.nn.Parameter):
        return "parameter"
    return "tensor" if isinstance(obj, torch.Tensor) else type(obj).__name__


def _related(a: Any, b: Any) -> tuple[str, str] | None:
    if a is b:
        return memory.SAME_OBJECT, ""
    return memory.relation(a, b, memory.memory_region(a), memory.memory_region(b))


@dataclass
class _Leaf:
    label: str
    obj: Any
    owner: str  # the top-level name it belongs to
    moved: bool


def _collect_leaves(namespace: Mapping[str, Any], moved: Sequence[str], hidden: frozenset[str] | set[str]) -> list[_Leaf]:
    found: list[_Leaf] = []
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        if name not in moved and isinstance(obj, torch.optim.Optimizer):
            continue
        for label, leaf in leaves(obj, name):
            found.append(_Leaf(label, leaf, name, name in moved))
            if len(found) > 50_000:
                return found
    return found


def _related_pairs(items: list[_Leaf]) -> list[tuple[int, int, str]]:
    """(i, j, relation) for leaves that are the same object or share memory, one moved at least."""
    pairs: dict[tuple[int, int], str] = {}
    by_id: dict[int, int] = {}
    for i, item in enumerate(items):
        j = by_id.setdefault(id(item.obj), i)
        if j != i and (item.moved or items[j].moved):
            pairs[(j, i)] = memory.SAME_OBJECT
    regions = [memory.memory_region(item.obj) for item in items]
    for i, j in memory.overlapping_pairs(regions):
        if (i, j) in pairs or (j, i) in pairs or not (items[i].moved or items[j].moved) or items[i].obj is items[j].obj:
            continue
        rel = memory.relation(items[i].obj, items[j].obj, regions[i], regions[j])
        if rel is not None:
            pairs[(i, j)] = rel[0]
    return [(i, j, rel) for (i, j), rel in pairs.items()]


def _aliasing_warnings(items: list[_Leaf], pairs: list[tuple[int, int, str]], new_of: Callable[[_Leaf], Any], sources: dict[int, str], command: Callable[[list[str]], str]) -> list[str]:
    out: list[str] = []
    for i, j, rel in pairs:
        a, b = items[i], items[j]
        if not a.moved:  # the moved one first
            a, b = b, a
        if a.owner == b.owner and a.label == b.label:
            continue
        na, nb = new_of(a), new_of(b)
        if _related(na, nb) is not None:
            continue
        if b.moved:
            if a.owner != b.owner or a.label != b.label:
                out.append(f"{a.label} and {b.label} shared memory before the move; now they are separate copies: changes to one will not show in the other")
        elif rel == memory.SAME_OBJECT:
            where = device_label(sources.get(id(b.obj), device_of(b.obj)))
            owners = [a.owner, b.owner] if b.owner != a.owner else [a.owner]
            out.append(f"{b.label} still refers to the old {where} {_kind(b.obj)} ({a.label} moved); to keep them together: {command(owners)}")
        else:
            out.append(f"{a.label} no longer shares memory with {_kind(b.obj)} {b.label}: changes to one will not show in the other")
    return out


def _optimizer_warnings(namespace: Mapping[str, Any], names: Sequence[str], memo: dict[int, Any], labels: dict[int, str], target: torch.device, hidden: frozenset[str] | set[str], command: Callable[[list[str]], str]) -> list[str]:
    out: list[str] = []
    for oname in user_names(namespace, hidden):
        opt = namespace[oname]
        if not isinstance(opt, torch.optim.Optimizer):
            continue
        params = [p for group in opt.param_groups for p in group["params"]]
        if oname in names:
            now = {str(p.device) for p in params}
            if now and now != {str(target)}:
                out.append(f"{oname}'s state is now on {target} but its parameters are on {', '.join(sorted(now))}: move their module too, e.g. {command([oname])} with the model's name")
            continue
        stale = [labels.get(id(p), "a parameter") for p in params if id(p) in memo and memo[id(p)] is not p]
        if stale:
            out.append(f"optimizer {oname} still updates the old {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}, not the moved one: move it too ({command([oname])}) or create it again")
            continue
        moved_params = [p for p in params if id(p) in memo]
        if moved_params:
            state_devices = {str(v.device) for p in moved_params for k, v in opt.state.get(p, {}).items() if isinstance(v, torch.Tensor) and not (k == "step" and v.dim() == 0 and v.device.type == "cpu")}
            if state_devices - {str(target)}:
                out.append(f"{oname}'s state is still on {', '.join(sorted(state_devices))} while its parameters are now on {target}: move it too ({command([oname])}) or {oname}.step() will fail")
    return out


# ---------------------------------------------------------------------------------------------
# the move


def _describe_failure(exc: BaseException, device: torch.device, nbytes: int) -> str:
    if isinstance(exc, _Failure):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        free = None
        if device.type == "cuda":
            try:
                free = int(torch.cuda.mem_get_info(device)[0])
            except Exception:  # noqa: BLE001
                pass
        return f"out of memory on {device} (it needs {_bytes(nbytes)}, {_bytes(free)} free)"
    text = _one_line(exc)
    if "meta tensor" in text:
        return f"{text} - a meta tensor has shape and dtype but no data; create it again on the device (torch.empty_like(t, device=...), or model.to_empty(device=...) for a module)"
    return f"{type(exc).__name__}: {text}"


def move(
    namespace: Mapping[str, Any],
    names: Sequence[str],
    device: str,
    *,
    dtype: str | None = None,
    non_blocking: bool = False,
    pin_memory: bool = False,
    hidden: frozenset[str] | set[str] = frozenset(),
    hook: Hook | None = None,
) -> MoveOutcome:
    """Move the objects ``names`` refers to in ``namespace`` to ``device``, all or nothing.

    Nothing in ``namespace`` is rebound here: apply ``outcome.bindings``.  Modules and optimizers
    are changed in place only once every object has been computed.  Raises :class:`MoveError`
    (one line; ``namespace`` and every object unchanged) when anything fails.
    """
    try:
        target = parse_device(device)
        torch_dtype = parse_dtype(dtype) if dtype else None
    except DeviceError as exc:
        raise MoveError(str(exc)) from None
    if pin_memory and not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())):
        raise MoveError(f"nothing moved: --pin-memory needs a CUDA or XPU device (pinned memory is page-locked host memory for fast copies to a GPU); {devices_here()}")
    chosen = resolve_names(namespace, names, hidden)
    mover = _Mover(target, torch_dtype, non_blocking, pin_memory)
    plans = [_Plan(name, namespace[name]) for name in chosen]
    old_leaves = _collect_leaves(namespace, chosen, hidden)
    pairs = _related_pairs(old_leaves)
    sources = {id(leaf.obj): device_of(leaf.obj) for leaf in old_leaves}
    before = {p.name: _source(p.old) for p in plans}
    sizes = {p.name: _size(p.old) for p in plans}
    order = [p for p in plans if not isinstance(p.old, torch.optim.Optimizer)] + [p for p in plans if isinstance(p.old, torch.optim.Optimizer)]
    failed: str | None = None
    reason = ""
    attempted: list[str] = []
    start = time.perf_counter()
    try:
        for plan in order:
            failed = plan.name
            attempted.append(plan.name)
            if hook is not None:
                hook("compute", plan.name)
            for dev in mover.touched | {torch.device(d) for d in before[plan.name].split(", ") if d and d != "-"}:
                synchronize(dev)
            t0 = time.perf_counter()
            _compute(mover, plan)
            if not non_blocking:
                synchronize(target)
            plan.seconds = time.perf_counter() - t0
        failed = None
        if non_blocking:
            failed = ", ".join(chosen)  # an asynchronous copy reports its failure here
            for dev in mover.touched:
                synchronize(dev)  # copies to the CPU must land before anyone reads them
            failed = None
    except Exception as exc:  # noqa: BLE001 - any failure aborts the whole move
        nbytes = sizes.get(failed or "", 0)
        reason = _describe_failure(exc, target, nbytes)
    if failed is not None or reason:
        for plan in plans:  # drop every partial copy
            plan.new, plan.installs = None, []
        mover.memo.clear()
        del mover
        if target.type == "cuda" or any("cuda" in b for b in before.values()):
            torch.cuda.empty_cache()
        name = failed or "?"
        obj = namespace[name] if name in namespace else None
        report = _report(namespace, hidden, chosen, target, device, torch_dtype, non_blocking, pin_memory, before, sizes, {}, failed=name, reason=reason, attempted=attempted)
        what = f"{name} ({_short_type(obj)})" if name in namespace else name
        raise MoveError(f"nothing moved: {what} cannot move to {target}: {reason}; {devices_here()}", report)

    done: list[_Install] = []
    installing = ""
    try:
        for plan in order:
            installing = plan.name
            for inst in plan.installs:
                if hook is not None:
                    hook("install", plan.name)
                done.append(inst)  # undone too if it fails halfway
                inst.do()
    except Exception as exc:  # noqa: BLE001 - undo what was installed, newest first
        for inst in reversed(done):
            inst.undo()
        raise MoveError(f"nothing moved: installing {installing} on {target} failed ({_describe_failure(exc, target, 0)}); every object was restored; {devices_here()}") from None
    total = time.perf_counter() - start
    bindings = {p.name: p.new for p in plans if p.new is not p.old}
    view = ChainMap(bindings, dict(namespace))

    def command(extra: list[str]) -> str:
        return f"%todevice {' '.join(dict.fromkeys(list(chosen) + extra))} {device}"

    # What each leaf is now: moved ones through the memo; the others walked again, since a
    # container or module left in place may hold a moved module whose parameters were replaced.
    now: dict[str, Any] = {}
    for owner in dict.fromkeys(leaf.owner for leaf in old_leaves if not leaf.moved):
        now.update(leaves(view[owner], owner))

    def new_of(leaf: _Leaf) -> Any:
        if leaf.moved:
            return mover.memo.get(id(leaf.obj), leaf.obj)
        return now.get(leaf.label, leaf.obj)

    warn = _aliasing_warnings(old_leaves, pairs, new_of, sources, command)
    labels = {id(leaf.obj): leaf.label for leaf in old_leaves if leaf.moved}
    warn += _optimizer_warnings(view, chosen, mover.memo, labels, target, hidden, command)
    warn = list(dict.fromkeys(warn))
    if len(warn) > MAX_WARNINGS:
        warn = warn[:MAX_WARNINGS] + [f"... and {len(warn) - MAX_WARNINGS} more"]
    notes = []
    if mover.pageable:
        notes.append("--non-blocking from ordinary CPU memory is not asynchronous; add --pin-memory to copy from page-locked memory")
    if non_blocking:
        notes.append("with --non-blocking each object's time is the time to queue its copy; the total is measured after synchronising")
    report = _report(view, hidden, chosen, target, device, torch_dtype, non_blocking, pin_memory, before, sizes, {p.name: p for p in plans}, warnings=warn, notes=notes, seconds=total)
    return MoveOutcome(report, bindings)


def _compute(mover: _Mover, plan: _Plan) -> None:
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


def _source(obj: Any) -> str:
    if isinstance(obj, torch.optim.Optimizer):
        devices = {str(v.device) for st in obj.state.values() for v in st.values() if isinstance(v, torch.Tensor)}
        devices |= {str(p.device) for g in obj.param_groups for p in g["params"]}
        return ", ".join(sorted(devices)) or "-"
    devices = dict.fromkeys(device_of(leaf) for _, leaf in leaves(obj, ""))
    return ", ".join(devices) or "-"


def _size(obj: Any) -> int:
    if isinstance(obj, torch.optim.Optimizer):
        return sum(nbytes_of(v) for st in obj.state.values() for v in st.values() if isinstance(v, torch.Tensor))
    seen: dict[int, Any] = {}
    for _, leaf in leaves(obj, ""):
        seen.setdefault(id(leaf), leaf)
    return sum(nbytes_of(v) for v in seen.values())


def _short_type(obj: Any) -> str:
    """``torch.Tensor``, ``numpy.ndarray``, ``dict`` (builtins without their module)."""
    return type(obj).__name__ if type(obj).__module__ == "builtins" else _type_name(obj)


def _dtype_change(old: Any, new: Any) -> str:
    if is_array(old):
        before = dtype_of(old)
        after = dtype_of(new) if is_array(new) else before
        return before if before == after else f"{before} -> {after}"
    if isinstance(old, torch.nn.Module):
        return ", ".join(dict.fromkeys(dtype_of(leaf) for _, leaf in leaves(old, ""))) or "-"
    return "-"


def _report(
    namespace: Mapping[str, Any],
    hidden: frozenset[str] | set[str],
    chosen: list[str],
    target: torch.device,
    requested: str,
    dtype: torch.dtype | None,
    non_blocking: bool,
    pin_memory: bool,
    before: dict[str, str],
    sizes: dict[str, int],
    plans: dict[str, _Plan],
    failed: str | None = None,
    reason: str = "",
    warnings: list[str] | None = None,
    notes: list[str] | None = None,
    seconds: float | None = None,
    attempted: Sequence[str] = (),
) -> TodeviceReport:
    rows = []
    for name in chosen:
        obj = namespace.get(name)
        plan = plans.get(name)
        if failed is not None:
            status = FAILED if name == failed else (ROLLED_BACK if name in attempted else NOT_ATTEMPTED)
            new_type, row_notes, secs = None, [reason] if name == failed else [], None
            dtype_text = _dtype_change(obj, obj)
        else:
            assert plan is not None
            obj = plan.old
            status = MOVED if plan.changed else UNCHANGED
            new_type = _short_type(plan.new) if type(plan.new) is not type(plan.old) else None
            row_notes, secs = plan.notes, plan.seconds
            dtype_text = _dtype_change(plan.old, plan.new)
        rows.append(MoveRow(name, _short_type(obj), before[name], str(target), sizes[name], secs, status, dtype_text, new_type, row_notes))
    placed, placement_notes = placement(namespace, hidden)
    return TodeviceReport(
        action="move",
        requested=requested,
        target=str(target),
        dtype=str(dtype) if dtype is not None else None,
        non_blocking=non_blocking,
        pin_memory=pin_memory,
        names=list(chosen),
        moves=rows,
        placement=placed,
        devices=available_devices(),
        auto=str(auto_device()),
        warnings=warnings or [],
        notes=(notes or []) + placement_notes,
        seconds=seconds,
        error=f"{failed}: {reason}" if failed else None,
    )


__all__ = ["MoveError", "MoveOutcome", "device_names", "movable_names", "move", "resolve_names"]
