"""What a tensor's pictures add to ``%tensorinfo``, measured side by side in one run.

For float32 tensors of 1e6 and 1e8 elements, 1-D (a histogram only) and as a square matrix (a
heatmap too), and an image batch (N, 3, H, W) of about the same size (an image view), it prints
the best of N wall times (the first two run alternately) of:
  plain     inspect_object(..., pictures=NO_PICTURES): the report without pictures
  pictures  inspect_object(...): the same report with its default pictures (engine only)
  drawn     the pictures' PNGs and chart made from that report (render: Pillow, matplotlib)
and the ratio pictures / plain (goal at 1e8: <= 1.2), also as the median of the ratios of the
runs side by side ("paired").  On the CPU the statistics' one C pass also copies out the
subsample each view reads (and, above 4M elements, the histogram's sample), so the pictures
add no second trip through the tensor's memory.

Run: .venv/bin/python benchmarks/bench_pictures.py [--sizes 1e6,1e8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from timing import best  # benchmarks/timing.py (run as a script, its folder is on the path)

from tensormagic.engine.tensorinfo import inspect_object
from tensormagic.engine.tensorinfo.pictures import NO_PICTURES
from tensormagic.render.display import build_panel
from tensormagic.render.document import Picture


def best_pair(a, b, repeat: int) -> tuple[float, float, float]:
    """The best times of ``a`` and ``b`` run alternately (a busy machine slows both alike), and
    the median of the ratios b / a of the runs side by side (steadier than the ratio of the bests
    when the machine's load comes and goes)."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(best(a, 1))
        tb.append(best(b, 1))
    return min(ta), min(tb), statistics.median(y / x for x, y in zip(ta, tb))


def draw_all(report) -> None:
    for section in build_panel(report).sections:
        for block in section.blocks:
            if isinstance(block, Picture):
                block.drawing()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1e6,1e8")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeat}")
    print(f"{'tensor':<28}{'plain':>10}{'pictures':>11}{'ratio':>8}{'paired':>8}{'drawn':>10}  pictures")
    for size in (int(float(s)) for s in args.sizes.split(",")):
        side = math.isqrt(size)
        hw = math.isqrt(size // 48)
        for label, make in ((f"({size:.0e},)", lambda: torch.randn(size)), (f"({side}, {side})", lambda: torch.randn(side, side)), (f"(16, 3, {hw}, {hw})", lambda: torch.rand(16, 3, hw, hw))):
            t = make()
            ns = {"t": t}
            inspect_object("t", t, ns)  # warm: imports, caches
            plain, full, paired = best_pair(lambda: inspect_object("t", t, ns, pictures=NO_PICTURES), lambda: inspect_object("t", t, ns), args.repeat)
            report = inspect_object("t", t, ns)
            draw_all(report)  # warm: matplotlib's import
            drawn = best(lambda: draw_all(inspect_object("t", t, ns)), max(1, args.repeat // 2)) - full
            print(f"{label:<28}{plain * 1e3:>8.1f}ms{full * 1e3:>9.1f}ms{full / plain:>8.2f}{paired:>8.2f}{max(drawn, 0.0) * 1e3:>8.1f}ms  {', '.join(report.pictures.kinds())}")
            del t, ns, report


if __name__ == "__main__":
    main()
