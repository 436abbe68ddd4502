"""Which named arrays could share memory with an object, without reading every one every time.

``%tensorinfo x`` lists the other variables whose memory overlaps ``x``'s.  Reading the memory
layout of every array in a namespace of 100,000 takes half a second; this index keeps, per
name, the byte interval its object can touch, and a key that changes whenever that interval
can:

- a tensor: its storage's byte range (in-place view ops such as ``transpose_`` or
  ``as_strided_`` stay inside it), keyed by ``data_ptr()`` (``set_``, ``.data =`` and a
  growing ``resize_`` move it);
- a NumPy array: the byte range of the memory it lives in (its owner's buffer), which no
  in-place change can leave (shape, strides and dtype can be assigned, ``.data`` cannot; a
  ``resize()`` moves an array only when nothing views it, and a view made afterwards finds it
  as its owner, below).

A query compares the namespace with what it saw last time in bulk (the names, the ids of the
objects and every tensor's ``data_ptr()``, with C-level ``map`` and NumPy comparisons), re-reads
only what changed, and returns the names that are the object, own its memory, or whose
interval overlaps its bytes: a superset of its aliases, which the caller checks exactly, as
before.  Modules' tensors and unusual objects (subclasses, NumPy
scalars) are looked at on every query.  Nothing is pinned: objects are followed by weak
references, and an entry whose object died is dropped before its id can be reused.
"""

from __future__ import annotations

import bisect
import operator
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tensormagic.engine.namespace import HIDDEN_NAMES
from tensormagic.engine.naming import is_array, is_module
from tensormagic.engine.tensorinfo.memory import MemoryRegion, memory_region, root_base

#: Namespaces whose index is kept (the IPython user namespace is the one that matters).
MAX_INDEXES = 4

#: What a position of the namespace holds: nothing indexed, a tensor (exact type), an ndarray
#: (exact type), or something looked at on every query (modules, subclasses, NumPy scalars).
NONE, TENSOR, ARRAY, OTHER = range(4)

_data_ptr = torch.Tensor.data_ptr


