"""After the cell: what a training loop's last call of each output left to settle.

A loop's later calls are recorded without reading their gradients or walking their graphs (see
:mod:`.repeat` and ``Recorder._walk``): :func:`settle` reads the gradients the last call left to
read, and makes sure the graph it shares with an earlier call is its own.
"""

from __future__ import annotations

import weakref

from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.records import CallRecord, Target, leaf_node
from tensormagic.engine.autograd.walk import light_walk, node_index

#: A loop's last graph is checked up to this many nodes (a bigger one keeps the graph of the call
#: it shares; a light walk's wrappers of a chain this long are freed safely without the keeper).
RECHECK_NODES = 5_000


def settle(recorder: Recorder, record: CallRecord) -> None:
    """Read the gradients a later call of a loop left to read (where ``.grad`` changed since,
    take the most recent earlier call of the same output that has one); and where the output is
    still alive and as the call left it, walk its graph lightly now, and in full when it is not
    the graph of the call it shares (another op at the same line, say): nodes made while module
    calls were not recorded (a loop's repeated steps) then have no module."""
    calls = recorder.calls
    position = next((i for i in range(len(calls) - 1, -1, -1) if calls[i] is record), 0)
    for key in record.read_pending():
        for older in reversed(calls[:position]):
            if older.group == record.group and older.grads.get(key) is not None:
                record.grads[key] = older.grads[key]
                record.taken_from[key] = older.index
                break
    entry = recorder.walked.get(record.group)
    # (an output changed in place since its call has another grad_fn now: its graph is not the call's)
    outputs = [t for r, t in ((r, r.ref() if r.ref is not None else None) for r in record.roots) if t is not None and t.grad_fn is not None and t._version == r.version]
    if record.graph_from == record.index or entry is None or not outputs or len(outputs) != len(record.roots):
        return
    nodes = [leaf_node(t) for t in outputs]
    objects, _, shape = light_walk(nodes, max_nodes=RECHECK_NODES)
    if len(objects) >= RECHECK_NODES:
        return
    if shape != entry[0].shape:
        walk = recorder.full_walk(nodes, recorder.names.for_call())
        record.graph, record.user_code, record.graph_from = walk.info, walk.user_code, record.index
    _named_intermediates(recorder, record, node_index(objects))


def _named_intermediates(recorder: Recorder, record: CallRecord, index: dict[int, int]) -> None:
    """The tensors the cell names in the last call's graph (``out = model(x)`` made anew at each
    step) are targets too: the call was not hooked, so their gradient is said not recorded (never
    that the output does not depend on them).  ``index``: id(node object) -> node id."""
    roots = {r.key for r in record.roots}
    names = recorder.names.for_call(full=False)
    for key, t in names.objects.items():
        if key in record.targets or key in roots or t.grad_fn is None:
            continue
        nid = index.get(id(t.grad_fn))
        if nid is not None:
            record.targets[key] = Target(key=key, name=names.name(t), kind="intermediate", ref=weakref.ref(t), node=nid, retains_grad=bool(t.retains_grad))
            record.unhooked.add(key)
    record.checked = True


__all__ = ["RECHECK_NODES", "settle"]
