"""Finding the arrays, tensors and modules in a namespace.

Objects are classified by their true type (see :mod:`tensormagic.engine.naming`), and one object
that raises while it is read (a hostile ``__getattr__``, a module whose ``named_parameters``
fails) is skipped and named in ``problems``, never an error for the whole namespace.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import compress
from operator import ne
from typing import Any

from tensormagic.engine.naming import (
    claimed_class,
    describe_exception,
    has_attribute,
    is_array,
    is_module,
    is_optimizer,
    short_type_name,
    type_name,
)

#: Names a notebook namespace holds that are never the user's data.
HIDDEN_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open"})


class Snapshot:
    """Which object each name of a namespace holds, by identity, without holding any of them.

    Taking one and asking what changed since (:meth:`rebound`) each cost one pass at C speed
    over the namespace (about 0.3 ms for 10,000 names): the names and the ``id()`` of their values
    as lists, compared whole when nothing changed, element by element only when something did.
    """

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.keys = list(namespace)
        self.ids = list(map(id, namespace.values()))

    def rebound(self) -> list[str]:
        """The names bound since the snapshot, or bound to another object (in namespace order)."""
        keys = list(self.namespace)
        ids = list(map(id, self.namespace.values()))
        n = len(self.keys)
        if keys[:n] != self.keys:  # a name was deleted: by name
            before = dict(zip(self.keys, self.ids))
            return [k for k, i in zip(keys, ids) if before.get(k) != i]
        # no name deleted: compare in place (the names added after are new), a block at a time
        # (a list comparison is three times faster than one ``ne`` per name; a cell rebinds few)
        out: list[str] = []
        old = self.ids
        for start in range(0, n, _BLOCK):
            end = min(start + _BLOCK, n)
            if ids[start:end] != old[start:end]:
                out += compress(keys[start:end], map(ne, ids[start:end], old[start:end]))
        return out + keys[n:]


_BLOCK = 256  # names compared at once by Snapshot.rebound


def is_inspectable(obj: Any) -> bool:
    """Arrays, tensors and ``torch.nn.Module`` instances."""
    return is_array(obj) or is_module(obj)


def user_names(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> Iterator[str]:
    """Names in ``namespace`` that the user made (not private, not IPython's own)."""
    for name in list(namespace):
        if name.startswith("_") or name in HIDDEN_NAMES or name in hidden:
            continue
        yield name


@dataclass(frozen=True)
class NamedObject:
    """An array-like object and the name (or dotted path) it is reachable by."""

    name: str
    obj: Any
    owner: str | None = None  # the module a parameter or buffer belongs to


def named_arrays(
    namespace: Mapping[str, Any],
    hidden: frozenset[str] | set[str] = frozenset(),
    include_module_tensors: bool = True,
    problems: list[str] | None = None,
) -> list[NamedObject]:
    """Every array and tensor in ``namespace``; module parameters and buffers as ``model.fc.weight``.

    A module whose parameters cannot be listed is skipped and described in ``problems``.
    """
    found: list[NamedObject] = []
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        if is_array(obj):
            found.append(NamedObject(name, obj))
        elif include_module_tensors and is_module(obj):
            try:
                inner = [NamedObject(f"{name}.{pname}", p, name) for pname, p in obj.named_parameters(remove_duplicate=False)]
                inner += [NamedObject(f"{name}.{bname}", b, name) for bname, b in obj.named_buffers(remove_duplicate=False) if b is not None]
            except Exception as exc:  # noqa: BLE001 - one broken module never hides the others
                if problems is not None:
                    problems.append(unreadable(name, obj, exc))
                continue
            found += inner
    return found


def unreadable(name: str, obj: Any, exc: BaseException) -> str:
    """The note for an object that raised while it was read: ``name (type): Error: message``."""
    return f"{name} ({type_name(obj)}) could not be read: {describe_exception(exc)}"


def suggest(name: str, namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Names close to ``name``, inspectable ones first."""
    names = list(user_names(namespace, hidden))
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return sorted(close, key=lambda n: not is_inspectable(namespace[n]))[:3]


def describe_non_array(obj: Any) -> str:
    """What an object is and how to make an array or tensor of it (for error messages).

    Never raises: only the object's true type and plain attribute lookups are consulted (an
    object's ``__array__`` is never called: it may be slow or raise).
    """
    qual = short_type_name(obj)
    claimed = claimed_class(obj)
    if claimed is not None:
        return f"is a {qual} that claims to be a {claimed.__module__}.{claimed.__qualname__} (its __class__ says so), not a real array, tensor or torch.nn.Module"
    if obj is None:
        return "is None, not an array or tensor"
    if issubclass(type(obj), (list, tuple)):
        return f"is a {qual}, not an array or tensor; convert it with np.asarray(...) or torch.tensor(...)"
    if issubclass(type(obj), (bool, int, float, complex)):
        return f"is a Python {qual}, not an array or tensor; wrap it with torch.tensor(...) or np.asarray(...)"
    if is_optimizer(obj):
        return f"is a {qual} (an optimizer); inspect its model or its state tensors instead"
    if has_attribute(obj, "to_numpy"):
        return f"is a {qual}, not an array or tensor; convert it with .to_numpy()"
    if has_attribute(obj, "__array__"):
        return f"is a {qual}, not an array or tensor; convert it with np.asarray(...)"
    return f"is a {qual}, not an array, tensor or torch.nn.Module"
