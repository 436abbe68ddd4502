"""%tensorinfo against one raw torch pass and lovely-tensors, side by side in one run.

For float32 tensors of 1e6, 1e7 and 1e8 elements it prints the best of N wall times of:
  raw       torch.aminmax(t) + torch.var_mean(t) (the least any statistics tool must do)
  tensorinfo  `%tensorinfo t` in a real InteractiveShell (report built, not rendered)
  render    rendering that report to text + HTML (reported separately)
  lovely    repr(lovely_tensors.lovely(t)), lovely-tensors' default repr
and the ratios tensorinfo/raw (goal <= 1.5) and lovely/tensorinfo (goal >= 10 at 1e8), plus the
peak extra memory of %tensorinfo as a share of the tensor (goal < 5%): in a fresh subprocess, the
kernel's peak RSS (VmHWM, reset just before the call) minus the RSS before it (tensor resident).

Run: .venv/bin/python benchmarks/bench_tensorinfo.py [--sizes 1e6,1e7,1e8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MEMORY_PROBE = r"""
import gc, sys, torch
from IPython.core.interactiveshell import InteractiveShell
n = int(float(sys.argv[1]))
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "tensormagic")
for warm in (1000, 2**21 + 1):           # warm up imports, caches and the large-tensor code paths
    ip.user_ns["t"] = torch.randn(warm)  # (one-time costs, not temporaries) on small tensors
    ip.run_line_magic("tensorinfo", "t")
ip.user_ns["t"] = torch.randn(n)      # the big tensor is resident before the reading
torch.ones(2**22).sum()               # start torch's worker threads (their stacks are not ours)
gc.collect()

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS")
ip.run_line_magic("tensorinfo", "t")
print(max(0, status("VmHWM") - before))
"""


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e6,1e7,1e8")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    import lovely_tensors
    import torch
    from IPython.core.interactiveshell import InteractiveShell

    from tensormagic.render.display import render_html, render_text

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    from tensormagic.engine.tensorinfo.statistics import fused

    path = "the fused C pass" if fused.available() else "the pure torch path (C helper not built)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU float statistics through {path}")
    header = f"{'elements':>10} {'raw s':>8} {'tensorinfo s':>12} {'render s':>9} {'lovely s':>9} {'ti/raw':>7} {'lovely/ti':>10} {'peak extra':>11}"
    print(header)
    rows = []
    for size in args.sizes.split(","):
        n = int(float(size))
        t = torch.randn(n)
        ip.user_ns["t"] = t
        ip.run_line_magic("tensorinfo", "t")  # warm-up
        raw = best(lambda: (torch.aminmax(t), torch.var_mean(t)), args.repeat)
        ti = best(lambda: ip.run_line_magic("tensorinfo", "t"), args.repeat)
        report = ip.run_line_magic("tensorinfo", "t")
        render = best(lambda: (render_text(report), render_html(report)), args.repeat)
        lovely = best(lambda: repr(lovely_tensors.lovely(t)), max(1, args.repeat // 2))
        probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(n)], capture_output=True, text=True, check=True)
        extra = int(probe.stdout.strip().splitlines()[-1])
        share = extra / (n * 4)
        row = dict(elements=n, raw_s=raw, tensorinfo_s=ti, render_s=render, lovely_s=lovely, tensorinfo_over_raw=ti / raw, lovely_over_tensorinfo=lovely / ti, peak_extra_bytes=extra, peak_extra_share=share)
        rows.append(row)
        print(f"{n:>10.0e} {raw:>8.4f} {ti:>12.4f} {render:>9.4f} {lovely:>9.4f} {ti / raw:>7.2f} {lovely / ti:>10.1f} {share:>10.2%}")
        del t, report
        ip.user_ns.pop("t", None)
    print("goals: tensorinfo/raw <= 1.5; lovely/tensorinfo >= 10 at 1e8; peak extra < 5% of the tensor")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
