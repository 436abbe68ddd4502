"""After the cell: what a training loop's last call of each output left to settle.

A loop's later calls are recorded without reading their gradients or walking their graphs (see
:mod:`.repeat` and ``Recorder._walk``): :func:`settle` reads the gradients the last call left to
read, and makes sure the graph it shares with an earlier call is its own.
"""

from __future__ import annotations

from tensormagic.engine.autograd.recorder import Recorder
from tensormagic.engine.autograd.records import CallRecord, leaf_node
from tensormagic.engine.autograd.walk import light_walk

#: A loop's last graph is checked up to this many nodes (a bigger one keeps the graph of the call
#: it shares; a light walk's wrappers of a chain this long are freed safely without the keeper).
RECHECK_NODES = 5_000


def settle(recorder: Recorder, record: CallRecord) -> None:
    """Read the gradients a later call of a loop left to read (where ``.grad`` changed since,
    take the most recent earlier call of the same output that has one); and where the output is
    still alive, walk its graph lightly now, and in full when it is not the graph of the call it
    shares (another op at the same line, say): nodes made while the lines and modules were not
    recorded (a loop's repeated steps) then have none."""
    calls = recorder.calls
    position = next((i for i in range(len(calls) - 1, -1, -1) if calls[i] is record), 0)
    for key in record.read_pending():
        for older in reversed(calls[:position]):
            if older.group == record.group and older.grads.get(key) is not None:
                record.grads[key] = older.grads[key]
                record.taken_from[key] = older.index
                break
    entry = recorder.walked.get(record.group)
    outputs = [t for t in (r.ref() if r.ref is not None else None for r in record.roots) if t is not None and t.grad_fn is not None]
    if record.graph_from == record.index or entry is None or not outputs or len(outputs) != len(record.roots):
        return
    nodes = [leaf_node(t) for t in outputs]
    objects, _, shape = light_walk(nodes, max_nodes=RECHECK_NODES)
    if len(objects) < RECHECK_NODES and shape != entry[0].shape:
        walk = recorder.full_walk(nodes, recorder.names.for_call())
        record.graph, record.user_code, record.graph_from = walk.info, walk.user_code, record.index


__all__ = ["RECHECK_NODES", "settle"]
