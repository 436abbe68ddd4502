"""Finding the arrays, tensors and modules in a namespace."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tensormagic.engine.naming import is_array, short_type_name

#: Names a notebook namespace holds that are never the user's data.
HIDDEN_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open"})


def is_inspectable(obj: Any) -> bool:
    """Arrays, tensors and ``torch.nn.Module`` instances."""
    return is_array(obj) or isinstance(obj, torch.nn.Module)


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


def named_arrays(namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset(), include_module_tensors: bool = True) -> list[NamedObject]:
    """Every array and tensor in ``namespace``; module parameters and buffers as ``model.fc.weight``."""
    found: list[NamedObject] = []
    for name in user_names(namespace, hidden):
        obj = namespace[name]
        if is_array(obj):
            found.append(NamedObject(name, obj))
        elif include_module_tensors and isinstance(obj, torch.nn.Module):
            for pname, p in obj.named_parameters(remove_duplicate=False):
                found.append(NamedObject(f"{name}.{pname}", p, name))
            for bname, buf in obj.named_buffers(remove_duplicate=False):
                if buf is not None:
                    found.append(NamedObject(f"{name}.{bname}", buf, name))
    return found


def suggest(name: str, namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Names close to ``name``, inspectable ones first."""
    names = list(user_names(namespace, hidden))
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return sorted(close, key=lambda n: not is_inspectable(namespace[n]))[:3]


def describe_non_array(obj: Any) -> str:
    """What an object is and how to make an array or tensor of it (for error messages)."""
    qual = short_type_name(obj)
    if obj is None:
        return "is None, not an array or tensor"
    if isinstance(obj, (list, tuple)):
        return f"is a {qual}, not an array or tensor; convert it with np.asarray(...) or torch.tensor(...)"
    if isinstance(obj, (bool, int, float, complex)):
        return f"is a Python {qual}, not an array or tensor; wrap it with torch.tensor(...) or np.asarray(...)"
    if hasattr(obj, "to_numpy"):
        return f"is a {qual}, not an array or tensor; convert it with .to_numpy()"
    if hasattr(obj, "__array__"):
        return f"is a {qual}, not an array or tensor; convert it with np.asarray(...)"
    if isinstance(obj, torch.optim.Optimizer):
        return f"is a {qual} (an optimizer); inspect its model or its state tensors instead"
    return f"is a {qual}, not an array, tensor or torch.nn.Module"
