"""The cells the distributed tests run on every rank (one launch per world size, many checks each).

Each program makes DTensors, takes tensormagic's reports of them (under ``CommDebugMode``), then
DTensor's own truth (``full_tensor()``, ``to_local()``, ``compute_local_shape_and_global_offset``),
then ``--global`` on every rank and on a subset, and stores everything in ``RESULTS``.
"""

from __future__ import annotations

SETUP = """
import math, time, torch, torch.distributed as dist
from torch import nn
from IPython.core.error import UsageError
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
from torch.distributed.tensor.debug import CommDebugMode
from tensormagic.render.html import render_panel as html_of
from tensormagic.render.registry import panel_of

def from_shards(full, mesh, placements, scale=1):
    shape, offset = compute_local_shape_and_global_offset(full.shape, mesh, placements)
    block = full[tuple(slice(o, o + s) for o, s in zip(offset, shape))].clone() * scale
    return DTensor.from_local(block, mesh, placements, run_check=False, shape=full.shape, stride=full.stride())

def global_or_error(expr):
    try:
        return get_ipython().run_line_magic("tensorinfo", expr).to_dict()["stats"]
    except UsageError as exc:
        return f"UsageError: {exc}"
"""

#: Reports of every tensor in TENSORS (zero collectives), the truth, then --global on every rank.
REPORTS = """
REPORTS = {}
with CommDebugMode() as comm:
    for n in TENSORS:
        r = get_ipython().run_line_magic("tensorinfo", n)
        REPORTS[n] = r
        RESULTS.setdefault("text", {})[n] = str(r)
        RESULTS.setdefault("html", {})[n] = html_of(panel_of(r))
RESULTS["default_comms"] = comm.get_total_counts()
RESULTS["reports"] = {n: r.to_dict() for n, r in REPORTS.items()}
"""

TRUTH = """
T = {}
for n, dt in TENSORS.items():
    shape, offset = compute_local_shape_and_global_offset(dt.shape, dt.device_mesh, dt.placements)
    T[n] = {"full": dt.full_tensor().tolist(), "local": dt.to_local().tolist(), "local_shape": list(shape), "offset": list(offset), "dtype": str(dt.dtype)}
RESULTS["truth"] = T
"""

GLOBAL = """
G, C = {}, {}
for n in TENSORS:
    with CommDebugMode() as comm:
        G[n] = global_or_error(f"--global {n}")
    C[n] = {str(k): v for k, v in comm.get_comm_counts().items()}
RESULTS["global"], RESULTS["global_comms"] = G, C
"""

#: --global on rank 0 only, then on the last rank only, then on every rank: errors within the
#: timeout, the group still usable (a collective after each), rounds kept in step.
SUBSET = """
SUB = {}
for alone in (0, WORLD_SIZE - 1):
    t0 = time.perf_counter()
    if RANK == alone:
        SUB[f"alone{alone}"] = global_or_error("--global --timeout 1 s0")
    SUB[f"alone{alone}_s"] = time.perf_counter() - t0
    v = torch.ones(1)
    dist.all_reduce(v)
    SUB[f"after{alone}"] = v.item()
SUB["everyone"] = global_or_error("--global --timeout 10 s0")
SUB["different"] = global_or_error("--global --timeout 10 " + ("s0" if RANK == 0 else "s1"))
v = torch.ones(1)
dist.all_reduce(v)
SUB["after_different"] = v.item()
SUB["everyone_again"] = global_or_error("--global --timeout 10 s0")
RESULTS["subset"] = SUB
"""

