"""`%tensorinfo` with no argument (and with one name) on namespaces of 1k and 10k arrays/tensors.

The namespace mixes what a long notebook session accumulates: independent small arrays, views
of one big NumPy buffer, overlapping slices of one torch buffer (one long chain of overlaps),
tensors made with torch.from_numpy over NumPy slices, plus a few modules, and optionally many
views of one buffer that all overlap each other (n^2 pairs).

For each size it prints the best (and median) of --repeat wall times of, in a real
InteractiveShell:
  namespace   `%tensorinfo`                (the report: grouping by shared memory)
  render      text + HTML of that report    (what the notebook shows)
  one name    `%tensorinfo a1`             (one report: its aliases, from the alias index kept
                                             between calls; a1 is a view of a buffer shared by
                                             a fifth of the namespace, so it has many candidates)
Goals: stays interactive (the test suite asserts < 5 s for 10k); a small array of its own among
100,000 in <= 50 ms: benchmarks/bench_tensorinfo.py --namespace.

Run: .venv/bin/python benchmarks/bench_namespace.py [--sizes 1000,10000] [--repeat 3] [--dense-overlaps]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from IPython.core.interactiveshell import InteractiveShell


def big_namespace(n: int) -> dict:
    """``n`` arrays and tensors: independent ones, views of shared bases, and tensors over arrays
    (also used by tests/test_tensorinfo_robustness.py)."""
    ns: dict = {}
    base = np.zeros(4 * n)
    tbase = torch.zeros(4 * n)
    for i in range(n):
        kind = i % 5
        if kind == 0:
            ns[f"a{i}"] = np.full(4, i)
        elif kind == 1:
            ns[f"a{i}"] = base[4 * i : 4 * i + 4]
        elif kind == 2:
            ns[f"a{i}"] = tbase[4 * i : 4 * i + 24]  # overlaps the next kind-2 slice: one chain
        elif kind == 3:
            ns[f"a{i}"] = torch.from_numpy(base[4 * i - 8 : 4 * i])  # shares with the kind-1 slice
        else:
            ns[f"a{i}"] = torch.ones(3)
    return ns


def build(n: int, dense_overlaps: bool) -> dict:
    ns = big_namespace(n)
    for j in range(5):
        ns[f"model{j}"] = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    if dense_overlaps:  # every one overlaps every other: n^2 / 2 candidate pairs
        shared = np.zeros(n + 100)
        for i in range(n):
            ns[f"o{i}"] = shared[i : i + 100]
    return ns


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dense-overlaps", action="store_true", help="add n views of one buffer that all overlap")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} threads")
    print(f"{'objects':>8}  {'namespace':>16}  {'render':>16}  {'one name':>16}  groups")
    for size in (int(float(s)) for s in args.sizes.split(",")):
        ip.reset(new_session=False)
        ns = build(size, args.dense_overlaps)
        ip.user_ns.update(ns)
        report = ip.run_line_magic("tensorinfo", "")
        ns_best, ns_med = timed(lambda: ip.run_line_magic("tensorinfo", ""), args.repeat)
        r_best, r_med = timed(lambda: report._repr_mimebundle_(), args.repeat)
        one_best, one_med = timed(lambda: ip.run_line_magic("tensorinfo", "a1"), args.repeat)
        print(
            f"{len(ns):>8,}  {ns_best:7.3f}s ({ns_med:5.3f})  {r_best:7.3f}s ({r_med:5.3f})  "
            f"{one_best:7.3f}s ({one_med:5.3f})  {len(report.groups)}" + (f"  [{report.notes[0][:60]}...]" if report.notes else "")
        )


if __name__ == "__main__":
    main()
