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

import torch

from tensormagic.engine.namespace import describe_non_array, suggest, unreadable, user_names
from tensormagic.engine.naming import (
    describe_exception,
    first_line,
    format_bytes,
    is_array,
    is_module,
    is_optimizer,
    is_tensor,
    short_type_name,
)
from tensormagic.engine.todevice.consequences import (
    MAX_SCAN,
    Leaf,
    Scan,
    aliasing_warnings,
    collect_leaves,
    optimizer_warnings,
    references,
    related_pairs,
)
from tensormagic.engine.todevice.containers import ObjectFailure
from tensormagic.engine.todevice.devices import (
    DeviceError,
    device_names,
    devices_here,
    parse_device,
    parse_dtype,
    synchronize,
)
from tensormagic.engine.todevice.mover import Install, Mover, Plan, compute_plan
from tensormagic.engine.todevice.placement import (
    MAX_DEPTH,
    device_of,
    has_leaves,
    is_container,
    is_movable,
    leaves,
    nbytes_of,
)
from tensormagic.engine.todevice.report import TodeviceReport, move_report

#: A test hook: called as ``hook(phase, name)`` before each object is computed (phase
#: ``"compute"``), before each module or optimizer is installed (phase ``"install"``) and
#: before the report is built (phase ``"report"``); whatever it raises fails the move there.
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
        try:
            movable = is_movable(obj)
        except Exception as exc:  # noqa: BLE001 - a container whose items raise
            raise MoveError(f"nothing moved: {unreadable(name, obj, exc)}") from None
        if not movable:
            if is_container(obj) and _holds_deeper(obj, name):
                why = f"is a {type(obj).__name__} whose tensors or arrays sit more than {MAX_DEPTH} levels of containers deep; move the inner containers by name"
            elif is_container(obj):
                why = f"is a {type(obj).__name__} with no tensors, arrays or modules inside"
            else:
                why = describe_non_array(obj)
            raise MoveError(f"nothing moved: {name} {why}")
        out.append(name)
    if not out:
        raise MoveError("nothing moved: name what to move, as in %todevice x model cuda")
    return out


def _holds_deeper(obj: Any, name: str) -> bool:
    """True when a container holds a tensor or array at any depth (beyond what moves)."""
    try:
        return next(iter(references(obj, name, Scan())), None) is not None
    except Exception:  # noqa: BLE001
        return False


