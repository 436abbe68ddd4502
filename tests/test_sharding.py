"""Sharded tensors in one process: the fast tier.

- DTensors on a fake process group (torch's ``fake`` backend: one process plays any rank; private
  API, skipped cleanly where torch lacks it), checked against ``compute_local_shape_and_global_offset``.
- The exact merge of per-rank partials, the store rendezvous (threads on a real ``HashStore``),
  torch's chunking rule re-done, the magic's usage errors, and that a plain tensor's path imports
  nothing more of ``torch.distributed`` than ``import torch`` does.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tensormagic.engine.sharding.global_stats import _partials, merge
from tensormagic.engine.sharding.layout import own_shape_and_offset
from tensormagic.engine.sharding.rendezvous import MeetingError, meet
from tensormagic.engine.tensorinfo.statistics import tensor_stats
from tests.conftest import shown_as_one_line_usage_error

dist = pytest.importorskip("torch.distributed")


# -- a plain tensor's path -----------------------------------------------------------------------

PLAIN_PATH = """
import json, sys, torch
before = {m for m in sys.modules if m.startswith("torch.distributed")}
import tensormagic
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "tensormagic")
ip.user_ns.update(x=torch.arange(6.).requires_grad_(), m=torch.nn.Linear(2, 2))
for cell in ("r = %tensorinfo x", "s = str(r)", "r = %tensorinfo m", "s = str(r)", "r = %todevice", "s = str(r)",
             "%%autograd\\ny = (x * 2).sum()\\ny.backward()"):
    res = ip.run_cell(cell)
    assert res.success, cell
