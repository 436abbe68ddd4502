"""DTensors and FSDP2 on real gloo process groups (2 and 4 ranks on 127.0.0.1), every rank checked
against DTensor's own truth: ``full_tensor()``, ``to_local()``, ``compute_local_shape_and_global_offset``.

Two launches in all (each rank a real InteractiveShell with the extension; the cells are in
:mod:`tests.distributed.programs`), many checks each.  Every launch is bounded (short process-group
timeout, the launcher kills what outlives it).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from tests.distributed.launcher import launch
from tests.distributed.programs import FOUR_RANKS, TWO_RANKS

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def two() -> list[dict[str, Any]]:
    return _checked(launch(2, TWO_RANKS))


@pytest.fixture(scope="module")
def four() -> list[dict[str, Any]]:
    return _checked(launch(4, FOUR_RANKS))


def _checked(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for o in outcomes:
        failed = [(i, c["error"], c["stdout"][-1500:]) for i, c in enumerate(o["cells"]) if not c["ok"]]
        assert not failed, f"rank {o['rank']}: {failed}"
    return outcomes


def _flat(values: Any) -> list[float]:
    if isinstance(values, list):
        return [x for v in values for x in _flat(v)]
    return [values]


def truth_stats(values: Any) -> dict[str, Any]:
    """min, max, mean, std (ddof=1) over the finite values, and counts, in plain Python."""
    flat = [float(v) for v in _flat(values)]
    finite = [v for v in flat if math.isfinite(v)]
    mean = math.fsum(finite) / len(finite) if finite else None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else None
    return {
        "count": len(flat), "min": min(finite, default=None), "max": max(finite, default=None), "mean": mean, "std": std,
        "nan": sum(math.isnan(v) for v in flat), "posinf": sum(v == math.inf for v in flat), "zeros": sum(v == 0 for v in flat),
    }


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def _check_layout(outcomes: list[dict[str, Any]]) -> None:
    """Every rank's sharding section against DTensor's truth, and every rank's view of every other rank."""
    world = len(outcomes)
    for o in outcomes:
        R, rank = o["results"], o["rank"]
        for name, report in R["reports"].items():
            truth = R["truth"][name]
            sh = report["sharding"]
            full_shape = _shape_of(truth["full"])
            for key in ("mesh_shape", "mesh_dim_names", "placements", "global_shape", "local_shape", "local_offset", "rank", "local_nbytes", "global_nbytes"):
                assert key in sh, (name, key)
            assert sh["rank"] == rank
            assert sh["global_shape"] == full_shape == report["shape"], name
            assert sh["local_shape"] == truth["local_shape"], name
            if truth["local"]:  # an empty list hides the sizes after its first 0
                assert sh["local_shape"] == _shape_of(truth["local"]), name
            assert sh["local_offset"] == truth["offset"], name
            itemsize = report["itemsize"]
            assert sh["local_nbytes"] == math.prod(truth["local_shape"]) * itemsize == report["nbytes"], name
            assert sh["global_nbytes"] == math.prod(full_shape) * itemsize, name
            assert sh["empty"] == (math.prod(truth["local_shape"]) == 0)
            assert len(sh["shards"]) == world
            for shard in sh["shards"]:  # this rank's listing of another rank's block is that rank's truth
                other = outcomes[shard["rank"]]["results"]["truth"][name]
                assert (shard["shape"], shard["offset"]) == (other["local_shape"], other["offset"]), (name, rank, shard)
            assert sh["empty_ranks"] == [r for r in range(world) if math.prod(outcomes[r]["results"]["truth"][name]["local_shape"]) == 0]


def _shape_of(values: Any) -> list[int]:
    shape: list[int] = []
    while isinstance(values, list):
        shape.append(len(values))
        if not values:
            break
        values = values[0]
    return shape


def _check_local_values(outcomes: list[dict[str, Any]]) -> None:
    for o in outcomes:
        R, rank = o["results"], o["rank"]
        for name, report in R["reports"].items():
            truth = R["truth"][name]
            stats = report["stats"]
            if math.prod(truth["local_shape"]) == 0:
                assert stats is None and "empty" in report["stats_note"], name
                continue
            partial = any(p.startswith("Partial") for p in report["sharding"]["placements"])
            assert stats["scope"] == ("partial" if partial else "local"), name
            assert f"rank {rank}" in stats["over"], stats["over"]
            if partial:
                assert "not the tensor's values" in stats["over"]
            else:
                assert stats["over"].startswith("local shard on rank"), stats["over"]
            want = truth_stats(truth["local"])
            for key in ("count", "nan", "posinf", "zeros"):
                assert stats[key] == want[key], (name, key)
            for key in ("min", "max", "mean", "std"):
                assert _close(stats[key], want[key]), (name, key, stats[key], want[key])


