"""%tensorinfo --exact against the memory floor and lovely-tensors, side by side in one run.

For each case of the issue's table (float32, float64, float16, bfloat16, int64, bool, a
NaN-laden float32 tensor with 1% NaN and 0.2% inf, and a strided view ``x[:, ::2]`` of float32),
at --n elements (default 1e8), it prints the best of --repeat wall times of:

  floor       the fastest of torch.amax(x), torch.sum(x) and torch.count_nonzero(x): one read
              pass over the same bytes, the least any statistics tool must do
  tensorinfo  `%tensorinfo --exact --no-pictures x` in a real InteractiveShell (report built,
              not rendered): the statistics alone (--flags changes the options; with pictures,
              --exact also counts every value for the histogram, a binning pass of its own)
  lovely      repr(lovely_tensors.lovely(x)), lovely-tensors' default repr

then tensorinfo/floor (the goal column is the issue's), lovely/tensorinfo, and the peak extra
memory of the same call as a share of the tensor's bytes (goal < 1%), measured in a
fresh subprocess: the peak RSS (VmHWM, reset just before the call) minus the RSS before it.

With --namespace it also times `%tensorinfo x` of a small x in a namespace of 100,000 arrays
(goal <= 50 ms).

Run: .venv/bin/python benchmarks/bench_tensorinfo.py [--n 1e8] [--repeat 5] [--cases "float32;bool"]
     [--no-memory] [--namespace] [--json] [--flags "--exact"]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from timing import best  # benchmarks/timing.py (run as a script, its folder is on the path)

#: case -> (goal in x floor, how the tensor is made; ``n`` elements, fixed seeds)
CASES = {
    "float32": (1.5, "torch.randn(n, generator=g)"),
    "float64": (1.5, "torch.randn(n, generator=g, dtype=torch.float64)"),
    "float16": (3.0, "torch.randn(n, generator=g).half()"),
    "bfloat16": (3.0, "torch.randn(n, generator=g).bfloat16()"),
    "int64": (3.0, "torch.randint(-1000, 1000, (n,), generator=g)"),
    "bool": (3.0, "torch.rand(n, generator=g) < 0.5"),
    "NaN-laden float32": (3.0, "nan_laden(n, g)"),
    "strided x[:,::2]": (3.0, "torch.randn(n // 10000, 20000, generator=g)[:, ::2]"),
}

MAKE = r"""
import torch

def nan_laden(n, g):
    x = torch.randn(n, generator=g)
    x[::100] = float("nan")     # 1% NaN
    x[1::1000] = float("inf")   # 0.2% inf, half of each sign
    x[2::1000] = -float("inf")
    return x

def make(case, n):
    g = torch.Generator().manual_seed(0)
    return eval(CASES[case][1], {"torch": torch, "nan_laden": nan_laden, "n": n, "g": g})
