"""Automatic display of a float32 tensor beside torch's repr and lovely-tensors, in one run.

For tensors of 1e6, 1e7 and 1e8 elements (and the largest again as a square matrix, whose
picture is a heatmap) it prints the best of N wall times of:
  repr      repr(t), torch's own (what a cell shows without tensormagic)
  text      the display of t where only text is shown (terminal IPython): the one line
  html      the display of t with HTML (the line, the picture and the whole %tensorinfo panel)
  lovely    repr(lovely_tensors.lovely(t)), lovely-tensors' one line
and, in a fresh subprocess, the peak memory of the HTML display as a multiple of the memory
floor (the tensor's own bytes: resident before the display): (tensor + peak extra) / tensor,
goal <= 2.  Above the budget (%tensorinfo's --budget, default 2**27 elements) the statistics come
from a sample and the line says so.

Run: .venv/bin/python benchmarks/bench_auto_display.py [--sizes 1e6,1e7,1e8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from timing import best  # benchmarks/timing.py (run as a script, its folder is on the path)

MEMORY_PROBE = r"""
import gc, sys, torch
from IPython.core.interactiveshell import InteractiveShell
n = int(float(sys.argv[1]))
side = int(sys.argv[2]) if len(sys.argv) > 2 else 0  # a side x side matrix (a heatmap) instead of 1-D
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "tensormagic")
ip.run_line_magic("config", "TensorMagics.auto_display = True")
for warm in (1000, 2**21 + 1):                 # imports, caches, the large-tensor code paths
    ip.display_formatter.format(torch.randn(warm).reshape(-1, 1))
    ip.display_formatter.format(torch.randn(warm))
t = torch.randn(side, side) if side else torch.randn(n)  # resident before the reading
ip.user_ns["t"] = t
torch.ones(2**22).sum()                         # torch's worker threads (their stacks are not ours)
gc.collect()

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

with open("/proc/self/clear_refs", "w") as f:   # reset the peak RSS (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS")
data, _ = ip.display_formatter.format(t)
assert data["text/plain"].startswith("tensor (")
print(max(0, status("VmHWM") - before))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e6,1e7,1e8")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    import lovely_tensors
    import torch
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    ip.run_line_magic("config", "TensorMagics.auto_display = True")
    fmt = ip.display_formatter
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'elements':>10} {'repr s':>8} {'text s':>8} {'html s':>8} {'lovely s':>9} {'lovely/text':>12} {'memory / floor':>15}  line")
    rows = []
    sizes = [(int(float(s)), 0) for s in args.sizes.split(",")]
    largest = max(n for n, _ in sizes)
    sizes.append((largest, int(round(largest**0.5))))  # the largest again as a square matrix
    for n, side in sizes:
        t = torch.randn(side, side) if side else torch.randn(n)
        n = t.numel()
        ip.user_ns["t"] = t
        fmt.format(t)  # warm up
        plain = best(lambda: repr(t), args.repeat)
        fmt.active_types = ["text/plain"]  # as terminal IPython shows it
        text = best(lambda: fmt.format(t), args.repeat)
        line = fmt.format(t)[0]["text/plain"]
        fmt.active_types = fmt.format_types
        html = best(lambda: fmt.format(t), args.repeat)
        lovely = best(lambda: repr(lovely_tensors.lovely(t)), max(1, min(args.repeat, 3)))
        probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(n), str(side)], capture_output=True, text=True, check=True)
        extra = int(probe.stdout.strip().splitlines()[-1])
        ratio = (t.numel() * t.element_size() + extra) / (t.numel() * t.element_size())
        rows.append({"elements": n, "shape": list(t.shape), "repr_s": plain, "text_s": text, "html_s": html, "lovely_s": lovely, "peak_extra_bytes": extra, "memory_over_floor": ratio, "line": line})
        label = f"{n:.0e}" + (f" ({side}x{side})" if side else "")
        print(f"{label:>10} {plain:>8.4f} {text:>8.4f} {html:>8.4f} {lovely:>9.4f} {lovely / text:>11.1f}x {ratio:>14.3f}x  {line}")
        del t
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