def _check_global(outcomes: list[dict[str, Any]]) -> None:
    for o in outcomes:
        R = o["results"]
        for name, stats in R["global"].items():
            assert isinstance(stats, dict), (name, stats)
            want = truth_stats(R["truth"][name]["full"])
            assert stats["scope"] == "global" and stats["exact"], name
            for key in ("count", "nan", "posinf", "zeros"):
                assert stats[key] == want[key], (name, key)
            for key in ("min", "max", "mean", "std"):
                assert _close(stats[key], want[key]), (name, key, stats[key], want[key])
            # one all_gather; a Partial placement adds the all_reduce of the local shard it needs
            partial = any(p.startswith("Partial") for p in R["reports"][name]["sharding"]["placements"])
            assert R["global_comms"][name] == ({"c10d.allreduce_": 1, "c10d.allgather_": 1} if partial else {"c10d.allgather_": 1}), name


def _check_subset(outcomes: list[dict[str, Any]]) -> None:
    world = len(outcomes)
    for o in outcomes:
        sub, rank = o["results"]["subset"], o["rank"]
        for alone in (0, world - 1):
            if rank == alone:
                msg = sub[f"alone{alone}"]
                assert isinstance(msg, str) and msg.startswith("UsageError: only 1 of") and "\n" not in msg, msg
                assert sub[f"alone{alone}_s"] < 3.0  # --timeout 1, not the process group's timeout
            assert sub[f"after{alone}"] == world  # a later collective succeeds: the group is usable
        assert sub["everyone"]["max"] == sub["everyone_again"]["max"] == truth_stats(o["results"]["truth"]["s0"]["full"])["max"]
        assert isinstance(sub["different"], str) and "different tensors" in sub["different"]
        assert sub["after_different"] == world


def test_two_ranks_layout_matches_dtensor(two: list[dict[str, Any]]) -> None:
    _check_layout(two)
    s0 = two[1]["results"]["reports"]["s0"]
    assert s0["sharding"]["placements"] == ["Shard(0)"] and s0["sharding"]["mesh_shape"] == [2]
    assert s0["stats"]["over"] == "local shard on rank 1 (rows 4-7)"
    assert two[0]["results"]["reports"]["rep"]["sharding"]["replication"] == 2.0
    assert two[0]["results"]["reports"]["par"]["sharding"]["placements"] == ["Partial(sum)"]
    assert two[0]["results"]["reports"]["uneven"]["sharding"]["uneven"] is True


def test_two_ranks_local_values_and_no_communication(two: list[dict[str, Any]]) -> None:
    _check_local_values(two)
    for o in two:
        assert o["results"]["default_comms"] == 0
        assert o["results"]["typed"]["comms"] == 0 and f"rank {o['rank']}" in o["results"]["typed"]["over"]


def test_two_ranks_global_statistics(two: list[dict[str, Any]]) -> None:
    _check_global(two)
    for o in two:  # the public API and the magic as typed give the same numbers
        R = o["results"]
        assert R["api_global"] == R["typed_global"] == R["global"]["s0"]
    ints = two[0]["results"]["global"]["ints"]
    assert (ints["min"], ints["max"]) == (2**60, 2**60 + 9)  # exact, not rounded through float64


def test_two_ranks_global_on_a_subset_errors_and_keeps_the_group(two: list[dict[str, Any]]) -> None:
    _check_subset(two)


def test_two_ranks_views_show_the_layout(two: list[dict[str, Any]]) -> None:
    for o in two:
        text, html = o["results"]["text"], o["results"]["html"]
        assert re.search(r"rows \\ columns\s+0-3\n[-\s]+\n0-3\s+r0\n4-7\s+r1", text["s0"]), text["s0"]
        assert "Partial(sum) of r0,r1" in text["par"]
        assert f"local (4, 4) on rank {o['rank']}" in text["s0"]
        assert "── Sharding" in text["cube"] and "dims 0-1 flattened" in text["cube"]
        svg = re.search(r"<svg[^>]*aria-label=\"([^\"]*)\"", html["s0"])
        assert svg is not None and "sharding" in svg.group(1)
        layout = {k: re.search(r"<svg[^>]*aria-label=\"[^\"]*sharding.*?</svg>", html[k], re.S) for k in ("par", "rep")}
        assert layout["par"] is not None and layout["rep"] is not None
        assert "stroke-dasharray" in layout["par"].group() and "stroke-dasharray" not in layout["rep"].group()  # Partial drawn apart from Replicate
        assert "<script" not in html["s0"]


