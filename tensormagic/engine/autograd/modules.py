"""Which module call made which graph node: the sequence-number span of every module call.

Every node torch records gets the next autograd *sequence number* (per thread).  While the cell
runs, :class:`ModuleCalls` registers two global module hooks (``register_module_forward_pre_hook``
and ``register_module_forward_hook(always_call=True)``) that note the sequence number at which
each call of a module started and ended; a node numbered within a call was made during it, and
the innermost such call is the module that made it.  The hooks hold no tensor, change no argument
or result and run no user code; they are removed when the cell ends.

Cost: a module call with global hooks takes the slow path of ``Module.__call__`` (about 4 µs
more per call).  A training loop that repeats one graph does not need them past its second
step (the recorder reuses the first step's walk, modules included), so the recorder
:meth:`pauses <ModuleCalls.pause>` them at the first call that reuses a walk and
:meth:`resumes <ModuleCalls.resume>` them at a call with a new graph.  Nodes made while the hooks
were off are *unknown* (never guessed): :meth:`ModuleCalls.table` says so per node.

Names come after the cell (:func:`module_infos`): the first path under which a module the cell
mentions holds it (``model.layer1.0``, ``named_modules``), else under any module of the
namespace, else its class name inside the module that called it.
"""

from __future__ import annotations

import bisect
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch

from tensormagic.engine.autograd.lines import next_sequence_nr

#: Module calls recorded per cell at most; past that the hooks are removed (and nodes made
#: later are unknown).
MAX_CALLS = 50_000
#: Modules looked at when naming the modules that were called, at most.
MAX_NAMED = 200_000

#: What :meth:`ModuleTable.owner_of` says of a node made outside any module call, or while the
#: hooks were off.
OUTSIDE = -1
UNKNOWN = -2


@dataclass(slots=True, kw_only=True)
class ModuleInfo:
    """A module that made nodes of the graph (or holds a leaf of it)."""

    name: str  # ``model.layer1.0``; the class name when no variable holds it
    type: str  # ``Bottleneck``
    parent: int | None = None  # the module it sits in (by name, else the one that called it)
    named: bool = True  # ``name`` is a path from a variable of the namespace


class ModuleTable:
    """Sequence number -> the innermost module call that was running (bisect over breakpoints)."""

    def __init__(self, points: list[int], owners: list[int], params: dict[int, int]) -> None:
        self.points = points  # breakpoints, ascending
        self.owners = owners  # module index (or OUTSIDE / UNKNOWN) from each breakpoint on
        self.params = params  # id(parameter) -> index of the module that holds it

    @property
    def empty(self) -> bool:
        """No module call was recorded and the hooks never paused: every node is OUTSIDE."""
        return all(o == OUTSIDE for o in self.owners)

    def owner_of(self, seq: int) -> int:
        """The module index that made node ``seq``, or OUTSIDE / UNKNOWN."""
        i = bisect.bisect_right(self.points, seq) - 1
        return self.owners[i] if i >= 0 else UNKNOWN


_CALL_IMPL = torch.nn.Module._call_impl.__code__
#: Inside a torch.compile trace the hooks note nothing (torch.compiler.is_compiling: torch >= 2.3).
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


class ModuleCalls:
    """The module calls of one cell, as sequence-number breakpoints (see the module docstring).

    The hooks keep :attr:`points` / :attr:`owners` as they go: a call's start makes its module
    the owner of the nodes from there on, its end gives them back to the module that called it
    (or to no module), a pause makes them unknown.  Sequence numbers only grow in one thread, so
    the lists stay sorted without sorting.
    """

    def __init__(self) -> None:
        self.modules: list[Any] = []  # index -> weakref to the module (or the module, if it has none)
        self.types: list[str] = []
        self.callers: list[int | None] = []  # index -> the module that was running at its first call
        self.points: list[int] = []
        self.owners: list[int] = []
        self.calls = 0
        self.full = False  # MAX_CALLS reached: the hooks are off for the rest of the cell
        self._index: dict[int, int] = {}
        self._stack: list[int] = []  # module indices of the calls running now, innermost last
        self._handles: list[Any] = []
        self._thread = threading.get_ident()
        self._params: tuple[int, dict[int, int]] = (-1, {})

    # -- on and off ------------------------------------------------------------------------------

    @property
    def on(self) -> bool:
        """The hooks are registered now."""
        return bool(self._handles)

    def resume(self) -> None:
        """Record module calls from now on (registers the two global hooks).  The calls already
        running (a backward inside a module's forward) are read from the Python stack."""
        if self._handles or self.full:
            return
        from torch.nn.modules import module as nn_module

        pre = nn_module.register_module_forward_pre_hook(self._pre)
        try:
            post = nn_module.register_module_forward_hook(self._post, always_call=True)
        except TypeError:  # an older torch: a forward that raises leaves its call open
            post = nn_module.register_module_forward_hook(self._post)
        self._handles = [pre, post]
        self._stack = [self._key(m) for m in _running_modules()]
        self._mark(next_sequence_nr(), self._stack[-1] if self._stack else OUTSIDE)

    def pause(self) -> None:
        """Stop recording (removes the hooks): nodes made from now on are unknown."""
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._stack = []
        self._mark(next_sequence_nr(), UNKNOWN)

    stop = pause

    # -- the hooks (as cheap as they can be: they run at every module call) -----------------------

    def _pre(self, module: Any, args: Any) -> None:
        if threading.get_ident() != self._thread or _compiling():
            return
        k = self._key(module)
        self._stack.append(k)
        self._mark(next_sequence_nr(), k)
        self.calls += 1
        if self.calls >= MAX_CALLS:
            self.full = True

    def _post(self, module: Any, args: Any, output: Any) -> None:
        stack = self._stack
        if not stack or threading.get_ident() != self._thread or self._index.get(id(module)) != stack[-1]:
            return  # another thread, or a call that started while the hooks were off
        stack.pop()
        self._mark(next_sequence_nr(), stack[-1] if stack else OUTSIDE)
        if self.full and not stack:
            self.pause()

    def _mark(self, seq: int, owner: int) -> None:
        points, owners = self.points, self.owners
        if points and points[-1] >= seq:
            owners[-1] = owner  # no node was made since the last mark
            if len(owners) > 1 and owners[-2] == owner:
                points.pop()
                owners.pop()
        elif not owners or owners[-1] != owner:
            points.append(seq)
            owners.append(owner)

    def _key(self, module: Any) -> int:
        k = self._index.get(id(module))
        if k is not None and _alive(self.modules[k], module):
            return k
        k = len(self.modules)
        try:
            ref: Any = weakref.ref(module)
        except TypeError:
            ref = module
        self.modules.append(ref)
        self.types.append(type(module).__name__)
        self.callers.append(self._stack[-1] if self._stack else None)
        self._index[id(module)] = k
        return k

    # -- after a forward: node -> module -------------------------------------------------------

    def module(self, k: int) -> Any:
        """Module ``k`` (None once freed)."""
        ref = self.modules[k]
        return ref() if isinstance(ref, weakref.ref) else ref

    def table(self) -> ModuleTable:
        """The breakpoints so far (live lists) and the parameters of the modules seen."""
        if self._params[0] != len(self.modules):
            out: dict[int, int] = {}
            for k in range(len(self.modules)):
                params = getattr(self.module(k), "_parameters", None)
                if isinstance(params, dict):
                    for p in params.values():
                        if p is not None:
                            out.setdefault(id(p), k)
            self._params = (len(self.modules), out)
        return ModuleTable(self.points, self.owners, self._params[1])