TWO_RANKS = [
    SETUP,
    """
mesh = init_device_mesh("cpu", (WORLD_SIZE,))
base = torch.arange(32.).reshape(8, 4)
TENSORS = {
    "s0": distribute_tensor(base, mesh, [Shard(0)]),
    "s1": distribute_tensor(base, mesh, [Shard(1)]),
    "rep": distribute_tensor(base, mesh, [Replicate()]),
    "par": DTensor.from_local(base * (RANK + 1), mesh, [Partial()], run_check=False),
    "uneven": distribute_tensor(torch.arange(15.).reshape(5, 3), mesh, [Shard(0)]),
    "empty": distribute_tensor(torch.arange(4.).reshape(1, 4), mesh, [Shard(0)]),
    "ints": distribute_tensor(torch.arange(10, dtype=torch.int64) + 2**60, mesh, [Shard(0)]),
    "nonfinite": distribute_tensor(torch.tensor([1.0, float("nan"), 3.0, float("inf"), 0.0, -2.0]), mesh, [Shard(0)]),
    "cube": distribute_tensor(torch.arange(24.).reshape(2, 3, 4), mesh, [Shard(1)]),
}
globals().update(TENSORS)
""",
    REPORTS,
    # the magic typed as a user types it, inside a block
    """
with CommDebugMode() as comm:
    r = %tensorinfo s0
RESULTS["typed"] = {"comms": comm.get_total_counts(), "over": r.to_dict()["stats"]["over"]}
""",
    TRUTH,
    GLOBAL,
    """
import tensormagic
RESULTS["api_global"] = tensormagic.tensorinfo(s0, global_stats=True, timeout=10).to_dict()["stats"]
r = %tensorinfo --global --timeout 10 s0
RESULTS["typed_global"] = r.to_dict()["stats"]
""",
    SUBSET,
    # %%autograd with a DTensor leaf, against the same cell run plainly
    """
wd = distribute_tensor(torch.arange(8.).reshape(4, 2), mesh, [Shard(0)]).requires_grad_()
wd_plain = distribute_tensor(torch.arange(8.).reshape(4, 2), mesh, [Shard(0)]).requires_grad_()
(wd_plain * wd_plain * 3).sum().backward()
""",
    """%%autograd
loss = (wd * wd * 3).sum()
loss.backward()
""",
    """
RESULTS["ag_dtensor"] = _.to_dict()["gradients"]
RESULTS["ag_dtensor_same"] = torch.equal(wd.grad.to_local(), wd_plain.grad.to_local()) and wd.grad.placements == wd_plain.grad.placements
""",
    # FSDP2: a model sharded over the ranks, its report, %todevice, %%autograd vs a plain run
    """
from torch.distributed.fsdp import fully_shard
def make_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fully_shard(m[0]); fully_shard(m[2]); fully_shard(m)
    return m
model, model_plain = make_model(), make_model()
xin = torch.arange(12.).reshape(3, 4) / 10
model_plain(xin).sum().backward()
with CommDebugMode() as comm:
    r = %tensorinfo model
    RESULTS["fsdp_text"] = str(r)
RESULTS["fsdp_module"] = r.to_dict()
RESULTS["fsdp_comms"] = comm.get_total_counts()
RESULTS["fsdp_truth"] = {n: {"local": list(p.to_local().shape), "global": list(p.shape), "placements": [str(q) for q in p.placements]} for n, p in model.named_parameters()}
r = %todevice
RESULTS["todevice"] = r.to_dict()
with CommDebugMode() as comm:
    r = %tensorinfo
RESULTS["namespace"] = {e["name"]: e for e in r.to_dict()["entries"]}
RESULTS["namespace_comms"] = comm.get_total_counts()
""",
    """%%autograd
out = model(xin)
loss2 = out.sum()
loss2.backward()
""",
    """
RESULTS["ag_fsdp"] = _.to_dict()["gradients"]
RESULTS["ag_fsdp_same"] = all(torch.equal(p.grad.to_local(), q.grad.to_local()) for p, q in zip(model.parameters(), model_plain.parameters()))
model3 = make_model()
def step():
    model3(xin).sum().backward()
""",
    """%%autograd
step()
""",
    """
RESULTS["ag_fsdp_function"] = _.to_dict()["gradients"]
model4, model5 = make_model(), make_model()
with CommDebugMode() as comm:
    model4(xin).sum().backward()
RESULTS["plain_comms"] = {str(k): v for k, v in comm.get_comm_counts().items()}
""",
    # the same cell under %%autograd: the same collectives, no more (the magic's own passes issue none)
    """%%autograd
with CommDebugMode() as comm:
    out5 = model5(xin)
    loss5 = out5.sum()
    loss5.backward()
""",
    """
RESULTS["magic_comms"] = {str(k): v for k, v in comm.get_comm_counts().items()}
RESULTS["magic_same"] = all(torch.equal(p.grad.to_local(), q.grad.to_local()) for p, q in zip(model4.parameters(), model5.parameters()))
spare = distribute_tensor(torch.ones(4), mesh, [Shard(0)])
r = %todevice spare meta
RESULTS["move"] = r.to_dict()
v = torch.ones(1)
dist.all_reduce(v)
RESULTS["after_all"] = v.item()
""",
]

FOUR_RANKS = [
    SETUP,
    """
mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
line = init_device_mesh("cpu", (WORLD_SIZE,))
coord = mesh.get_coordinate()
base = torch.arange(30.).reshape(5, 6)
TENSORS = {
    "s0": from_shards(base, mesh, [Shard(0), Shard(1)]),
    "s1": from_shards(base, mesh, [Shard(1), Shard(0)]),
    "rep_shard": from_shards(base, mesh, [Replicate(), Shard(0)]),
    "par_shard": from_shards(base, mesh, [Partial(), Shard(1)], scale=coord[0] + 1),
    "nested": from_shards(torch.arange(16.).reshape(8, 2), mesh, [Shard(0), Shard(0)]),
    "empty_cols": distribute_tensor(torch.arange(48.).reshape(8, 6), line, [Shard(1)]),
    "five": distribute_tensor(torch.arange(5.), line, [Shard(0)]),
}
globals().update(TENSORS)
""",
    REPORTS,
    TRUTH,
    GLOBAL,
    SUBSET,
]
