"""%%autograd against plain cells, side by side in one run (the goals of issue #10).

Each case is a cell timed in a real InteractiveShell (``run_cell(..., silent=True)``), plainly and
under ``%%autograd``, alternating (plain, magic, plain, magic, ...) so that drift on a shared
machine hits both alike; the figure is the best (min) of --repeat runs, the median beside it.

  loop         a 100-step SGD loop of a small MLP (16 -> 64 -> 64 -> 1) in one cell   goal <= 1.15x
  loop+10k     the same with 10,000 more tensors in the namespace                    goal <= 1.25x
  scalar-ops   10,000 scalar tensor ops in a Python loop, then backward              goal <= 1.5x
  seed         the seed cell (y = w * x + b; y.backward()), report rendered too      goal <= +1 ms
  resnet       a ResNet-like net of ~50 convs from plain torch ops, one backward     goal <= 1.10x
  resnet/grad  the same with no backward in the cell: the magic computes the gradients itself
               (compared with a plain cell that ends in torch.autograd.grad)          goal <= 1.15x

Then the graph walk alone, per node, on chains of 1k, 10k and 100k nodes (goal: flat).

Run: .venv/bin/python benchmarks/bench_autograd.py [--repeat 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SETUP = """
import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)
x_in = torch.randn(8, 16, 32, 32)
stem = (torch.randn(16, 16, 3, 3) * 0.1).requires_grad_()
blocks = [((torch.randn(16, 16, 3, 3) * 0.05).requires_grad_(), (torch.randn(16, 16, 3, 3) * 0.05).requires_grad_()) for _ in range(25)]
params = [stem] + [w for pair in blocks for w in pair]
mlp = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
opt = torch.optim.SGD(mlp.parameters(), lr=1e-3)
xb = torch.randn(32, 16)
yb = torch.randn(32, 1)
xs = torch.tensor(3.)
ws = torch.tensor(4., requires_grad=True)
bs = torch.tensor(5., requires_grad=True)
"""

EXTRA_NAMES = "for _i in range(10_000):\n    globals()[f'extra{_i}'] = torch.ones(1)\n"

LOOP = """for step in range(100):
    opt.zero_grad()
    loss = F.mse_loss(mlp(xb), yb)
    loss.backward()
    opt.step()
"""

SCALAR_OPS = """s = ws * 1.0
for _ in range(10_000):
    s = s * 1.0001 + 0.0
s.backward()
ws.grad = None
"""

SEED = """y = ws * xs + bs
y.backward()
ws.grad = bs.grad = None
"""

RESNET = """out = F.relu(F.conv2d(x_in, stem, padding=1))
for w1, w2 in blocks:
    h = F.relu(F.conv2d(out, w1, padding=1))
    out = F.relu(out + F.conv2d(h, w2, padding=1))
loss = out.mean()
"""

# name: (plain cell, magic cell body, goal kind, goal value, render the report too)
CASES = {
    "loop": (LOOP, LOOP, "ratio", 1.15, False),
    "loop+10k": (LOOP, LOOP, "ratio", 1.25, False),
    "scalar-ops": (SCALAR_OPS, SCALAR_OPS, "ratio", 1.5, False),
    "seed": (SEED, SEED, "added_ms", 1.0, True),
    "resnet": (RESNET + "loss.backward()\nfor p in params: p.grad = None\n", RESNET + "loss.backward()\nfor p in params: p.grad = None\n", "ratio", 1.10, False),
    "resnet/grad": (RESNET + "g = torch.autograd.grad(loss, params)\n", RESNET, "ratio", 1.15, False),
}

CLOCK = time.perf_counter


def timed(ip, code: str, render: bool = False) -> float:
    start = CLOCK()
    res = ip.run_cell(code, store_history=False, silent=True)
    if render:
        ip.user_ns["_bench_report"]._repr_mimebundle_()
    elapsed = CLOCK() - start
    if res.error_in_exec or res.error_before_exec:
        raise RuntimeError(f"cell failed: {res.error_in_exec or res.error_before_exec}")
    return elapsed


def walk_per_node(sizes: list[int]) -> dict[int, float]:
    """Microseconds per node of the graph walk on a chain of ``n`` nodes (best of 3)."""
    import torch

    from tensormagic.engine.autograd import keeper
    from tensormagic.engine.autograd.walk import walk_graph

    out = {}
    for n in sizes:
        best = float("inf")
        for _ in range(3):
            x = torch.randn(2, requires_grad=True)
            y = x
            for _ in range(n):
                y = y * 1.0001
            start = time.perf_counter()
            walk = walk_graph([y.grad_fn], {id(x): "x"})
            best = min(best, time.perf_counter() - start)
            del walk, y
            keeper.sweep()
        out[n] = best / n * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()

    import torch
    from IPython.core.interactiveshell import InteractiveShell

    if args.threads:
        torch.set_num_threads(args.threads)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    results = {}
    for name, (plain, magic_body, goal_kind, goal, render) in CASES.items():
        if args.only and name not in args.only.split(","):
            continue
        ip.reset(new_session=False)
        ip.run_cell(SETUP + (EXTRA_NAMES if name.endswith("10k") else ""), store_history=False, silent=True)
        magic = "%%autograd --out _bench_report\n" + magic_body
        for _ in range(2):  # warm up both (imports, caches, allocator)
            timed(ip, plain)
            timed(ip, magic, render)
        t_plain, t_magic = [], []
        for _ in range(args.repeat):
            t_plain.append(timed(ip, plain))
            t_magic.append(timed(ip, magic, render))
        report = ip.user_ns["_bench_report"]
        p, m = min(t_plain), min(t_magic)
        ratio, added = m / p, (m - p) * 1e3
        met = ratio <= goal if goal_kind == "ratio" else added <= goal
        results[name] = {
            "plain_ms": p * 1e3,
            "magic_ms": m * 1e3,
            "ratio": ratio,
            "added_ms": added,
            "median_ratio": statistics.median(t_magic) / statistics.median(t_plain),
            "magic_in_cell_ms": report.cost.magic_s * 1e3,
            "report_build_ms": report.cost.report_s * 1e3,
            "goal": f"{'ratio' if goal_kind == 'ratio' else 'added ms'} <= {goal:g}",
            "met": met,
        }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeat} alternating runs (wall time)")
    print(f"{'case':<13}{'plain ms':>10}{'magic ms':>10}{'ratio':>8}{'added ms':>10}{'median ratio':>14}{'in cell ms':>12}{'report ms':>11}   goal")
    for name, r in results.items():
        print(
            f"{name:<13}{r['plain_ms']:>10.2f}{r['magic_ms']:>10.2f}{r['ratio']:>8.3f}{r['added_ms']:>10.2f}{r['median_ratio']:>14.3f}"
            f"{r['magic_in_cell_ms']:>12.2f}{r['report_build_ms']:>11.2f}   {r['goal']}: {'met' if r['met'] else 'NOT met'}"
        )
    if not args.only:
        per = walk_per_node([1_000, 10_000, 100_000])
        print("graph walk, µs per node: " + ", ".join(f"{n:,} nodes {v:.2f}" for n, v in per.items()) + f"  (100k/1k: {per[100_000] / per[1_000]:.2f}x; goal: flat)")
        results["walk_us_per_node"] = per  # type: ignore[assignment]
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