"""

MEMORY_PROBE = r"""
import gc, json, sys, torch
from IPython.core.interactiveshell import InteractiveShell
CASES = json.loads(sys.argv[3])
exec(sys.argv[4])
case, n = sys.argv[1], int(float(sys.argv[2]))
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "tensormagic")
ip.user_ns["x"] = make(case, 2 * 10**6)  # warm up imports, caches and code paths on a small tensor
ip.run_line_magic("tensorinfo", sys.argv[5] + " x")
ip.user_ns["x"] = x = make(case, n)     # the big tensor is resident before the reading
torch.ones(2**22).sum()                 # start torch's worker threads (their stacks are not ours)
gc.collect()

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS")
ip.run_line_magic("tensorinfo", sys.argv[5] + " x")
print(max(0, status("VmHWM") - before), x.numel() * x.element_size())
"""


def peak_share(case: str, n: int, flags: str = "--exact") -> float:
    cases = {k: list(v) for k, v in CASES.items()}
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, case, str(n), json.dumps(cases), MAKE, flags], capture_output=True, text=True, check=True)
    extra, nbytes = map(int, out.stdout.split()[-2:])
    return extra / nbytes


def namespace_figure(repeat: int) -> float:
    """Seconds of `%tensorinfo x` for a small x in a namespace of 100,000 arrays."""
    import numpy as np
    import torch
    from IPython.core.interactiveshell import InteractiveShell

    from benchmarks.bench_namespace import big_namespace

    ip = InteractiveShell.instance()
    ip.user_ns.update(big_namespace(100_000))
    ip.user_ns["x"] = torch.ones(3)
    ip.user_ns["xa"] = np.zeros(3)
    ip.run_line_magic("tensorinfo", "x")
    seconds = min(best(lambda: ip.run_line_magic("tensorinfo", "x"), repeat), best(lambda: ip.run_line_magic("tensorinfo", "xa"), repeat))
    for key in list(ip.user_ns):
        if key.startswith("a") and key[1:].isdigit():
            del ip.user_ns[key]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="1e8", help="elements per tensor (default 1e8)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", default=";".join(CASES), help="semicolon-separated case names")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-lovely", action="store_true", help="skip lovely-tensors")
    parser.add_argument("--namespace", action="store_true", help="also time %%tensorinfo x among 100,000 arrays")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--flags", default="--exact --no-pictures", help="the %%tensorinfo options timed (default: the statistics alone, exact; add pictures with --flags=--exact)")
    args = parser.parse_args()
    n = int(float(args.n))

    import torch
    from IPython.core.interactiveshell import InteractiveShell

    from tensormagic.engine.tensorinfo.statistics import fused

    namespace = {"CASES": CASES}
    exec(MAKE, namespace)
    make = namespace["make"]
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    path = "the fused C pass" if fused.available() else "the pure torch path (C helper not built or switched off)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; n = {n:.0e}; CPU statistics through {path}")
    lovely = None
    if not args.no_lovely:
        import lovely_tensors

        lovely = lovely_tensors.lovely
    header = f"{'case':<20} {'floor ms':>9} {'tensorinfo ms':>14} {'x floor':>8} {'goal':>6} {'lovely ms':>10} {'lovely/ti':>10} {'peak extra':>11}"
    print(header)
    rows = []
    for case in args.cases.split(";"):
        goal = CASES[case][0]
        x = make(case, n)
        ip.user_ns["x"] = x
        floor = min(best(lambda: torch.amax(x), args.repeat), best(lambda: torch.sum(x), args.repeat), best(lambda: torch.count_nonzero(x), args.repeat))
        ip.run_line_magic("tensorinfo", f"{args.flags} x")  # warm-up
        ti = best(lambda: ip.run_line_magic("tensorinfo", f"{args.flags} x"), args.repeat)
        lv = best(lambda: repr(lovely(x)), max(1, args.repeat // 2)) if lovely is not None else float("nan")
        del x
        ip.user_ns.pop("x", None)
        share = float("nan") if args.no_memory else peak_share(case, n, args.flags)
        row = dict(case=case, elements=n, floor_s=floor, tensorinfo_s=ti, x_floor=ti / floor, goal=goal, lovely_s=lv, lovely_over_tensorinfo=lv / ti, peak_extra_share=share)
        rows.append(row)
        print(f"{case:<20} {floor * 1e3:>9.1f} {ti * 1e3:>14.1f} {ti / floor:>8.2f} {'<=' + format(goal, 'g'):>6} {lv * 1e3:>10.1f} {lv / ti:>10.1f} {share:>10.2%}", flush=True)
    print("goals: tensorinfo within the goal x floor; peak extra < 1% of the tensor")
    if args.namespace:
        seconds = namespace_figure(args.repeat)
        print(f"%tensorinfo x (3 elements) among 100,000 arrays: {seconds * 1e3:.1f} ms (goal <= 50 ms)")
        rows.append(dict(case="namespace of 100,000 arrays", tensorinfo_s=seconds, goal_s=0.05))
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