def test_two_ranks_autograd_with_a_dtensor_leaf(two: list[dict[str, Any]]) -> None:
    for o in two:
        R = o["results"]
        assert R["ag_dtensor_same"] is True  # the cell's gradients are those of a plain run
        (row,) = [g for g in R["ag_dtensor"] if g["wrt"] == "wd"]
        local = [[6.0 * v for v in row_] for row_ in _local_rows(o["rank"])]
        assert row["status"] == "ok" and row["grad"] == local and "local shard" in row["reason"]


def _local_rows(rank: int) -> list[list[float]]:
    full = [[float(2 * i), float(2 * i + 1)] for i in range(4)]
    return full[2 * rank: 2 * rank + 2]


def test_two_ranks_fsdp2_model_report_and_gradients(two: list[dict[str, Any]]) -> None:
    for o in two:
        R = o["results"]
        m, truth = R["fsdp_module"], R["fsdp_truth"]
        assert R["fsdp_comms"] == 0
        assert m["parameters"] == sum(math.prod(t["global"]) for t in truth.values()) == 58
        assert m["local_parameters"] == sum(math.prod(t["local"]) for t in truth.values())
        assert m["local_parameter_bytes"] == 4 * m["local_parameters"] and m["sharded"] == 4 and m["rank"] == o["rank"]
        for row in m["rows"]:
            assert row["placements"] == ["Shard(0)"] and row["local_shape"] == truth[row["name"]]["local"]
        assert "placement" in R["fsdp_text"] and "parameters on this rank" in R["fsdp_text"]
        statuses = {g["wrt"]: g["status"] for g in R["ag_fsdp"]}
        assert {statuses[n] for n in ("model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias")} == {"ok"}
        assert "unused" not in statuses.values() and R["ag_fsdp_same"] is True
        # trained through a function the cell calls: the model is not named in the cell
        through = {g["wrt"]: g["status"] for g in R["ag_fsdp_function"]}
        assert {through.get(n) for n in ("model3.0.weight", "model3.0.bias", "model3.2.weight", "model3.2.bias")} == {"ok"}, through
        assert "unused" not in through.values(), through
        assert R["magic_comms"] == R["plain_comms"] and R["plain_comms"], (R["magic_comms"], R["plain_comms"])
        assert R["magic_same"] is True
        dev = {row["name"]: row for row in R["todevice"]["placement"]}
        assert dev["model"]["local_nbytes"] == m["local_parameter_bytes"] and dev["model"]["nbytes"] == m["parameter_bytes"]
        assert dev["s0"]["placements"] == ["Shard(0)"] and dev["s0"]["local_nbytes"] == 64
        assert any("splits the mesh" in n for n in R["todevice"]["notes"])
        assert any("splits the mesh" in w for w in R["move"]["warnings"])
        assert R["after_all"] == 2.0
        ns = R["namespace"]  # %tensorinfo with no argument: global shapes, this rank's bytes, no collective
        assert R["namespace_comms"] == 0
        assert ns["s0"]["shape"] == [8, 4] and ns["s0"]["nbytes"] == 64 and "Shard(0)" in ns["s0"]["type"]
        assert ns["model"]["nbytes"] == m["local_parameter_bytes"]


def test_four_ranks_two_by_two_mesh_layout(four: list[dict[str, Any]]) -> None:
    _check_layout(four)
    _check_local_values(four)
    r3 = four[3]["results"]["reports"]
    assert r3["s0"]["sharding"]["coordinate"] == [1, 1] and r3["s0"]["sharding"]["mesh_dim_names"] == ["dp", "tp"]
    assert r3["empty_cols"]["sharding"]["empty"] is True and r3["empty_cols"]["stats"] is None  # Shard(1) of (8, 6) on 4 ranks
    assert r3["five"]["sharding"]["empty_ranks"] == [3]
    assert r3["rep_shard"]["sharding"]["replication"] == 2.0
    for o in four:
        assert o["results"]["default_comms"] == 0


def test_four_ranks_global_statistics_and_subset(four: list[dict[str, Any]]) -> None:
    _check_global(four)
    _check_subset(four)
