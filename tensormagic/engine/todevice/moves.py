"""Moving named objects to a device, all or nothing.

How a move stays atomic
-----------------------
1. **Resolve**: every name must exist and hold something movable, the device must be present
   (:func:`~tensormagic.engine.todevice.devices.parse_device`); otherwise :class:`MoveError`, nothing done.
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

import time
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tensormagic.engine.namespace import describe_non_array, suggest, user_names
from tensormagic.engine.naming import first_line, format_bytes, short_type_name
from tensormagic.engine.todevice.consequences import Leaf, aliasing_warnings, collect_leaves, optimizer_warnings, related_pairs
from tensormagic.engine.todevice.devices import DeviceError, device_names, devices_here, parse_device, parse_dtype, synchronize
from tensormagic.engine.todevice.mover import Install, Mover, ObjectFailure, Plan, compute_plan
from tensormagic.engine.todevice.placement import CONTAINERS, device_of, has_leaves, is_movable, leaves, nbytes_of
from tensormagic.engine.todevice.report import TodeviceReport, move_report

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


@dataclass
class MoveOutcome:
    """The report of a move that succeeded, and the names to rebind."""

    report: TodeviceReport
    bindings: dict[str, Any]


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


def _describe_failure(exc: BaseException, device: torch.device, nbytes: int) -> str:
    if isinstance(exc, ObjectFailure):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        free = None
        if device.type == "cuda":
            try:
                free = int(torch.cuda.mem_get_info(device)[0])
            except Exception:  # noqa: BLE001
                pass
        return f"out of memory on {device} (it needs {format_bytes(nbytes)}, {format_bytes(free)} free)"
    text = first_line(exc)
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
    mover = Mover(target, torch_dtype, non_blocking, pin_memory)
    plans = [Plan(name, namespace[name]) for name in chosen]
    old_leaves = collect_leaves(namespace, chosen, hidden)
    pairs = related_pairs(old_leaves)
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
            compute_plan(mover, plan)
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
        report = move_report(namespace, hidden, chosen, target, device, torch_dtype, non_blocking, pin_memory, before, sizes, {}, failed=name, reason=reason, attempted=attempted)
        what = f"{name} ({short_type_name(obj)})" if name in namespace else name
        raise MoveError(f"nothing moved: {what} cannot move to {target}: {reason}; {devices_here()}", report)

    done: list[Install] = []
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

    def new_of(leaf: Leaf) -> Any:
        if leaf.moved:
            return mover.memo.get(id(leaf.obj), leaf.obj)
        return now.get(leaf.label, leaf.obj)

    warn = aliasing_warnings(old_leaves, pairs, new_of, sources, command)
    labels = {id(leaf.obj): leaf.label for leaf in old_leaves if leaf.moved}
    warn += optimizer_warnings(view, chosen, mover.memo, labels, target, hidden, command)
    warn = list(dict.fromkeys(warn))
    if len(warn) > MAX_WARNINGS:
        warn = warn[:MAX_WARNINGS] + [f"... and {len(warn) - MAX_WARNINGS} more"]
    notes = []
    if mover.pageable:
        notes.append("--non-blocking from ordinary CPU memory is not asynchronous; add --pin-memory to copy from page-locked memory")
    if non_blocking:
        notes.append("with --non-blocking each object's time is the time to queue its copy; the total is measured after synchronising")
    report = move_report(view, hidden, chosen, target, device, torch_dtype, non_blocking, pin_memory, before, sizes, {p.name: p for p in plans}, warnings=warn, notes=notes, seconds=total)
    return MoveOutcome(report, bindings)


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


__all__ = ["MoveError", "MoveOutcome", "device_names", "movable_names", "move", "resolve_names"]
