"""Moving dicts, lists and tuples: each container rebuilt at most once, cycles kept.

:class:`ContainerMoves` is the part of the compute phase (:class:`~.mover.Mover`) that walks
containers: it finds which containers reach something that changes, rebuilds only those (a list
or dict is registered before its items, so a cycle stays a cycle and shared sub-containers stay
shared), and names the tensors used as dict keys, which stay where they are.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tensormagic.engine.naming import is_array, is_module, is_tensor, is_uninitialized
from tensormagic.engine.todevice.placement import (
    MAX_DEPTH,
    container_items,
    device_of,
    dict_key_label,
    is_container,
    key_label,
)

if TYPE_CHECKING:
    from tensormagic.engine.todevice.mover import Install

#: Marks a tuple whose items are being moved (a cycle back into it cannot be rebuilt).
_BUILDING = object()
#: Containers followed at most inside one moved object.
MAX_CONTAINERS = 100_000


class ObjectFailure(Exception):
    """One object could not move (the reason is the message)."""


class ContainerMoves:
    """The container half of the compute phase; the :class:`~.mover.Mover` it is mixed into
    provides ``memo``, ``containers``, ``keep``, ``warnings`` and the leaf moves."""

    memo: dict[int, Any]
    containers: dict[int, Any]
    keep: list[Any]
    warnings: list[str]
    device: torch.device

    # the leaf moves, defined by the Mover
    def _dtype_for(self, t: torch.Tensor, direct: bool) -> torch.dtype:
        raise NotImplementedError

    def _needs_copy(self, t: torch.Tensor, dtype: torch.dtype) -> bool:
        raise NotImplementedError

    def tensor(self, t: torch.Tensor, direct: bool) -> torch.Tensor:
        raise NotImplementedError

    def array(self, a: np.ndarray | np.generic, direct: bool, notes: list[str] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def module(self, m: torch.nn.Module, owner: str) -> list[Install]:
        raise NotImplementedError

    def container(self, obj: Any, label: str, installs: list[Install], owner: str) -> Any:
        """A new dict, list or tuple with every tensor, array and module inside moved (the same
        container when nothing inside changes; modules inside move in place either way).

        First the containers reachable from ``obj`` that reach something that changes are found
        (:meth:`_to_rebuild`); only those are rebuilt, each once, so sub-containers shared by
        several others stay shared and a cycle (``cyc = [t]; cyc.append(cyc)``) stays a cycle:
        a list or dict is registered before its items are moved.  A cycle that runs back into a
        tuple cannot be rebuilt (the tuple would have to exist before its items), and neither
        can containers nested deeper than ``MAX_DEPTH`` be listed by the placement: both fail
        the move.  Tensors used as dict keys stay where they are (a dict finds them by
        identity), named in ``warnings``.
        """
        return self._build(obj, label, installs, owner, self._to_rebuild(obj, label))

    def _changes(self, value: Any) -> bool:
        """Whether moving ``value`` (not a container) gives a new object."""
        if is_tensor(value):
            if id(value) in self.memo:
                return self.memo[id(value)] is not value
            dtype = self._dtype_for(value, direct=False)
            if is_uninitialized(value):
                return bool(value.device != self.device or value.dtype != dtype)
            return self._needs_copy(value, dtype)
        return is_array(value)

    def _to_rebuild(self, root: Any, label: str) -> set[int]:
        """ids of the containers reachable from ``root`` that reach (through any path, cycles
        included) a tensor or array that changes, or a container already rebuilt."""
        nodes = {id(root): root}
        parents: dict[int, list[int]] = {}
        direct: set[int] = set()
        frontier, depth = [root], 0
        while frontier:
            depth += 1
            following = []
            for node in frontier:
                for _, value in container_items(node):
                    if is_container(value) and id(value) not in self.containers:
                        parents.setdefault(id(value), []).append(id(node))
                        if id(value) not in nodes:
                            nodes[id(value)] = value
                            following.append(value)
                    elif is_container(value):
                        if self.containers[id(value)] is not value:
                            direct.add(id(node))
                    elif self._changes(value) or (depth > MAX_DEPTH and is_module(value)):
                        direct.add(id(node))
            if depth > MAX_DEPTH and any(id(n) in direct for n in frontier):
                raise ObjectFailure(f"{label} nests containers more than {MAX_DEPTH} levels deep around a tensor, array or module; move the inner containers by name")
            if len(nodes) > MAX_CONTAINERS:
                raise ObjectFailure(f"{label} holds more than {MAX_CONTAINERS:,} containers; move its parts by name")
            frontier = following
        rebuild, queue = set(direct), list(direct)
        while queue:
            for parent in parents.get(queue.pop(), ()):
                if parent not in rebuild:
                    rebuild.add(parent)
                    queue.append(parent)
        return rebuild

    def _build(self, obj: Any, label: str, installs: list[Install], owner: str, rebuild: set[int]) -> Any:
        known = self.containers.get(id(obj))
        if known is _BUILDING:
            raise ObjectFailure(f"{label} is a tuple inside a cycle of containers that leads back to it; a moved copy of the cycle cannot be built around a tuple: make that tuple a list, or move the tensors one by one")
        if known is not None:
            return known
        self.keep.append(obj)
        again = id(obj) in rebuild
        new_obj: Any = obj
        if again and isinstance(obj, (dict, list)):
            new_obj = copy.copy(obj)  # the same type (OrderedDict, defaultdict, list subclass...)
            new_obj.clear()
        self.containers[id(obj)] = new_obj if new_obj is not obj or not again else _BUILDING
        if isinstance(obj, dict):
            self._key_warnings(obj, label)
        items = []
        for key, value in container_items(obj):
            where = key_label(label, key)
            if is_container(value):
                items.append((key, self._build(value, where, installs, owner, rebuild)))
            else:
                items.append((key, self.value(value, where, installs, owner)))
        if not again:
            return obj
        values = [v for _, v in items]
        if isinstance(obj, dict):
            new_obj.update(items)
        elif isinstance(obj, list):
            new_obj.extend(values)
        elif hasattr(obj, "_fields"):  # a namedtuple
            new_obj = type(obj)(*values)
        else:
            try:
                new_obj = type(obj)(values)
            except Exception:  # noqa: BLE001 - a tuple subclass with another constructor
                new_obj = tuple(values)
        self.containers[id(obj)] = new_obj
        return new_obj

    def _key_warnings(self, obj: dict[Any, Any], label: str) -> None:
        for i, key in enumerate(obj):
            if is_array(key):
                where = device_of(key)
                self.warnings.append(
                    f"{dict_key_label(label, i)} is a {'tensor' if is_tensor(key) else 'NumPy array'} used as a dict key: it stays on {where} "
                    "(a dict finds its keys by identity, so a moved copy would break every lookup); move it yourself and rebuild the dict if it must move"
                )

    def value(self, value: Any, label: str, installs: list[Install], owner: str) -> Any:
        """One element of a container, moved (modules in place; other objects kept)."""
        if is_tensor(value):
            return self.tensor(value, direct=False)
        if is_array(value):
            return self.array(value, direct=False)
        if is_module(value):
            if id(value) not in self.memo:
                self.memo[id(value)] = value
                installs += self.module(value, owner)
            return value
        if is_container(value):
            return self.container(value, label, installs, owner)
        return value
