"""The tensors a call's report gives gradients for: the leaves of its graph (each one's ``.grad``
tracked across the cell's calls) and the cell's named intermediates in it, and a leaf found
after a call that did not walk its graph."""

from __future__ import annotations

import weakref

from tensormagic.engine.autograd.naming import Names
from tensormagic.engine.autograd.records import CallRecord, LeafTrack, Target, state_of
from tensormagic.engine.autograd.summary import summarise
from tensormagic.engine.autograd.walk import Walk


def targets_of(walk: Walk, names: Names, root_ids: set[int], tracks: dict[int, LeafTrack], track_leaves: bool = True, was_none: set[int] | None = None, reuse: dict[int, Target] | None = None) -> dict[int, Target]:
    """The leaves of ``walk``'s graph and the cell's named intermediates in it; the leaves
    whose ``.grad`` is None now go into ``was_none``.  A call of a loop with the graph of the
    previous call (``reuse``) keeps its leaf targets.  ``tracks``: each leaf's ``.grad`` across
    the cell's calls, updated (with ``track_leaves``) as this call starts."""
    targets: dict[int, Target] = {}
    for node_id, leaf in walk.leaves.items():
        key = id(leaf)
        g = leaf.grad
        if g is None and was_none is not None:
            was_none.add(key)
        if track_leaves:
            track = tracks.get(key)
            if track is None or track.ref() is not leaf:  # a new leaf (perhaps at a freed one's id)
                tracks[key] = LeafTrack(name=names.name(leaf), ref=weakref.ref(leaf), before=summarise(g), had_grad=g is not None, calls=1)
            else:
                track.note(g)
        old = reuse.get(key) if reuse is not None else None
        targets[key] = old if old is not None and old.kind == "leaf" else Target(key=key, name=walk.info.nodes[node_id].name, kind="leaf", ref=weakref.ref(leaf), node=node_id, retains_grad=True)
    if names.objects:
        index = walk.node_index()
        for key, t in names.objects.items():
            if key in targets or key in root_ids or t.grad_fn is None:
                continue
            nid = index.get(id(t.grad_fn))
            if nid is not None:
                targets[key] = Target(key=key, name=names.name(t), kind="intermediate", ref=weakref.ref(t), node=nid, retains_grad=bool(t.retains_grad))
    return targets



def caught_after(record: CallRecord) -> bool:
    """After a call that reused a walk without walking: a named leaf the first graph lacked
    whose ``.grad`` the call changed is a target too (True: one was found, the graph changed)."""
    found = False
    for ref, state in record.watching:
        t = ref()
        if t is None:
            continue
        g = t.grad
        if state_of(g) != state and g is not None:
            key = id(t)
            record.targets[key] = Target(key=key, name=None, kind="leaf", ref=weakref.ref(t), node=-1, retains_grad=True)
            if state is None:
                record.was_none.add(key)
                record.pending[key] = (weakref.ref(g), g._version)
            found = True
    record.watching = []
    return found


__all__ = ["caught_after", "targets_of"]