def movable_names(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset(), skipped: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(what ``--all`` moves, the NumPy arrays it leaves alone): tensors, modules, optimizers and
    containers of tensors; arrays and containers holding arrays would change type, so they stay.
    Objects that raise while read (a tensor subclass refusing ``.device``) are left alone too,
    each described in ``skipped``."""
    chosen, arrays = [], []
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        try:
            if is_tensor(obj):
                str(obj.device), str(obj.dtype)
                chosen.append(name)
            elif is_array(obj):
                arrays.append(name)
            elif is_module(obj) or is_optimizer(obj):
                chosen.append(name)
            elif is_container(obj) and has_leaves(obj):
                if any(is_array(leaf) and not is_tensor(leaf) for _, leaf in leaves(obj, name)):
                    arrays.append(name)
                else:
                    chosen.append(name)
        except Exception as exc:  # noqa: BLE001 - one unreadable object never stops --all
            if skipped is not None:
                skipped.append(unreadable(name, obj, exc))
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


def _devices_in(text: str) -> set[torch.device]:
    """The devices named in a ``cpu, cuda:0`` source string (unknown ones, ``-`` and ``?``, left out)."""
    found = set()
    for name in text.split(", "):
        try:
            found.add(torch.device(name))
        except (RuntimeError, ValueError):
            continue
    return found


@dataclass
class _Before:
    """What the namespace looked like before the move (read once, nothing changed)."""

    scan: Scan
    pairs: list[tuple[int, int, str]]
    sources: dict[int, str]
    devices: dict[str, str]
    sizes: dict[str, int]


def _read_before(namespace: Mapping[str, Any], plans: list[Plan], chosen: list[str], hidden: frozenset[str] | set[str]) -> _Before:
    try:
        scan = collect_leaves(namespace, chosen, hidden)
        pairs = related_pairs(scan.leaves)
        sources = {id(leaf.obj): device_of(leaf.obj) for leaf in scan.leaves}
        return _Before(scan, pairs, sources, {p.name: _source(p.old) for p in plans}, {p.name: _size(p.old) for p in plans})
    except Exception as exc:  # noqa: BLE001 - nothing has changed yet: say so in one line
        raise MoveError(f"nothing moved: reading the namespace before the move failed ({describe_exception(exc)}); {devices_here()}") from None


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
    are changed in place only once every object has been computed, and changed back if an
    install or the report fails.  Raises :class:`MoveError` (one line; ``namespace`` and every
    object unchanged) when anything fails.
    """
    try:
        target = parse_device(device)
        torch_dtype = parse_dtype(dtype) if dtype else None
    except DeviceError as exc:
        raise MoveError(str(exc)) from None
    if pin_memory and not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())):
        raise MoveError(f"nothing moved: --pin-memory needs a CUDA or XPU device (pinned memory is page-locked host memory for fast copies to a GPU); {devices_here()}")
    chosen = resolve_names(namespace, names, hidden)
    plans = [Plan(name, namespace[name]) for name in chosen]
    before = _read_before(namespace, plans, chosen, hidden)
    mover = Mover(target, torch_dtype, non_blocking, pin_memory)
    order = [p for p in plans if not is_optimizer(p.old)] + [p for p in plans if is_optimizer(p.old)]
    options = (target, device, torch_dtype, non_blocking, pin_memory)
    start = time.perf_counter()
    _compute_all(namespace, hidden, chosen, plans, order, mover, before, options, hook)
    done = _install_all(order, target, hook)
    try:
        if hook is not None:
            hook("report", ", ".join(chosen))
        bindings = {p.name: p.new for p in plans if p.new is not p.old}
        report = _moved_report(namespace, hidden, chosen, plans, mover, before, options, bindings, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - no report, no move: undo the installs, newest first
        for inst in reversed(done):
            inst.undo()
        raise MoveError(f"nothing moved: building the report failed ({_describe_failure(exc, target, 0)}); every object was restored; {devices_here()}") from None
    return MoveOutcome(report, bindings)


def _compute_all(
    namespace: Mapping[str, Any],
    hidden: frozenset[str] | set[str],
    chosen: list[str],
    plans: list[Plan],
    order: list[Plan],
    mover: Mover,
    before: _Before,
    options: tuple[Any, ...],
    hook: Hook | None,
) -> None:
    """Build every moved object (nothing is changed); on any failure drop them all and raise."""
    target, device, torch_dtype, non_blocking, pin_memory = options
    failed: str | None = None
    reason = ""
    attempted: list[str] = []
    try:
        for plan in order:
            failed = plan.name
            attempted.append(plan.name)
            if hook is not None:
                hook("compute", plan.name)
            for dev in mover.touched | _devices_in(before.devices[plan.name]):
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
        reason = _describe_failure(exc, target, before.sizes.get(failed or "", 0))
    if failed is None and not reason:
        return
    for plan in plans:  # drop every partial copy
        plan.new, plan.installs = None, []
    mover.memo.clear()
    mover.containers.clear()
    mover.keep.clear()
    if target.type == "cuda" or any("cuda" in b for b in before.devices.values()):
        torch.cuda.empty_cache()
    name = failed or "?"
    obj = namespace.get(name, None)
    try:
        report = move_report(namespace, hidden, chosen, target, device, torch_dtype, non_blocking, pin_memory, before.devices, before.sizes, {}, failed=name, reason=reason, attempted=attempted)
    except Exception:  # noqa: BLE001 - the one-line message says it all
        report = None
    what = f"{name} ({short_type_name(obj)})" if name in namespace else name
    raise MoveError(f"nothing moved: {what} cannot move to {target}: {reason}; {devices_here()}", report)


def _install_all(order: list[Plan], target: torch.device, hook: Hook | None) -> list[Install]:
    """Change the modules and optimizers in place; on a failure undo what was done and raise."""
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
    return done


def _moved_report(
    namespace: Mapping[str, Any],
    hidden: frozenset[str] | set[str],
    chosen: list[str],
    plans: list[Plan],
    mover: Mover,
    before: _Before,
    options: tuple[Any, ...],
    bindings: dict[str, Any],
    seconds: float,
) -> TodeviceReport:
    """The report of a move that succeeded: every row, the warnings about what it broke, the
    placement after it (of the namespace as it will be once ``bindings`` are applied)."""
    target, device, torch_dtype, non_blocking, pin_memory = options
    view = ChainMap(bindings, dict(namespace))

    def command(extra: list[str]) -> str:
        return f"%todevice {' '.join(dict.fromkeys(list(chosen) + extra))} {device}"

    def movable(owner: str) -> bool:
        try:
            return is_movable(view[owner])
        except Exception:  # noqa: BLE001
            return False

    # What each leaf is now: moved ones through the memo; the others walked again, since a
    # container or module left in place may hold a moved module whose parameters were replaced.
    now: dict[str, Any] = {}
    rescan = Scan()
    for owner in dict.fromkeys(leaf.owner for leaf in before.scan.leaves if not leaf.moved):
        now.update(references(view[owner], owner, rescan))

    def new_of(leaf: Leaf) -> Any:
        if leaf.moved:
            return mover.memo.get(id(leaf.obj), leaf.obj)
        return now.get(leaf.label, leaf.obj)

    warn = list(mover.warnings)
    warn += aliasing_warnings(before.scan.leaves, before.pairs, new_of, before.sources, command, movable)
    labels = {id(leaf.obj): leaf.label for leaf in before.scan.leaves if leaf.moved}
    warn += optimizer_warnings(view, chosen, mover.memo, labels, target, hidden, command)
    warn = list(dict.fromkeys(warn))
    if len(warn) > MAX_WARNINGS:
        warn = [*warn[:MAX_WARNINGS], f"... and {len(warn) - MAX_WARNINGS} more"]
    notes = []
    if mover.pageable:
        notes.append("--non-blocking from ordinary CPU memory is not asynchronous; add --pin-memory to copy from page-locked memory")
    if non_blocking:
        notes.append("with --non-blocking each object's time is the time to queue its copy; the total is measured after synchronising")
    if before.scan.cut_short:
        notes.append(f"stopped looking for other references to the moved tensors after {MAX_SCAN:,} objects: names beyond them were not checked")
    notes += before.scan.problems
    return move_report(view, hidden, chosen, target, device, torch_dtype, non_blocking, pin_memory, before.devices, before.sizes, {p.name: p for p in plans}, warnings=warn, notes=notes, seconds=seconds)


def _source(obj: Any) -> str:
    if is_optimizer(obj):
        devices = {str(v.device) for st in obj.state.values() for v in st.values() if is_tensor(v)}
        devices |= {str(p.device) for g in obj.param_groups for p in g["params"]}
        return ", ".join(sorted(devices)) or "-"
    found = dict.fromkeys(str(device_of(leaf)) for _, leaf in leaves(obj, ""))
    return ", ".join(found) or "-"


def _size(obj: Any) -> int:
    if is_optimizer(obj):
        return sum(nbytes_of(v) for st in obj.state.values() for v in st.values() if is_tensor(v))
    seen: dict[int, Any] = {}
    for _, leaf in leaves(obj, ""):
        seen.setdefault(id(leaf), leaf)
    return sum(nbytes_of(v) for v in seen.values())


__all__ = ["MoveError", "MoveOutcome", "device_names", "movable_names", "move", "resolve_names"]