def _storage_range(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.data_ptr() + storage.nbytes()
    except Exception:  # noqa: BLE001 - a storage that cannot be asked
        return None


def _owner_range(a: np.ndarray) -> tuple[str, int, int] | None:
    """The memory a NumPy array lives in: its owner array's buffer, a tensor's storage, or
    another object's buffer; None when it cannot be told."""
    owner = root_base(a)
    if isinstance(owner, torch.Tensor):
        found = _storage_range(owner)
        return None if found is None else (str(owner.device), *found)
    if isinstance(owner, np.ndarray) and owner.base is None:
        start = owner.__array_interface__["data"][0]
        return "cpu", start, start + owner.nbytes
    base = owner.base if isinstance(owner, np.ndarray) else owner
    try:
        with memoryview(base) as view:  # type: ignore[arg-type]  # any buffer owner; TypeError below if not
            buffer = np.frombuffer(view, dtype=np.uint8) if view.nbytes else None
        if buffer is not None:
            start = buffer.__array_interface__["data"][0]
            return "cpu", start, start + buffer.nbytes
    except (TypeError, ValueError, BufferError):
        pass
    return None


def _interval(obj: Any, kind: int) -> tuple[str, int, int] | None:
    """(space, lo, hi): every byte ``obj`` can reach while its key stays the same (an array
    whose memory cannot be told: its own bytes, and it is looked at on every query)."""
    if kind == TENSOR:  # the common cases without the exact region (a superset is enough)
        try:
            device = obj.device
            if device.type == "meta" or obj.numel() == 0:
                return None
        except Exception:  # noqa: BLE001
            return None
        found = _storage_range(obj)
        return None if found is None or found[0] == 0 else (str(device), *found)
    if kind == ARRAY:
        return _owner_range(obj) if obj.size else None
    region = memory_region(obj)
    if region is None:
        return None
    if isinstance(obj, torch.Tensor):
        found = _storage_range(obj)
    else:
        owned = _owner_range(obj)
        found = None if owned is None or owned[0] != region.space else owned[1:]
    if found is None:
        return region.space, region.lo, region.hi
    return region.space, min(found[0], region.lo), max(found[1], region.hi)


def _other_key(obj: Any) -> Any:
    """The key of an object looked at on every query (see the module doc)."""
    if isinstance(obj, torch.Tensor):
        try:
            return ("tensor", obj.data_ptr())
        except Exception:  # noqa: BLE001 - no storage (meta, sparse, wrapper subclasses)
            return ("tensor", None)
    if isinstance(obj, np.ndarray):
        return ("array", id(obj.base), obj.shape, obj.strides)
    return ("other", None)


def _select(objs: list[Any], positions: np.ndarray) -> list[Any]:
    if len(positions) == 0:
        return []
    picked = operator.itemgetter(*positions.tolist())(objs)
    return list(picked) if len(positions) > 1 else [picked]


class _Intervals:
    """Byte intervals of one memory space, by size class, sorted by start (lazily: additions
    are appended and a row is sorted when next read, which timsort does in linear time when
    few were added): the intervals that overlap a query are found with one bisection a class."""

    def __init__(self) -> None:
        self.starts: dict[int, list[tuple[int, int, str]]] = {}  # size class -> (lo, hi, name), by lo
        self.unsorted: set[int] = set()

    @staticmethod
    def _size_class(lo: int, hi: int) -> int:
        return max(hi - lo, 1).bit_length()

    def _row(self, size_class: int) -> list[tuple[int, int, str]]:
        row = self.starts.setdefault(size_class, [])
        if size_class in self.unsorted:
            row.sort()
            self.unsorted.discard(size_class)
        return row

    def add(self, name: str, lo: int, hi: int) -> None:
        size_class = self._size_class(lo, hi)
        self.starts.setdefault(size_class, []).append((lo, hi, name))
        self.unsorted.add(size_class)

    def remove(self, name: str, lo: int, hi: int) -> None:
        row = self._row(self._size_class(lo, hi))
        i = bisect.bisect_left(row, (lo, hi, name))
        if i < len(row) and row[i] == (lo, hi, name):
            del row[i]

    def overlapping(self, lo: int, hi: int) -> set[str]:
        found = set()
        for size_class in list(self.starts):
            row = self._row(size_class)
            longest = 1 << size_class  # every interval of this class is shorter
            for start, end, name in row[bisect.bisect_left(row, (lo - longest,)) : bisect.bisect_left(row, (hi,))]:
                if end > lo and start < hi:
                    found.add(name)
        return found


class _Ref(weakref.ref[Any]):
    """A weak reference that remembers the id of its object (one shared callback for all)."""

    __slots__ = ("key",)
    key: int


class AliasIndex:
    """The index of one namespace (see the module doc)."""

    def __init__(self) -> None:
        self.hidden: frozenset[str] = frozenset()
        self.names: list[str] = []  # the namespace's names as last seen, in order
        self.ids = np.zeros(0, dtype=np.int64)  # the ids of their objects
        self.kinds = np.zeros(0, dtype=np.int8)  # NONE, TENSOR, ARRAY or OTHER per position
        self.tensor_keys = np.zeros(0, dtype=np.int64)  # data_ptr() of the TENSOR positions
        self.others: dict[str, Any] = {}  # key of each name looked at on every query
        self.members_of: dict[str, set[str]] = {}  # a module's name -> its tensors' dotted names
        self.entries: dict[str, tuple[int, str | None, int, int]] = {}  # name -> (id, space, lo, hi)
        self.spaces: dict[str, _Intervals] = {}
        self.by_id: dict[int, str | set[str]] = {}  # id -> its name (a set when it has several)
        self._spaces_seen: dict[str, str] = {}  # one string per memory space
        self._watched: dict[int, _Ref] = {}
        self._dead: list[int] = []  # ids whose objects died since the last query
        self._on_death = self._died  # one bound method for every weak reference
        self._stale: set[str] = set()  # top-level names whose entries went with a dead object

    # -- entries ------------------------------------------------------------------------------

    def _drop(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is None:
            return
        obj_id, space, lo, hi = entry
        if space is not None:
            self.spaces[space].remove(name, lo, hi)
        self._unname(obj_id, name)

    def _name(self, obj_id: int, name: str) -> None:
        known = self.by_id.get(obj_id)
        if known is None:
            self.by_id[obj_id] = name
        elif isinstance(known, str):
            if known != name:
                self.by_id[obj_id] = {known, name}
        else:
            known.add(name)

    def _unname(self, obj_id: int, name: str) -> None:
        known = self.by_id.get(obj_id)
        if known == name:
            del self.by_id[obj_id]
        elif isinstance(known, set):
            known.discard(name)
            if len(known) == 1:
                self.by_id[obj_id] = next(iter(known))

    def names_of(self, obj_id: int) -> set[str]:
        """The names indexed for the object with this id."""
        known = self.by_id.get(obj_id)
        return set() if known is None else ({known} if isinstance(known, str) else set(known))

    def _died(self, ref: _Ref) -> None:
        self._dead.append(ref.key)  # only recorded: it may run at any moment, mid-refresh

    def _put(self, name: str, obj: Any, kind: int = 3) -> bool:
        """Index ``name`` -> ``obj``; False when ``obj`` cannot be followed by a weak reference."""
        self._drop(name)
        if id(obj) not in self._watched:
            try:
                ref = _Ref(obj, self._on_death)
            except TypeError:
                return False
            ref.key = id(obj)
            self._watched[id(obj)] = ref
        interval = _interval(obj, kind)
        space, lo, hi = interval if interval is not None else (None, 0, 0)
        if space is not None:
            space = self._spaces_seen.setdefault(space, space)
            self.spaces.setdefault(space, _Intervals()).add(name, lo, hi)
        self.entries[name] = (id(obj), space, lo, hi)
        self._name(id(obj), name)
        return True

    def _bury(self) -> None:
        """Drop the entries of objects that died, before their ids can be taken for others'."""
        while self._dead:
            obj_id = self._dead.pop()
            self._watched.pop(obj_id, None)
            for name in self.names_of(obj_id):
                self._drop(name)
                self._stale.add(name.partition(".")[0])

    def _reset(self) -> None:
        for name in list(self.entries):
            self._drop(name)
        self.names, self.ids, self.kinds = [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8)
        self.others, self.members_of = {}, {}

    # -- keeping up with the namespace --------------------------------------------------------

    def _classify(self, name: Any, obj: Any, hidden: frozenset[str]) -> int:
        if not isinstance(name, str) or name.startswith("_") or name in HIDDEN_NAMES or name in hidden:
            return NONE
        kind = type(obj)
        if kind is torch.Tensor or kind is torch.nn.Parameter:
            try:  # strided, with a storage: data_ptr() answers (sparse and nested ones do not)
                return TENSOR if obj.layout == torch.strided and not obj.is_nested and obj.data_ptr() is not None else OTHER
            except Exception:  # noqa: BLE001
                return OTHER
        if kind is np.ndarray:  # an array whose memory cannot be told: looked at on every query
            return ARRAY if _owner_range(obj) is not None else OTHER
        return OTHER if is_array(obj) or is_module(obj) else NONE

    def refresh(self, namespace: Mapping[str, Any], hidden: frozenset[str] | set[str]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
        """Bring the index up to date with ``namespace``.  Returns the module tensors by their
        dotted names and the named objects the index cannot follow (NumPy scalars), for this
        query only (the index holds no object)."""
        hidden = frozenset(hidden)
        if hidden != self.hidden:
            self._reset()
            self.hidden = hidden
        self._bury()
        names = list(namespace)
        objs = list(namespace.values())
        ids = np.fromiter(map(id, objs), dtype=np.int64, count=len(objs))
        seen = len(self.names)
        if len(names) >= seen and names[:seen] == self.names:  # the same names, maybe some more
            changed = set(np.flatnonzero(ids[:seen] != self.ids).tolist()) | set(range(seen, len(names)))
        else:  # names went away or moved: start again
            self._reset()
            changed = set(range(len(names)))
        if self._stale:
            changed |= {i for i, name in enumerate(names) if name in self._stale}
            self._stale.clear()
        kinds = np.concatenate([self.kinds, np.zeros(len(names) - seen, dtype=np.int8)]) if len(names) >= seen and seen == len(self.kinds) else np.zeros(len(names), dtype=np.int8)
        if changed:
            for i in changed:
                name = names[i]
                if i < len(self.kinds) and self.kinds[i] == OTHER:
                    self.others.pop(name, None)
                    for dotted in self.members_of.pop(name, set()):
                        self.others.pop(dotted, None)
                        self._drop(dotted)
                self._drop(name)
                kinds[i] = self._classify(name, objs[i], hidden)
        tensors = np.flatnonzero(kinds == TENSOR)
        # In-place changes: every tensor's data_ptr (an array cannot leave its memory).
        tensor_objs = _select(objs, tensors)
        try:
            tensor_keys = np.fromiter(map(_data_ptr, tensor_objs), dtype=np.int64, count=len(tensor_objs))
        except Exception:  # noqa: BLE001 - a tensor changed beyond recognition: one at a time
            tensor_keys = np.array([_other_key(t)[1] or 0 for t in tensor_objs], dtype=np.int64)
        old_kinds = self.kinds if len(self.kinds) == seen else np.zeros(0, dtype=np.int8)
        old_tensors = np.flatnonzero(old_kinds == TENSOR)
        if not changed and np.array_equal(tensors, old_tensors):  # aligned with last time: compare in bulk
            changed_tensors = tensors[np.flatnonzero(tensor_keys != self.tensor_keys)].tolist()
        else:
            before = dict(zip(old_tensors.tolist(), self.tensor_keys.tolist()))
            changed_tensors = [i for i, key in zip(tensors.tolist(), tensor_keys.tolist()) if i in changed or before.get(i) != key]
        changed_arrays = sorted(i for i in changed if kinds[i] == ARRAY)
        uncached: list[tuple[str, Any]] = []
        for i in changed_tensors + changed_arrays:
            if not self._put(names[i], objs[i], int(kinds[i])):
                uncached.append((names[i], objs[i]))
        members = self._others(names, objs, np.flatnonzero(kinds == OTHER), uncached)
        self.names, self.ids, self.kinds, self.tensor_keys = names, ids, kinds, tensor_keys
        return members, uncached

    def _others(self, names: list[str], objs: list[Any], positions: np.ndarray, uncached: list[tuple[str, Any]]) -> dict[str, Any]:
        """Modules' tensors (as ``model.fc.weight``) and unusual array-likes, on every query."""
        members: dict[str, Any] = {}
        for i in positions.tolist():
            name, obj = names[i], objs[i]
            if is_module(obj):
                try:
                    tensors = list(obj.named_parameters(remove_duplicate=False))
                    tensors += [(n, b) for n, b in obj.named_buffers(remove_duplicate=False) if b is not None]
                except Exception:  # noqa: BLE001 - a module that cannot list its tensors: none
                    tensors = []
                listed = {f"{name}.{pname}": p for pname, p in tensors}
                known = self.members_of.setdefault(name, set())
                for dotted in known - listed.keys():  # tensors the module no longer has
                    self.others.pop(dotted, None)
                    self._drop(dotted)
                known.clear()
                known.update(listed)
                pairs = list(listed.items())
            else:
                pairs = [(name, obj)]
            for dotted, p in pairs:
                members[dotted] = p
                key = (id(p), _other_key(p))
                if self.others.get(dotted) != key or dotted not in self.entries:
                    self.others[dotted] = key
                    if not self._put(dotted, p):
                        uncached.append((dotted, p))
        return members

    # -- queries ------------------------------------------------------------------------------

    def candidates(self, obj: Any, region: MemoryRegion | None) -> set[str]:
        """Every indexed name that is ``obj``, owns its memory, or whose interval overlaps its
        bytes."""
        names = self.names_of(id(obj))
        owner = root_base(obj) if isinstance(obj, (np.ndarray, torch.Tensor)) else None
        if owner is not None and owner is not obj:
            names |= self.names_of(id(owner))
        if region is not None and region.space in self.spaces:
            names |= self.spaces[region.space].overlapping(region.lo, region.hi)
        return names


_INDEXES: dict[int, AliasIndex] = {}


def index_for(namespace: Mapping[str, Any]) -> AliasIndex:
    """The index kept for ``namespace`` (by identity; its answers never depend on it being the
    same namespace as last time, only its speed does)."""
    index = _INDEXES.pop(id(namespace), None) or AliasIndex()
    _INDEXES[id(namespace)] = index  # most recently used last
    while len(_INDEXES) > MAX_INDEXES:
        _INDEXES.pop(next(iter(_INDEXES)))
    return index


def candidate_objects(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str], obj: Any) -> list[tuple[str, Any]]:
    """Every named array or module tensor of ``namespace`` that is ``obj`` or could share a byte
    with it, with its name, in namespace order (a superset of its aliases: check them exactly)."""
    index = index_for(namespace)
    members, uncached = index.refresh(namespace, hidden)
    extra = dict(uncached)
    names = index.candidates(obj, memory_region(obj)) | set(extra)
    if not names:
        return []
    found = [(name, extra[name] if name in extra else (members[name] if name in members else namespace[name])) for name in names]
    if len(found) > 1:  # namespace order: names in the dict's order, a module's tensors in theirs
        tops = {name.partition(".")[0] for name in names}
        position = {key: i for i, key in enumerate(namespace) if key in tops}
        rank = {name: i for i, name in enumerate(members)}
        found.sort(key=lambda item: (position[item[0].partition(".")[0]], rank.get(item[0], -1)))
    return found
