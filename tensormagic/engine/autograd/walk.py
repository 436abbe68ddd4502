"""Walking the live autograd graph behind some tensors into a :class:`~.graph.GraphInfo`.

The walk reads the graph objects once and gives plain data (nodes, edges, names, cell lines,
modules, saved bytes: :mod:`.graph`) plus the live node objects and leaves the caller needs for
a moment (:class:`Walk`).

:func:`walk_graph` visits the graph iteratively (no recursion, so any size works), with the
garbage collector paused (a 100,000-node walk would otherwise trigger full collections of the
whole heap).  It never *unpacks* a saved tensor: it reads ``SavedTensor.data`` of the
``_raw_saved_*`` attributes, which runs no saved-tensor hook (checkpointing, offloading) and
cannot recompute anything.  It notes what in the graph is user code (custom
``autograd.Function`` backwards, module backward hooks, saved-tensor hooks), so that the magic
never runs an extra pass that would run it again.  Chains deeper than
:data:`~tensormagic.engine.autograd.keeper.KEEP_FROM` are handed to the keeper for a safe teardown.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any

import torch

from tensormagic.engine.autograd import keeper
from tensormagic.engine.autograd.graph import GraphInfo, find_repeats, node_signatures, topological_order
from tensormagic.engine.autograd.lines import Lines
from tensormagic.engine.autograd.modules import ModuleTable
from tensormagic.engine.autograd.nodes import plain_nodes

#: Nodes visited at most; a bigger graph is cut there and says so.
MAX_NODES = 200_000
#: Saved-tensor attributes read at most per walk (each costs a few microseconds the first time:
#: torch makes a Python object for the tensor); past that, saved bytes are a lower bound
#: (``GraphInfo.saved_unread`` counts the nodes not read).
MAX_SAVED_READS = 4_000

_RAW_SAVED: dict[type, tuple[str, ...]] = {}
_CUSTOM_WORDS = {
    "BackwardHookFunctionBackward": "module backward hooks (register_full_backward_hook)",
    "CheckpointFunctionBackward": "torch.utils.checkpoint (re-entrant: its backward runs the forward again)",
}


@dataclass(kw_only=True)
class Walk:
    """A walk's plain result plus the live objects the caller needs for a moment (dropped after)."""

    info: GraphInfo
    node_objects: list[Any]
    leaves: dict[int, torch.Tensor]  # node id -> leaf tensor
    user_code: list[str]  # what in the graph is user code an extra backward pass would run again
    shape: tuple[Any, ...] = ()  # the graph's structure (node kinds and inputs, in visit order)
    reused: bool = False  # a light walk that reuses an earlier full walk's plain result

    def node_index(self) -> dict[int, int]:
        """id(node object) -> node id (valid while :attr:`node_objects` is alive)."""
        return node_index(self.node_objects)


def node_index(objects: Sequence[Any]) -> dict[int, int]:
    """id(node object) -> its place in ``objects`` (valid while they are alive)."""
    return dict(zip(map(id, objects), count()))


def keep_if_deep(objects: Sequence[Any], info: GraphInfo) -> None:
    """Hand a walk's node objects to the keeper, outputs first, when its graph is deep enough to
    need a safe teardown (see :mod:`.keeper`)."""
    if info.depth >= keeper.KEEP_FROM:
        keeper.keep(list(map(objects.__getitem__, info.order)))


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a moment (as it was before, afterwards)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def node_name(node: Any) -> str:
    """``MulBackward0``, ``AccumulateGrad``, or a custom Function's backward name."""
    name = type(node).__name__
    return name if name != "BackwardCFunction" else str(getattr(node, "name", lambda: name)())


def _raw_saved(node: Any) -> tuple[str, ...]:
    kind = type(node)
    attrs = _RAW_SAVED.get(kind)
    if attrs is None:
        attrs = tuple(a for a in dir(kind) if a.startswith("_raw_saved_"))
        _RAW_SAVED[kind] = attrs
    return attrs


def _storage_key(t: torch.Tensor) -> tuple[Any, int, int] | None:
    try:
        s = t.untyped_storage()
        return (t.device, s.data_ptr(), s.nbytes())
    except Exception:  # noqa: BLE001 - sparse, nested, fake, wrapper subclasses: logical size
        return None


def _logical_bytes(t: torch.Tensor) -> int:
    try:
        return int(t.numel() * t.element_size())
    except Exception:  # noqa: BLE001 - nested tensors and exotic subclasses
        return 0


