"""``%tensorinfo`` with no argument: every array, tensor and module, grouped by shared memory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tensormagic.engine.namespace import (
    NamedObject,
    named_arrays,
    unreadable,
    user_names,
)
from tensormagic.engine.naming import (
    UNINITIALIZED,
    is_module,
    is_tensor,
    is_uninitialized,
    type_name,
)
from tensormagic.engine.sharding.detect import as_dtensor
from tensormagic.engine.sharding.layout import placement_text
from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.tensorinfo.aliases import EXACT_TIME_BUDGET
from tensormagic.engine.tensorinfo.dtypes import numpy_dtype_name
from tensormagic.engine.tensorinfo.module import inspect_module
from tensormagic.engine.tensorinfo.reports import NamespaceEntry, NamespaceInfo

#: Notes about objects that could not be read (or are uninitialized) listed at most.
MAX_READ_NOTES = 20
#: Exact overlap checks at most when grouping a whole namespace (then ranges decide).
MAX_EXACT_CHECKS = 20_000

#: Overlapping pairs examined at most when grouping a namespace; past it, whole clusters of
#: overlapping byte ranges are grouped at once (many views of one buffer make n^2 pairs).
MAX_PAIRS = 100_000
#: Parameters and buffers of one module compared with the namespace's names at most.
MAX_MODULE_TENSORS = 100_000


def _entry_of(item: NamedObject, notes: list[str]) -> NamespaceEntry:
    """The row of one array or tensor; one that cannot be read gets a row of unknowns and a note."""
    try:
        return _facts_of(item, notes)
    except Exception as exc:  # noqa: BLE001 - one broken object never breaks the table
        notes.append(unreadable(item.name, item.obj, exc))
        return NamespaceEntry(name=item.name, type=type_name(item.obj), dtype="?", shape=None, device="?", nbytes=0, group=None, relation=None)


def _facts_of(item: NamedObject, notes: list[str]) -> NamespaceEntry:
    obj = item.obj
    if is_uninitialized(obj):
        notes.append(f"{item.name}: {UNINITIALIZED} (a lazy module's parameter or buffer)")
        return NamespaceEntry(name=item.name, type=type_name(obj), dtype=str(obj.dtype), shape=None, device=str(obj.device), nbytes=0, group=None, relation=None)
    dt = as_dtensor(obj)
    if dt is not None:  # global shape; the bytes this rank holds (what this process's memory has)
        local = dt.to_local()
        placed = ", ".join(placement_text(p) for p in dt.placements)
        notes.append(f"{item.name}: a DTensor ({placed}): its shape is the global tensor's, its bytes this rank's shard's")
        return NamespaceEntry(name=item.name, type=f"torch.distributed.tensor.DTensor ({placed})", dtype=str(dt.dtype), shape=list(dt.shape), device=str(local.device), nbytes=local.numel() * local.element_size(), group=None, relation=None)
    if is_tensor(obj):
        nested = bool(getattr(obj, "is_nested", False))
        shape = None if nested else list(obj.shape)
        numel = sum(c.numel() for c in obj.unbind()) if nested else obj.numel()
        return NamespaceEntry(name=item.name, type=type_name(obj), dtype=str(obj.dtype), shape=shape, device=str(obj.device), nbytes=numel * obj.element_size(), group=None, relation=None)
    arr = np.asarray(obj)
    return NamespaceEntry(name=item.name, type=type_name(obj), dtype=numpy_dtype_name(arr.dtype), shape=list(arr.shape), device="cpu", nbytes=int(arr.nbytes), group=None, relation=None)


def _module_entry(name: str, module: torch.nn.Module, notes: list[str]) -> NamespaceEntry:
    try:
        info = inspect_module(name, module, max_rows=0)
    except Exception as exc:  # noqa: BLE001 - one broken module never breaks the table
        notes.append(unreadable(name, module, exc))
        return NamespaceEntry(name=name, type=type_name(module), dtype="?", shape=None, device="?", nbytes=0, group=None, relation=None)
    notes += [f"{name}: {n}" for n in info.notes if UNINITIALIZED in n]
    nbytes = info.parameter_bytes + info.buffer_bytes
    if info.local_parameter_bytes is not None:  # sharded (FSDP2): the bytes this rank holds
        notes.append(f"{name}: {info.sharded} sharded parameters or buffers: its bytes are this rank's shards' ({nbytes:,} bytes over all ranks)")
        nbytes = info.local_parameter_bytes + (info.local_buffer_bytes or 0)
    return NamespaceEntry(name=name, type=info.type, dtype=", ".join(info.dtypes) or "-", shape=None, device=", ".join(info.devices) or "-", nbytes=nbytes, group=None, relation=None)


def inspect_namespace(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> NamespaceInfo:
    """One table of every array, tensor and module, grouped by what shares memory."""
    items = named_arrays(namespace, hidden, include_module_tensors=False)
    read_notes: list[str] = []
    entries = [_entry_of(item, read_notes) for item in items]
    modules = [(name, namespace[name]) for name in user_names(namespace, hidden) if is_module(namespace[name])]
    entries += [_module_entry(name, module, read_notes) for name, module in modules]
    regions = [memory.memory_region(item.obj) for item in items]
    parent = list(range(len(entries)))
    relations: dict[int, str] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    checks = 0
    by_object: dict[int, int] = {}
    for i, item in enumerate(items):
        j = by_object.setdefault(id(item.obj), i)
        if j != i:
            parent[find(i)] = find(j)
            relations[i] = memory.SAME_OBJECT
    notes: list[str] = read_notes[:MAX_READ_NOTES] + ([f"... and {len(read_notes) - MAX_READ_NOTES} more"] if len(read_notes) > MAX_READ_NOTES else [])
    deadline = time.perf_counter() + EXACT_TIME_BUDGET
    pairs = 0
    cut_short = unchecked = False
    for i, j in memory.overlapping_pairs(regions):
        pairs += 1
        if pairs > MAX_PAIRS:
            cut_short = True
            break
        if find(i) == find(j):
            continue
        exact = checks < MAX_EXACT_CHECKS and time.perf_counter() < deadline
        checks += exact
        rel = memory.relation(items[i].obj, items[j].obj, regions[i], regions[j], exact=exact)
        if rel is None:
            continue
        unchecked |= rel[1] == memory.UNCHECKED
        parent[find(j)] = find(i)
        relations.setdefault(j, rel[0])
    if cut_short:
        # Union whole clusters of overlapping byte ranges (a sweep: n log n, no pairs).
        present = {i: r for i, r in enumerate(regions) if r is not None}
        order = sorted(present, key=lambda i: (present[i].space, present[i].lo))
        head, space, reach = -1, None, -1
        for i in order:
            r = present[i]
            if r.space != space or r.lo >= reach:
                head, space, reach = i, r.space, r.hi
                continue
            reach = max(reach, r.hi)
            if find(i) != find(head):
                parent[find(i)] = find(head)
                relations.setdefault(i, memory.MAY_SHARE)
        notes.append(f"more than {MAX_PAIRS:,} overlapping pairs: the rest are grouped by byte ranges (may share memory)")
    elif unchecked:
        notes.append("some overlaps were decided by byte ranges alone (may share memory): exact checks took too long")
    # a name bound to a module's parameter or buffer (w = model.weight) is grouped with the module
    for i, (owner, where) in _module_tensors(items, modules).items():
        parent[find(i)] = find(len(items) + owner)
        relations.setdefault(i, f"is {where}")
    members: dict[int, list[int]] = {}
    for i in range(len(entries)):
        members.setdefault(find(i), []).append(i)
    groups = [idx for idx in members.values() if len(idx) > 1]
    for number, idx in enumerate(groups, start=1):
        for i in idx:
            entries[i].group = number
            entries[i].relation = relations.get(i)
    total = _distinct_bytes(entries, regions, [[i for i in idx if i < len(items)] for idx in members.values()])
    return NamespaceInfo(entries=entries, groups=[[entries[i].name for i in idx] for idx in groups], total_bytes=total, notes=notes)


def _module_tensors(items: list[NamedObject], modules: list[tuple[str, torch.nn.Module]]) -> dict[int, tuple[int, str]]:
    """Item index -> (module index, ``model.0.weight``) for the items that are a module's
    parameter or buffer (the first module holding it)."""
    wanted = {id(item.obj): i for i, item in enumerate(items) if is_tensor(item.obj)}
    found: dict[int, tuple[int, str]] = {}
    for k, (name, module) in enumerate(modules):
        try:
            tensors = list(module.named_parameters()) + list(module.named_buffers())
        except Exception:  # noqa: BLE001 - a module that refuses to list them: not grouped
            continue
        for path, t in tensors[:MAX_MODULE_TENSORS]:
            i = wanted.get(id(t))
            if i is not None and i not in found:
                found[i] = (k, f"{name}.{path}")
    return found


def _distinct_bytes(entries: list[NamespaceEntry], regions: list[memory.MemoryRegion | None], groups: list[list[int]]) -> int:
    """The memory the arrays and tensors hold, shared bytes counted once: the union of each
    memory-sharing group's byte ranges (a lone array or tensor, or one whose memory cannot be
    located: its own bytes)."""
    total = 0
    for idx in groups:
        if len(idx) == 1:
            total += entries[idx[0]].nbytes
            continue
        total += sum(entries[i].nbytes for i in idx if regions[i] is None)
        spans = sorted((r.space, r.lo, r.hi) for i in idx if (r := regions[i]) is not None)
        if not spans:
            continue
        space, lo, hi = spans[0]
        for s_space, s_lo, s_hi in spans[1:]:
            if s_space != space or s_lo > hi:
                total += hi - lo
                space, lo, hi = s_space, s_lo, s_hi
            else:
                hi = max(hi, s_hi)
        total += hi - lo
    return total
