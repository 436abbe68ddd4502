"""%tensorinfo on a real CUDA GPU: statistics computed on the device with the CPU's values, no
whole copy to the host or on the device, device strings, aliasing between CUDA views, and the
.numpy() conversion reported as failing with the .cpu() fix.  Skipped without a GPU, never faked.

Run on a GPU machine:  .venv/bin/python -m pytest -q tests/test_tensorinfo_cuda.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from tensormagic.engine.tensorinfo import inspect_tensor
from tests.conftest import run

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_statistics_on_the_device_match_the_cpu(shell):
    run(
        shell,
        "import torch\ntorch.manual_seed(0)\nx = torch.randn(1000, 1000, device='cuda') * 3 + 1\n"
        "x[0, 0] = float('nan')\nx[0, 1] = float('inf')\nx[0, 2] = -float('inf')\nx[0, 3] = 0.0",
    )
    r = shell.run_line_magic("tensorinfo", "x")
    s = r.stats
    host = shell.user_ns["x"].cpu().double()
    finite = host[torch.isfinite(host)]
    assert r.device == "cuda:0" or r.device.startswith("cuda:")
    assert (s.nan, s.posinf, s.neginf) == (1, 1, 1)
    assert s.zeros == int((host == 0).sum())
    assert s.exact and s.count == 1_000_000
    assert s.min == pytest.approx(float(finite.min()), rel=1e-6)
    assert s.max == pytest.approx(float(finite.max()), rel=1e-6)
    assert s.mean == pytest.approx(float(finite.mean()), rel=1e-5, abs=1e-6)
    assert s.std == pytest.approx(float(finite.std()), rel=1e-4)


def test_integer_and_half_tensors_on_the_device(shell):
    run(shell, "import torch\ni = torch.arange(-5, 100, device='cuda')\nh = torch.linspace(-2, 2, 4097, device='cuda').half()")
    si = shell.run_line_magic("tensorinfo", "i").stats
    assert (si.min, si.max, si.zeros) == (-5, 99, 1)
    sh = shell.run_line_magic("tensorinfo", "h").stats
    host = shell.user_ns["h"].cpu().double()
    assert sh.min == float(host.min()) and sh.max == float(host.max())
    assert sh.mean == pytest.approx(float(host.mean()), abs=1e-3)


@pytest.mark.parametrize("exact", [False, True], ids=["sampled", "exact"])
def test_no_whole_copy_on_the_device(exact):
    n = 2**27 + (2**20 if not exact else 0)  # above the default budget: sampled; at it: exact
    x = torch.randn(n, device="cuda")
    nbytes = x.numel() * x.element_size()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    report = inspect_tensor("x", x, budget=2**27)
    torch.cuda.synchronize()
    grew = torch.cuda.max_memory_allocated() - base
    assert report.stats is not None and report.stats.exact == exact
    assert grew < 0.05 * nbytes, f"%tensorinfo allocated {grew:,} bytes on the GPU for a {nbytes:,}-byte tensor"


def test_no_whole_copy_to_the_host():
    """In a fresh process, so the peak RSS is this inspection's own."""
    code = textwrap.dedent(
        """
        import json, resource, torch
        from tensormagic.engine.tensorinfo import inspect_tensor
        inspect_tensor("warm", torch.randn(1000, device="cuda"))   # CUDA context and kernels first
        x = torch.randn(2**28, device="cuda")                      # 1 GiB on the GPU
        torch.cuda.synchronize()
        rss = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        r = inspect_tensor("x", x)
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"rss": rss, "before": peak_before, "after": peak_after, "nbytes": 4 * 2**28, "device": r.device}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300).stdout
    m = json.loads(out.strip().splitlines()[-1])
    grew = m["after"] - max(m["before"], m["rss"])
    assert m["device"].startswith("cuda")
    assert grew < 0.05 * m["nbytes"], f"host peak grew by {grew:,} bytes for a {m['nbytes']:,}-byte CUDA tensor"


def test_aliasing_between_two_cuda_views(shell):
    run(shell, "import torch\nbase = torch.arange(10., device='cuda')\nv = base[2:5]\nw = base.view(2, 5)\nother = torch.arange(10., device='cuda')")
    d = shell.run_line_magic("tensorinfo", "v").to_dict()
    rel = {a["name"]: a["relation"] for a in d["aliases"]}
    assert rel.get("base") == "view" and rel.get("w") == "view" and "other" not in rel
    assert d["device"].startswith("cuda:") and d["storage_offset"] == 2
    groups = shell.run_line_magic("tensorinfo", "").to_dict()["groups"]
    assert sorted(map(sorted, groups)) == [["base", "v", "w"]]


def test_cpu_and_cuda_copies_never_alias(shell):
    run(shell, "import torch\nc = torch.arange(4.)\ng = c.cuda()")
    assert shell.run_line_magic("tensorinfo", "g").aliases == []


def test_numpy_conversion_fails_with_the_cpu_fix(shell):
    run(shell, "import torch\nx = torch.ones(3, device='cuda', requires_grad=True)\ny = torch.ones(3, device='cuda')")
    conv = shell.run_line_magic("tensorinfo", "x").conversion[0]
    assert conv.call == ".numpy()" and conv.result == "fails"
    assert ".detach().cpu().numpy()" in conv.detail
    conv = shell.run_line_magic("tensorinfo", "y").conversion[0]
    assert conv.result == "fails" and ".cpu().numpy()" in conv.detail and ".detach()" not in conv.detail


def test_report_pins_no_gpu_memory(shell):
    import gc

    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    run(shell, "import torch\nx = torch.randn(1 << 24, device='cuda')")
    r = shell.run_line_magic("tensorinfo", "x")
    shell.user_ns.pop("x")
    gc.collect()
    torch.cuda.synchronize()
    json.dumps(r.to_dict())
    assert torch.cuda.memory_allocated() - base < (1 << 24) * 4 // 2  # x was freed although its report lives
