"""%%autograd's graph picture: layout time and size at 100, 1,000 and 10,000 nodes (issue 13).

Each graph is a real autograd graph (random unary and binary ops over a chain with skip
connections and leaves used at random, so that almost nothing collapses as a repeated block),
made under ``%%autograd`` in a real InteractiveShell.  Two figures per size, best of --repeat
runs, each with the layout cache cleared:

  full     every node drawn (view, DOT source, ``dot -Tsvg``, sanitising)         goal: 1,000 nodes < 1 s
  report   the picture the report's HTML carries (within its byte budget: all nodes
           up to 250, else the module level or a cut)

plus the wall and CPU seconds (this process and ``dot``) and the SVG's size.  Then the seed
cell's picture: drawn cold and from the cache (a report shown in several views, a cell run
again).

Run: .venv/bin/python benchmarks/bench_graph_drawing.py [--repeat 3] [--sizes 100,1000,10000]
"""

from __future__ import annotations

import argparse
import os
import time
import xml.etree.ElementTree as ET

GRAPH = """import random
rng = random.Random(0)
leaves = [torch.rand(3, requires_grad=True) for _ in range({ops} // 8)]
hs = [leaves[0]]
unary = [torch.sin, torch.cos, torch.tanh, torch.sigmoid, torch.exp, torch.relu, torch.neg, torch.square]
for i in range({ops}):
    h = hs[-1]
    r = rng.random()
    if r < 0.12:
        h = h * leaves[rng.randrange(len(leaves))]
    elif r < 0.2:
        h = h + hs[rng.randrange(max(0, len(hs) - 20), len(hs))]
    else:
        h = rng.choice(unary)(h)
    hs.append(h)
out = hs[-1].sum()
out.backward()
del hs, h
"""

SEED = "x = torch.tensor(3.)\nw = torch.tensor(4., requires_grad=True)\nb = torch.tensor(5., requires_grad=True)\ny = w * x + b\ny.backward()"


def cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall s, best CPU s, result), each run with the layout cache cleared."""
    from tensormagic.render import graph_drawing

    wall = cpus = float("inf")
    result = None
    for _ in range(repeat):
        graph_drawing.clear_cache()
        t0, c0 = time.perf_counter(), cpu()
        result = fn()
        wall, cpus = min(wall, time.perf_counter() - t0), min(cpus, cpu() - c0)
    return wall, cpus, result


def drawn_nodes(svg: str | None) -> int:
    if not svg:
        return 0
    return sum(1 for g in ET.fromstring(svg).iter("g") if g.find("title") is not None and any(el.tag in ("polygon", "path") for el in g))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()

    from IPython.core.interactiveshell import InteractiveShell

    from tensormagic.render.graph_drawing import dot_binary, draw_graph
    from tensormagic.render.graph_view import graph_view

    if dot_binary() is None:
        raise SystemExit("no Graphviz dot on PATH (scripts/setup.sh installs it)")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    ip.run_cell("import torch\ntorch.manual_seed(0)", store_history=False, silent=True)
    goals: list[str] = []
    print(f"{'nodes':>7} {'drawn':>6} {'full wall s':>12} {'full cpu s':>11} {'full KB':>8}   {'report':<8} {'drawn':>6} {'wall s':>7} {'cpu s':>6} {'KB':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        report = ip.run_cell_magic("autograd", "", GRAPH.format(ops=size))
        n = len(report.graph.nodes)
        full_wall, full_cpu, full = timed(lambda: draw_graph(report, full_limit=10**6, budget=10**12, timeout=600), args.repeat)
        rep_wall, rep_cpu, rep = timed(lambda: draw_graph(report), args.repeat)
        level = graph_view(report).level
        print(
            f"{n:>7,} {drawn_nodes(full.svg):>6,} {full_wall:>12.3f} {full_cpu:>11.3f} {len(full.svg or '') / 1024:>8.0f}   "
            f"{level:<8} {drawn_nodes(rep.svg):>6,} {rep_wall:>7.3f} {rep_cpu:>6.3f} {len(rep.svg or '') / 1024:>6.0f}"
        )
        if size == 1000:
            goals.append(f"goal: 1,000 nodes drawn in full in under 1 s: {'met' if full_cpu < 1.0 else 'NOT met'} ({full_cpu:.2f} s of CPU, {full_wall:.2f} s wall)")
    report = ip.run_cell_magic("autograd", "", SEED)
    cold, _, drawing = timed(lambda: draw_graph(report), args.repeat)
    t0 = time.perf_counter()
    for _ in range(100):
        draw_graph(report)
    warm = (time.perf_counter() - t0) / 100
    print(f"seed cell: drawn cold in {cold * 1e3:.1f} ms, from the cache in {warm * 1e3:.2f} ms; SVG {len(drawing.svg or '') / 1024:.1f} KB")
    for line in goals:
        print(line)


if __name__ == "__main__":
    main()