print(json.dumps(sorted({m for m in sys.modules if m.startswith("torch.distributed")} - before)))
"""


def test_plain_tensors_import_no_more_of_torch_distributed() -> None:
    out = subprocess.run([sys.executable, "-c", PLAIN_PATH], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# -- the merge of per-rank partials ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int64, torch.bool])
def test_merge_of_split_statistics_is_the_whole_tensors(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    whole = (torch.randn(1000, generator=g) * 1e3 + 1e4).to(dtype) if dtype != torch.bool else torch.rand(1000, generator=g) > 0.3
    if dtype.is_floating_point:
        whole[[3, 500]] = torch.tensor([math.nan, math.inf], dtype=dtype)
    cuts = [0, 1, 1, 250, 999, 1000]  # an empty piece, a one-element piece
    rows = [_partials(tensor_stats(whole[a:b]) if b > a else None, not (dtype.is_floating_point or dtype == torch.bool)) for a, b in itertools.pairwise(cuts)]
    got, want = merge(rows, dtype, "x"), tensor_stats(whole)
    assert (got.count, got.nan, got.posinf, got.neginf, got.zeros) == (want.count, want.nan, want.posinf, want.neginf, want.zeros)
    assert got.min == want.min and got.max == want.max and type(got.min) is type(want.min)
    assert math.isclose(got.mean, want.mean, rel_tol=1e-12) and math.isclose(got.std, want.std, rel_tol=1e-9)
    assert got.scope == "global"


def test_merge_keeps_huge_integers_exact() -> None:
    big = torch.tensor([2**62 + 1, 2**62 + 3, -(2**62) - 5], dtype=torch.int64)
    rows = [_partials(tensor_stats(big[:2]), True), _partials(tensor_stats(big[2:]), True)]
    got = merge(rows, torch.int64, "x")
    assert (got.min, got.max) == (-(2**62) - 5, 2**62 + 3)


# -- the rendezvous --------------------------------------------------------------------------------

def _meet_all(store: Any, ranks: list[int], world: int, timeout: float, prints: dict[int, str] | None = None) -> dict[int, str]:
    out: dict[int, str] = {}

    def one(r: int) -> None:
        try:
            meet(r, world, (prints or {}).get(r, "same"), timeout, store)
            out[r] = "met"
        except MeetingError as exc:
            out[r] = str(exc)

    threads = [threading.Thread(target=one, args=(r,)) for r in ranks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return out


def test_rendezvous_meets_refuses_and_stays_in_step() -> None:
    store = dist.HashStore()
    assert _meet_all(store, [0, 1, 2], 3, 5.0) == {0: "met", 1: "met", 2: "met"}
    start = time.monotonic()
    got = _meet_all(store, [0, 1], 3, 0.5)  # rank 2 is missing
    assert time.monotonic() - start < 3.0
    assert all(v.startswith("only 2 of 3 ranks") and "\n" not in v for v in got.values()), got
    late = _meet_all(store, [2], 3, 0.5)  # rank 2 alone, afterwards: a new round, alone again
    assert late[2].startswith("only 1 of 3 ranks")
    assert _meet_all(store, [0, 1, 2], 3, 5.0) == {0: "met", 1: "met", 2: "met"}  # rounds still in step
    got = _meet_all(store, [0, 1, 2], 3, 5.0, prints={0: "a", 1: "a", 2: "b"})
    assert all("different tensors" in v for v in got.values()), got
    assert _meet_all(store, [0, 1, 2], 3, 5.0) == {0: "met", 1: "met", 2: "met"}


# -- torch's chunking rule -------------------------------------------------------------------------

def test_own_chunking_rule_matches_torchs() -> None:
    helper = pytest.importorskip("torch.distributed.tensor._utils")._compute_local_shape_and_global_offset
    from torch.distributed.tensor import Replicate, Shard

    for global_shape in [(5,), (8, 6), (7, 3), (1, 4), (0, 3), (9, 10)]:
        for mesh_shape, placements in [((4,), [Shard(0)]), ((2, 2), [Shard(0), Shard(0)]), ((2, 3), [Replicate(), Shard(len(global_shape) - 1)]), ((3, 2), [Shard(0), Shard(len(global_shape) - 1)])]:
            for coord in [(i,) if len(mesh_shape) == 1 else (i, j) for i in range(mesh_shape[0]) for j in range(mesh_shape[-1] if len(mesh_shape) > 1 else 1)]:
                mine = own_shape_and_offset(global_shape, mesh_shape, coord, placements)
                shape, offset = helper(global_shape, mesh_shape, list(coord), placements)
                assert mine[0] == list(shape), (global_shape, mesh_shape, placements, coord)
                if math.prod(shape):  # torch's offset of an empty shard is its own convention
                    assert mine[1] == list(offset), (global_shape, mesh_shape, placements, coord)


# -- one process playing any rank: the fake process group ------------------------------------------

@pytest.fixture
def fake_rank(request: pytest.FixtureRequest) -> Iterator[int]:
    fake_pg = pytest.importorskip("torch.testing._internal.distributed.fake_pg")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    rank = int(request.param)
    dist.init_process_group("fake", store=fake_pg.FakeStore(), rank=rank, world_size=4)
    try:
        yield rank
    finally:
        dist.destroy_process_group()


def _dtensor(full: torch.Tensor, mesh: Any, placements: list[Any]) -> Any:
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, offset = compute_local_shape_and_global_offset(full.shape, mesh, placements)
    block = full[tuple(slice(o, o + s) for o, s in zip(offset, shape))].clone()
    return DTensor.from_local(block, mesh, placements, run_check=False, shape=full.shape, stride=full.stride())


@pytest.mark.parametrize("fake_rank", [0, 1, 3], indirect=True)
def test_fake_group_reports_every_rank_truthfully(fake_rank: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Partial, Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
    from torch.distributed.tensor.debug import CommDebugMode

    from tensormagic.engine.tensorinfo import inspect_object
    from tensormagic.render.display import render_text
    from tensormagic.render.html import render_panel
    from tensormagic.render.registry import panel_of

    line = init_device_mesh("cpu", (4,))
    grid = init_device_mesh("cpu", (2, 2), mesh_dim_names=("<b>dp", "tp&"))
    cases = {
        "rows": (torch.arange(32.).reshape(8, 4), line, [Shard(0)]),
        "empty_cols": (torch.arange(48.).reshape(8, 6), line, [Shard(1)]),
        "grid": (torch.arange(30.).reshape(5, 6), grid, [Shard(0), Shard(1)]),
        "partial": (torch.arange(30.).reshape(5, 6), grid, [Partial(), Shard(1)]),
        "replica": (torch.arange(12.).reshape(3, 4), grid, [Replicate(), Replicate()]),
        "cube": (torch.arange(60.).reshape(3, 4, 5), grid, [Shard(1), Shard(2)]),
    }
    for name, (full, mesh, placements) in cases.items():
        dt = _dtensor(full, mesh, placements)
        with CommDebugMode() as comm:
            info = inspect_object(name, dt)
            html = render_panel(panel_of(info))
            text = render_text(info)
        assert comm.get_total_counts() == 0, name
        shape, offset = compute_local_shape_and_global_offset(full.shape, mesh, placements)
        sh = info.sharding
        assert sh is not None and sh.rank == fake_rank and sh.local_shape == list(shape), name
        assert info.shape == list(full.shape) and info.nbytes == math.prod(shape) * 4, name
        if math.prod(shape):
            assert sh.local_offset == list(offset), name
            block = full[tuple(slice(o, o + s) for o, s in zip(offset, shape))]
            assert info.stats is not None and info.stats.max == float(block.max()) and info.stats.min == float(block.min()), name
            assert info.stats.scope == ("partial" if name == "partial" else "local") and f"rank {fake_rank}" in info.stats.over
        else:
            assert info.stats is None and "empty" in (info.stats_note or ""), name
        assert "<b>dp" not in html and ("&lt;b&gt;dp" in html) == (mesh is grid), name  # mesh dim names are escaped
        assert "── Sharding" in text and "rows \\ columns" in text, name
        assert 'aria-label="sharding of a' in html, name
    assert inspect_object("r", _dtensor(*cases["replica"])).sharding.replication == 4.0  # type: ignore[union-attr]


# -- the magic's usage errors ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("%tensorinfo --timeout 2 x", "--timeout applies to --global"),
        ("%tensorinfo --global x", "--global is for DTensors"),
        ("%tensorinfo --global", "--global applies to one DTensor"),
        ("%tensorinfo x --global", "must come before the expression"),
        ("%tensorinfo --global --timeout 0 x", "--timeout must be a number of seconds"),
    ],
)
def test_global_usage_errors(shell: Any, capsys: pytest.CaptureFixture[str], cell: str, words: str) -> None:
    shell.user_ns["x"] = torch.arange(4.)
    err = shown_as_one_line_usage_error(shell, capsys, cell)
    assert words in str(err)
    assert torch.equal(shell.user_ns["x"], torch.arange(4.))


@pytest.mark.parametrize("fake_rank", [2], indirect=True)
def test_fake_group_scalars_vectors_modules_and_todevice(fake_rank: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Shard
    from torch.distributed.tensor.debug import CommDebugMode

    from tensormagic.engine.tensorinfo import inspect_object
    from tensormagic.engine.todevice import placement_report
    from tensormagic.render.display import render_text
    from tensormagic.render.html import render_panel
    from tensormagic.render.registry import panel_of

    line = init_device_mesh("cpu", (4,))
    scalar = DTensor.from_local(torch.tensor(2.5), line, [Partial()], run_check=False)
    vector = _dtensor(torch.arange(10.), line, [Shard(0)])  # 3, 3, 3, 1: rank 2 holds 6-8
    lin = torch.nn.Linear(4, 8)
    lin.weight = torch.nn.Parameter(_dtensor(lin.weight.detach(), line, [Shard(0)]))
    before = vector.to_local().clone()
    with CommDebugMode() as comm:
        s, v, m = inspect_object("s", scalar), inspect_object("v", vector), inspect_object("lin", lin)
        html = render_panel(panel_of(s)) + render_panel(panel_of(v)) + render_panel(panel_of(m))
        placed = placement_report({"v": vector, "lin": lin})
        text = render_text(placed)
    assert comm.get_total_counts() == 0
    assert torch.equal(vector.to_local(), before)  # nothing the user had changed
    assert s.shape == [] and s.stats is not None and s.stats.scope == "partial" and s.stats.max == 2.5
    assert s.sharding is not None and s.sharding.replication == 4.0 and "<svg" in html
    assert v.stats is not None and v.stats.over == "local shard on rank 2 (rows 6-8)" and (v.stats.min, v.stats.max) == (6.0, 8.0)
    assert (m.parameters, m.local_parameters, m.sharded) == (40, 2 * 4 + 8, 1)  # a Shard(0) weight, a plain bias
    assert m.rows[0].placements == ["Shard(0)"] and m.rows[0].local_shape == [2, 4] and m.rows[1].placements is None
    rows = {r.name: r for r in placed.placement}
    assert rows["v"].placements == ["Shard(0)"] and rows["v"].local_nbytes == 12 and rows["v"].nbytes == 40
    assert rows["lin"].local_nbytes == (8 + 8) * 4 and rows["lin"].nbytes == 40 * 4
    assert "bytes on this rank" in text and any("splits the mesh" in n for n in placed.notes)


@pytest.mark.parametrize("fake_rank", [1], indirect=True)
def test_fake_group_automatic_display_reads_the_local_shard_only(fake_rank: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.debug import CommDebugMode

    from tensormagic.engine.preview import tensor_preview
    from tensormagic.engine.tensorinfo import inspect_object
    from tensormagic.render.summary_line import summary_line

    dt = _dtensor(torch.arange(64.).reshape(16, 4), init_device_mesh("cpu", (4,)), [Shard(0)])
    with CommDebugMode() as comm:
        line = summary_line(inspect_object("x", dt))
        preview = tensor_preview(dt)
    assert comm.get_total_counts() == 0
    assert "Shard(0), local (4, 4) on rank 1" in line and "local shard range [16, 31]" in line
    assert preview is not None and preview.note == "this rank's local shard"
    assert (preview.lo, preview.hi) == (16.0, 31.0)
