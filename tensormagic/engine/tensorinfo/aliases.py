"""Which other variables share an object's memory (or are the object)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tensormagic.engine.tensorinfo import memory
from tensormagic.engine.tensorinfo.alias_index import candidate_objects
from tensormagic.engine.tensorinfo.reports import Alias

#: Aliases listed at most for one object.
MAX_ALIASES = 50

#: Seconds of exact overlap checks per report (each is bounded by memory.EXACT_OVERLAP_WORK);
#: past it, overlapping byte ranges answer "may share memory".
EXACT_TIME_BUDGET = 0.5


def find_aliases(name: str, obj: Any, namespace: Mapping[str, Any], hidden: frozenset[str] | set[str] = frozenset()) -> list[Alias]:
    """Other variables of ``namespace`` whose memory overlaps ``obj``'s (or that are ``obj``),
    in namespace order; the candidates come from an index kept between calls
    (:mod:`.alias_index`), each checked exactly here."""
    target = memory.memory_region(obj)
    found: list[Alias] = []
    candidates = candidate_objects(namespace, hidden, obj)
    deadline = time.perf_counter() + EXACT_TIME_BUDGET  # for the exact checks, after the index
    for other_name, other in candidates:
        if other_name == name:
            continue
        r = memory.memory_region(other)
        if other is not obj and (target is None or r is None or r.space != target.space or r.hi <= target.lo or target.hi <= r.lo):
            continue
        rel = memory.relation(obj, other, target, r, exact=time.perf_counter() < deadline)
        if rel is not None:
            found.append(Alias(name=other_name, relation=rel[0], detail=rel[1]))
        if len(found) >= MAX_ALIASES:
            break
    return found
