"""%%autograd against plain cells, side by side in one run.

Two cells, each timed in a real InteractiveShell (``run_cell(..., silent=True)``: the report is
built but not rendered; rendering to text + HTML is timed separately):

  resnet   a ResNet-like network of ~50 conv layers from plain torch ops (25 residual blocks of
           two 3x3 convs, no torchvision) on a (8, 16, 32, 32) batch, loss = out.mean()
  tiny     y = w * x + b on three scalars (the seed)

and two ways to get the gradients:

  grad      plain: the cell, then a manual torch.autograd.grad(loss, params) in the same cell
            magic: %%autograd on the cell without it (the magic computes every gradient itself)
  backward  plain: the cell ending in loss.backward()
            magic: %%autograd on that same cell

Runs alternate (plain, magic, plain, magic, ...) so that drift hits both alike; the best (min)
of --repeat runs is the figure (least disturbed by other processes on a shared machine), the
median is printed beside it.  Goals (from the issue): resnet magic/plain <= 1.15x; tiny: at most
3 ms added.

Run: .venv/bin/python benchmarks/bench_autograd.py [--repeat 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SETUP = """
import torch
import torch.nn.functional as F
torch.manual_seed(0)
x_in = torch.randn(8, 16, 32, 32)
stem = (torch.randn(16, 16, 3, 3) * 0.1).requires_grad_()
blocks = [((torch.randn(16, 16, 3, 3) * 0.05).requires_grad_(), (torch.randn(16, 16, 3, 3) * 0.05).requires_grad_()) for _ in range(25)]
params = [stem] + [w for pair in blocks for w in pair]
xs = torch.tensor(3.)
ws = torch.tensor(4., requires_grad=True)
bs = torch.tensor(5., requires_grad=True)
"""

RESNET = """out = F.relu(F.conv2d(x_in, stem, padding=1))
for w1, w2 in blocks:
    h = F.relu(F.conv2d(out, w1, padding=1))
    out = F.relu(out + F.conv2d(h, w2, padding=1))
loss = out.mean()
"""

TINY = """y = ws * xs + bs
"""

CASES = {
    ("resnet", "grad"): (RESNET + "g = torch.autograd.grad(loss, params)\n", RESNET),
    ("resnet", "backward"): (RESNET + "loss.backward()\nfor p in params: p.grad = None\n", RESNET + "loss.backward()\nfor p in params: p.grad = None\n"),
    ("tiny", "grad"): (TINY + "g = torch.autograd.grad(y, [ws, bs])\n", TINY),
    ("tiny", "backward"): (TINY + "y.backward()\nws.grad = bs.grad = None\n", TINY + "y.backward()\nws.grad = bs.grad = None\n"),
}


CLOCK = time.perf_counter


def timed(ip, code: str) -> float:
    start = CLOCK()
    res = ip.run_cell(code, store_history=False, silent=True)
    elapsed = CLOCK() - start
    if res.error_in_exec or res.error_before_exec:
        raise RuntimeError(f"cell failed: {res.error_in_exec or res.error_before_exec}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--cpu-time", action="store_true", help="time with process CPU time instead of wall time (steadier on a busy machine)")
    args = parser.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time

    import torch
    from IPython.core.interactiveshell import InteractiveShell

    if args.threads:
        torch.set_num_threads(args.threads)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    ip.run_cell(SETUP, store_history=False, silent=True)
    results = {}
    for (net, how), (plain, magic_body) in CASES.items():
        magic = "%%autograd --out _bench_report\n" + magic_body
        for _ in range(2):  # warm up both (imports, caches, allocator)
            timed(ip, plain)
            timed(ip, magic)
        t_plain, t_magic = [], []
        for _ in range(args.repeat):
            t_plain.append(timed(ip, plain))
            t_magic.append(timed(ip, magic))
        report = ip.user_ns["_bench_report"]
        renders = []
        for _ in range(3):
            start = time.perf_counter()
            bundle = report._repr_mimebundle_()
            renders.append(time.perf_counter() - start)
        assert "text/html" in bundle
        p, m = min(t_plain), min(t_magic)
        results[f"{net}/{how}"] = {
            "median_plain_ms": statistics.median(t_plain) * 1e3,
            "median_magic_ms": statistics.median(t_magic) * 1e3,
            "plain_ms": p * 1e3,
            "magic_ms": m * 1e3,
            "ratio": m / p,
            "added_ms": (m - p) * 1e3,
            "render_ms": statistics.median(renders) * 1e3,
            "report_build_ms": report.cost.report_s * 1e3,
            "magic_in_cell_ms": report.cost.magic_s * 1e3,
        }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeat} alternating runs, {'CPU' if args.cpu_time else 'wall'} time (report built, not rendered)")
    print(f"{'case':<18}{'plain ms':>10}{'magic ms':>10}{'ratio':>8}{'added ms':>10}{'render ms':>11}{'median ratio':>14}   goal")
    for name, r in results.items():
        goal = "ratio <= 1.15" if name.startswith("resnet") else "added <= 3 ms"
        ok = (r["ratio"] <= 1.15) if name.startswith("resnet") else (r["added_ms"] <= 3.0)
        print(f"{name:<18}{r['plain_ms']:>10.2f}{r['magic_ms']:>10.2f}{r['ratio']:>8.3f}{r['added_ms']:>10.2f}{r['render_ms']:>11.2f}{r['median_magic_ms'] / r['median_plain_ms']:>14.3f}   {goal}: {'met' if ok else 'NOT met'}")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