def _is_custom(node: Any) -> bool:
    return isinstance(node, torch.autograd.function.BackwardCFunction)


def walk_graph(
    roots: Sequence[Any],
    names: Mapping[int, str],
    grad_fn_names: Mapping[int, str] | None = None,
    *,
    lines: Lines | None = None,
    leaf_lines: Mapping[str, int] | None = None,
    source_lines: Sequence[str] = (),
    saved: bool = True,
    first_seq: int | None = None,
    max_nodes: int = MAX_NODES,
    modules: ModuleTable | None = None,
) -> Walk:
    """Visit the graph from ``roots`` (grad_fn nodes), iteratively.

    ``names`` maps id(tensor) -> name for the cell's tensors (leaves and saved inputs are named
    by it); ``grad_fn_names`` maps id(grad_fn) -> name (keep those grad_fn objects alive).
    ``lines`` gives each op's cell line, ``leaf_lines`` a name's assignment line; nodes numbered
    below ``first_seq`` were made before the cell; ``modules`` says which module call made a node.
    """
    with gc_paused():
        walk = _walk(roots, names, grad_fn_names or {}, lines, leaf_lines or {}, source_lines, saved, first_seq, max_nodes, modules)
    keep_if_deep(walk.node_objects, walk.info)
    return walk


@dataclass(slots=True)
class _Kind:
    """What the walk needs to know of one node type (computed once per type)."""

    op: str
    leaf: bool
    custom: str | None  # the words for user code, for a custom Function's backward
    saved: tuple[str, ...]  # its _raw_saved_* attributes


_KINDS: dict[type, _Kind] = {}


def _kind(obj: Any) -> _Kind:
    kind = _KINDS.get(type(obj))
    if kind is None:
        op = node_name(obj)
        custom = None
        if _is_custom(obj):
            custom = _CUSTOM_WORDS.get(op, f"{op} (a custom autograd.Function: its backward is your Python code)")
        kind = _Kind(op=op, leaf=op == "AccumulateGrad", custom=custom, saved=_raw_saved(obj))
        if not _is_custom(obj):  # a custom Function's name() can differ per instance
            _KINDS[type(obj)] = kind
    return kind


_HOOKED = "saved-tensor hooks (checkpointing, offloading or your own saved_tensors_hooks)"


