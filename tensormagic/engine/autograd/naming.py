"""Tensor -> the names a cell knows it by, resolved from the names the cell mentions.

A backward call needs names at once (to hook the cell's named intermediates before their
gradient flows), so :meth:`CellNames.for_call` looks up only the names the cell's source
mentions: its cost depends on the cell, not on the namespace.  :meth:`CellNames.final` runs once
after the cell and also names what is left by one scan of the namespace.

One tensor can have several names (``w2 = w``; ``p`` left by ``for p in model.parameters()``;
``model.0.weight`` and ``layer.weight`` after ``layer = model[0]``): every name is kept, the one
the cell uses most plainly first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tensormagic.engine.autograd.source import CellSource

#: Items of a list, tuple or dict the cell mentions that are named (``params[3]``) at most.
MAX_CONTAINER = 10_000
#: Parameters named per module at most.
MAX_PARAMETERS = 100_000


@dataclass(kw_only=True)
class Names:
    """id(tensor) -> every name, the primary one first; id(grad_fn) -> the names of its output."""

    tensors: dict[int, list[str]] = field(default_factory=dict)
    grad_fns: dict[int, str] = field(default_factory=dict)
    objects: dict[int, torch.Tensor] = field(default_factory=dict)  # id -> tensor, while this lives
    keep: list[Any] = field(default_factory=list)  # grad_fn objects, so their ids stay valid

    def primary(self) -> dict[int, str]:
        """id(tensor) -> its primary name."""
        return {k: v[0] for k, v in self.tensors.items()}

    def name(self, t: Any) -> str | None:
        got = self.tensors.get(id(t))
        return got[0] if got else None

    def aliases(self, t: Any) -> list[str]:
        got = self.tensors.get(id(t))
        return got[1:] if got else []

    def add(self, name: str, t: torch.Tensor) -> None:
        key = id(t)
        got = self.tensors.get(key)
        if got is None:
            self.tensors[key] = [name]
            self.objects[key] = t
        elif name not in got:
            got.append(name)


def _parameters(prefix: str, module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    out: list[tuple[str, torch.Tensor]] = []
    try:
        for pname, p in module.named_parameters(remove_duplicate=False):
            out.append((f"{prefix}.{pname}", p))
            if len(out) >= MAX_PARAMETERS:
                break
    except Exception:  # noqa: BLE001 - a half-built module: its parameters stay unnamed
        pass
    return out


class CellNames:
    """Names for one cell run (see the module docstring)."""

    def __init__(self, namespace: Mapping[str, Any], cell: CellSource, hidden: Iterable[str]) -> None:
        self.namespace = namespace
        self.hidden = set(hidden)
        self.cell = cell
        loops = cell.loop_targets
        mentioned = [n for n in dict.fromkeys([*cell.assigned, *sorted(cell.loaded)]) if not n.startswith("_") and n not in self.hidden]
        # plain names the cell binds or reads first; loop variables (an alias of the last item) last
        self.mentioned = [n for n in mentioned if n not in loops] + [n for n in mentioned if n in loops]
        self._params: dict[int, list[tuple[str, torch.Tensor]]] = {}

    def _module_parameters(self, name: str, module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
        got = self._params.get(id(module))
        if got is None or (got and not got[0][0].startswith(f"{name}.")):
            got = _parameters(name, module)
            self._params[id(module)] = got
        return got

    def _add_object(self, names: Names, name: str, obj: Any, modules: list[tuple[str, torch.nn.Module]], items: list[tuple[str, Any]]) -> None:
        if isinstance(obj, torch.Tensor):
            names.add(name, obj)
            if obj.grad_fn is not None:
                gf = obj.grad_fn
                names.keep.append(gf)
                prev = names.grad_fns.get(id(gf))
                names.grad_fns[id(gf)] = name if prev is None else f"{prev}, {name}"
        elif isinstance(obj, torch.nn.Module):
            modules.append((name, obj))
        elif isinstance(obj, (list, tuple)) and 0 < len(obj) <= MAX_CONTAINER:
            items += [(f"{name}[{k}]", v) for k, v in enumerate(obj)]
        elif isinstance(obj, dict) and 0 < len(obj) <= MAX_CONTAINER:
            items += [(f"{name}[{k!r}]", v) for k, v in obj.items() if isinstance(k, (str, int))]

    def _resolve(self, pairs: Iterable[tuple[str, Any]]) -> Names:
        names = Names()
        modules: list[tuple[str, torch.nn.Module]] = []
        items: list[tuple[str, Any]] = []
        loops: list[tuple[str, Any]] = []
        for name, obj in pairs:
            if name in self.cell.loop_targets:
                loops.append((name, obj))  # the last item of a loop: an alias, named after the rest
            else:
                self._add_object(names, name, obj, modules, items)
        for name, module in modules:
            for pname, p in self._module_parameters(name, module):
                names.add(pname, p)
        for name, item in items:
            if isinstance(item, torch.Tensor):
                names.add(name, item)
            elif isinstance(item, torch.nn.Module):
                for pname, p in _parameters(name, item):
                    names.add(pname, p)
        for name, obj in loops:
            self._add_object(names, name, obj, modules, items)
        return names

    def for_call(self, full: bool = True) -> Names:
        """Names from what the cell mentions only (cheap: done at every backward call); with
        ``full=False`` only the tensors it names directly (not module parameters or items)."""
        ns = self.namespace
        if full:
            return self._resolve((n, ns[n]) for n in self.mentioned if n in ns)
        names = Names()
        for n in self.mentioned:
            obj = ns.get(n)
            if isinstance(obj, torch.Tensor):
                names.add(n, obj)
                gf = obj.grad_fn
                if gf is not None:
                    names.keep.append(gf)
                    prev = names.grad_fns.get(id(gf))
                    names.grad_fns[id(gf)] = n if prev is None else f"{prev}, {n}"
        return names

    def final(self, wanted: Iterable[int] = ()) -> Names:
        """Names for the report: what the cell mentions, then one scan of the namespace for the
        tensors in ``wanted`` (ids) that are still unnamed."""
        names = self.for_call()
        missing = {k for k in wanted if k not in names.tensors}
        if missing:
            ns = self.namespace
            mentioned = set(self.mentioned)
            others = [(n, v) for n, v in list(ns.items()) if n not in mentioned and not n.startswith("_") and n not in self.hidden and isinstance(v, (torch.Tensor, torch.nn.Module, list, tuple))]
            extra = self._resolve(others)
            for key in missing:
                for n in extra.tensors.get(key, []):
                    names.add(n, extra.objects[key])
        return names


__all__ = ["CellNames", "Names"]
