"""``engine.namespace.Snapshot``: which names a cell bound or rebound, compared block by block."""

from __future__ import annotations

import random

import pytest

from tensormagic.engine.namespace import Snapshot


@pytest.mark.parametrize("seed", range(40))
def test_rebound_names_are_those_bound_to_another_object(seed):
    rng = random.Random(seed)
    ns = {f"n{i}": object() for i in range(rng.randint(0, 1500))}
    snap = Snapshot(ns)
    before = dict(ns)
    for name in rng.sample(sorted(ns), min(len(ns), rng.randint(0, 6))):
        ns[name] = object()
    if ns and rng.random() < 0.3:
        del ns[rng.choice(sorted(ns))]
    for j in range(rng.randint(0, 3)):
        ns[f"new{j}"] = object()
    expected = [k for k in ns if k not in before or before[k] is not ns[k]]
    assert snap.rebound() == expected


def test_the_same_object_again_is_not_rebound():
    value = object()
    ns = {f"n{i}": object() for i in range(600)} | {"x": value}
    snap = Snapshot(ns)
    ns["x"] = value
    ns["n300"] = object()
    assert snap.rebound() == ["n300"]