def _alive(ref: Any, module: Any) -> bool:
    """The module registered under this id is still this one (not another that took its id)."""
    return (ref() if isinstance(ref, weakref.ref) else ref) is module


def _running_modules() -> list[Any]:
    """The modules whose forward is running now, outermost first (from the Python stack)."""
    found = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _CALL_IMPL:
            m = frame.f_locals.get("self")
            if isinstance(m, torch.nn.Module):
                found.append(m)
        frame = frame.f_back
    return found[::-1]


def _paths(namespace: Mapping[str, Any], mentioned: Iterable[str], wanted: dict[int, int], hidden: set[str]) -> dict[int, str]:
    """Module index -> its first path under the modules the cell mentions, then the namespace."""
    found: dict[int, str] = {}
    seen = 0
    mentioned = list(mentioned)
    first = set(mentioned)
    rest = _other_names(namespace, first)  # only looked at when the mentioned ones leave some unnamed
    for group in (mentioned, rest):
        for name in group:
            if name.startswith("_") or name in hidden:
                continue
            obj = namespace.get(name)
            roots: list[tuple[str, Any]] = []
            if isinstance(obj, torch.nn.Module):
                roots = [(name, obj)]
            elif isinstance(obj, (list, tuple)) and len(obj) <= 1_000:
                roots = [(f"{name}[{i}]", v) for i, v in enumerate(obj) if isinstance(v, torch.nn.Module)]
            elif isinstance(obj, dict) and len(obj) <= 1_000:
                roots = [(f"{name}[{k!r}]", v) for k, v in obj.items() if isinstance(v, torch.nn.Module) and isinstance(k, (str, int))]
            for prefix, root in roots:
                try:
                    for path, m in root.named_modules(prefix=prefix):
                        seen += 1
                        k = wanted.get(id(m))
                        if k is not None and k not in found:
                            found[k] = path
                            if len(found) == len(wanted):
                                return found
                        if seen >= MAX_NAMED:
                            return found
                except Exception:  # noqa: BLE001 - a half-built module: its children stay unnamed
                    continue
    return found


def _other_names(namespace: Mapping[str, Any], skip: set[str]) -> Iterator[str]:
    """The namespace's names not in ``skip``, listed only once the first is asked for."""
    for name in list(namespace):
        if name not in skip:
            yield name


def module_infos(calls: ModuleCalls, namespace: Mapping[str, Any], mentioned: Iterable[str], hidden: Iterable[str] = ()) -> list[ModuleInfo]:
    """One :class:`ModuleInfo` per module index of ``calls`` (after the cell)."""
    wanted = {}
    for k in range(len(calls.modules)):
        m = calls.module(k)
        if m is not None:
            wanted[id(m)] = k
    paths = _paths(namespace, mentioned, wanted, set(hidden))
    by_path = {p: k for k, p in paths.items()}
    infos: list[ModuleInfo] = []
    for k, kind in enumerate(calls.types):
        path = paths.get(k)
        parent = None
        if path is not None:
            head = path
            while parent is None and "." in head:
                head = head.rsplit(".", 1)[0]
                parent = by_path.get(head)
        if parent is None:
            parent = calls.callers[k]
        infos.append(ModuleInfo(name=path or kind, type=kind, parent=parent if parent != k else None, named=path is not None))
    # a caller chain can only point to earlier-registered modules, names to any: break cycles
    for k, info in enumerate(infos):
        seen = {k}
        p = info.parent
        while p is not None:
            if p in seen:
                info.parent = None
                break
            seen.add(p)
            p = infos[p].parent
    return infos


__all__ = ["OUTSIDE", "UNKNOWN", "ModuleCalls", "ModuleInfo", "ModuleTable", "module_infos"]