def _walk(
    roots: Sequence[Any],
    names: Mapping[int, str],
    grad_fn_names: Mapping[int, str],
    lines: Lines | None,
    leaf_lines: Mapping[str, int],
    source_lines: Sequence[str],
    saved: bool,
    first_seq: int | None,
    max_nodes: int,
    modules: ModuleTable | None = None,
) -> Walk:
    index: dict[int, int] = {}
    objects: list[Any] = []
    kinds: list[_Kind] = []
    inputs: list[list[int]] = []
    leaves: dict[int, torch.Tensor] = {}
    storages: dict[Any, int] = {}
    saved_at: dict[int, tuple[int, list[str]]] = {}  # node id -> (bytes, names of the cell's tensors)
    loose_bytes = 0
    hooked = 0
    user_code: dict[str, None] = {}
    truncated = False
    root_ids: list[int] = []
    stack: list[int] = []
    edges: list[list[int]] = []  # [node, input], in the order the walk finds them
    known = _KINDS
    reads_left = MAX_SAVED_READS
    unread = 0
    for r in roots:
        if r is None:
            continue
        if id(r) not in index:
            index[id(r)] = len(objects)
            objects.append(r)
            kinds.append(_kind(r))
            inputs.append([])
            stack.append(index[id(r)])
        root_ids.append(index[id(r)])
    while stack:
        i = stack.pop()
        obj = objects[i]
        kind = kinds[i]
        if kind.leaf:
            variable = getattr(obj, "variable", None)
            if isinstance(variable, torch.Tensor):
                leaves[i] = variable
        elif kind.custom is not None:
            user_code[kind.custom] = None
        if not kind.saved or not saved:
            pass
        elif reads_left <= 0:
            unread += 1
        else:
            reads_left -= len(kind.saved)
            nbytes = 0
            seen_names: list[str] = []
            for attr in kind.saved:
                try:
                    value = getattr(obj, attr)
                except Exception:  # noqa: BLE001 - freed, or not readable on this node
                    continue
                for st in value if isinstance(value, (tuple, list)) else (value,):
                    try:
                        if st.unpack_hook is not None:
                            hooked += 1
                            user_code[_HOOKED] = None
                            continue
                        t = st.data
                    except Exception:  # noqa: BLE001 - not a SavedTensor after all
                        continue
                    if t is None:
                        continue  # released by a backward that did not retain the graph
                    name = names.get(id(t))
                    if name is not None and name not in seen_names:
                        seen_names.append(name)
                    key = _storage_key(t)
                    if key is None:
                        size = _logical_bytes(t)
                        loose_bytes += size
                        nbytes += size
                    elif key not in storages:
                        storages[key] = key[2]
                        nbytes += key[2]
            if nbytes or seen_names:
                saved_at[i] = (nbytes, seen_names)
        try:
            nexts = obj.next_functions
        except Exception:  # noqa: BLE001
            continue
        ins = inputs[i]
        for nxt, _ in nexts:
            if nxt is None:
                continue
            nid = id(nxt)
            j = index.get(nid)
            if j is None:
                j = len(objects)
                if j >= max_nodes:
                    truncated = True
                    continue
                index[nid] = j
                objects.append(nxt)
                kinds.append(known.get(type(nxt)) or _kind(nxt))
                inputs.append([])
                stack.append(j)
            ins.append(j)
            edges.append([i, j])
    nodes, unknown = plain_nodes(objects, kinds, inputs, leaves, saved_at, names, grad_fn_names, lines, leaf_lines, source_lines, first_seq, modules)
    shape = _structure(kinds, inputs, leaves)
    order, depth = topological_order(inputs, root_ids)
    info = GraphInfo(
        nodes=nodes,
        edges=edges,
        roots=root_ids,
        order=order,
        repeats=find_repeats(node_signatures(nodes, order), [node.op for node in map(nodes.__getitem__, order)]),
        saved_bytes=sum(storages.values()) + loose_bytes,
        saved_under_hooks=hooked,
        saved_unread=unread,
        truncated=truncated,
        depth=depth,
        module_unknown=unknown,
    )
    return Walk(info=info, node_objects=objects, leaves=leaves, user_code=list(user_code), shape=shape)


def _structure(kinds: list[Any], inputs: list[list[int]], leaves: dict[int, torch.Tensor]) -> tuple[Any, ...]:
    """What makes two walks the same graph: node kinds, edges and leaf tensors."""
    return (list(map(id, kinds)), inputs, [id(t) for t in leaves.values()], list(leaves))


def light_walk(roots: Sequence[Any], max_nodes: int = MAX_NODES) -> tuple[list[Any], dict[int, torch.Tensor], tuple[Any, ...]]:
    """Only the node objects, the leaves and the structure of the graph (no names, lines, saved
    bytes or saved-tensor hooks): how the recorder checks that a call of a training loop has the
    same graph as a call it walked in full, whose plain result it then reuses."""
    index: dict[int, int] = {}
    objects: list[Any] = []
    kinds: list[Any] = []
    inputs: list[list[int]] = []
    leaves: dict[int, torch.Tensor] = {}
    known = _KINDS
    stack: list[int] = []
    was = gc.isenabled()
    gc.disable()
    try:
        for r in roots:
            if r is not None and id(r) not in index:
                index[id(r)] = len(objects)
                objects.append(r)
                kinds.append(known.get(type(r)) or _kind(r))
                inputs.append([])
                stack.append(index[id(r)])
        while stack:
            i = stack.pop()
            obj = objects[i]
            if kinds[i].leaf:
                variable = getattr(obj, "variable", None)
                if isinstance(variable, torch.Tensor):
                    leaves[i] = variable
            try:
                nexts = obj.next_functions
            except Exception:  # noqa: BLE001
                continue
            ins = inputs[i]
            for nxt, _ in nexts:
                if nxt is None:
                    continue
                j = index.get(id(nxt))
                if j is None:
                    if len(objects) >= max_nodes:
                        continue
                    j = len(objects)
                    index[id(nxt)] = j
                    objects.append(nxt)
                    kinds.append(known.get(type(nxt)) or _kind(nxt))
                    inputs.append([])
                    stack.append(j)
                ins.append(j)
    finally:
        if was:
            gc.enable()
    return objects, leaves, _structure(kinds, inputs, leaves)


__all__ = ["MAX_NODES", "MAX_SAVED_READS", "Walk", "gc_paused", "keep_if_deep", "light_walk", "node_index", "node_name", "walk_graph"]
