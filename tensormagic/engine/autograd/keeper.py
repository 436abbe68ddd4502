"""Safe teardown of deep autograd graphs the walk has touched.

Reading ``grad_fn.next_functions`` gives every node a Python wrapper, and in torch 2.x a node
and its wrapper then live and die together: freeing a chain of wrapped nodes recurses once per
node through the wrappers' deallocators, and from about 50,000 chained nodes that overflows the
C stack (SIGSEGV) in whichever later cell frees the graph, even in plain Python.  Graphs without
wrappers are freed iteratively by torch itself.

So when a walk finds a chain deeper than :data:`KEEP_FROM` nodes, :func:`keep` holds the
wrappers itself.  Once nothing else holds a node (the user freed the graph), :func:`sweep`
drops the wrappers one at a time from the outputs towards the inputs: each drop frees one node,
whose inputs are still held here, so nothing recurses.  The glue sweeps after every cell; the
recorder sweeps before each backward call it sees.  Shallow graphs are never kept.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from itertools import compress
from operator import not_
from typing import Any

#: Chains at least this deep (nodes from an output down to an input) are kept for a safe teardown.
KEEP_FROM = 10_000

_kept: list[list[Any]] = []  # one list per walk, outputs first (a topological order)
_ids: set[int] = set()  # every node held, once (two walks of one graph share its nodes)


def keep(nodes_outputs_first: Sequence[Any]) -> None:
    """Hold the wrappers of one walk until the graph is freed (see the module docstring)."""
    ids = list(map(id, nodes_outputs_first))
    if _ids.isdisjoint(ids):  # the usual case: a graph no earlier walk kept
        fresh = list(nodes_outputs_first)
    else:
        kept = map(_ids.__contains__, ids)
        fresh = list(compress(nodes_outputs_first, map(not_, kept)))
        ids = list(map(id, fresh))
    if fresh:
        _ids.update(ids)
        _kept.append(fresh)


def held() -> int:
    """How many node wrappers are held right now."""
    return sum(sum(1 for n in nodes if n is not None) for nodes in _kept)


#: The references to a node that nobody else holds: the list slot, the caller's local name and
#: getrefcount's own argument (a node autograd still uses holds one more, to its own wrapper).
_ONLY_HERE = 3


def sweep() -> int:
    """Drop the wrappers of every graph that nothing else holds any more; the number dropped."""
    refs = sys.getrefcount
    discard = _ids.discard
    dropped = 0
    progress = True
    while progress:  # a walk's nodes may be freed only once another walk's (above them) are
        progress = False
        for nodes in list(_kept):
            first = next((n for n in nodes if n is not None), None)
            if first is not None and refs(first) > _ONLY_HERE:
                # everything below a live output is alive too: nothing to do for this walk (cheap)
                del first
                continue
            del first
            before = len(nodes) - nodes.count(None)
            left = 0
            for i in range(len(nodes)):
                node = nodes[i]  # (the next assignment lets go of the node before: nothing recurses)
                if node is None:
                    continue
                if refs(node) <= _ONLY_HERE:
                    nodes[i] = None
                    discard(id(node))
                else:
                    left += 1
            node = None
            if left < before:
                dropped += before - left
                progress = True
            if not left:
                _kept.remove(nodes)
            elif left < len(nodes):  # the rest still in use (a leaf's AccumulateGrad): keep those only
                nodes[:] = [n for n in nodes if n is not None]
    return dropped


__all__ = ["KEEP_FROM", "held", "keep", "sweep"]
