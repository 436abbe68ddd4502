"""examples/distributed_demo.py runs: two gloo ranks on 127.0.0.1, each printing its own reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed

DEMO = Path(__file__).resolve().parents[1] / "examples" / "distributed_demo.py"


def test_distributed_demo_prints_every_ranks_reports() -> None:
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=150, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    parts = out.stdout.split("=================== rank ")
    assert [p.split(" ", 1)[0] for p in parts[1:]] == ["0", "1"]
    rank0, rank1 = parts[1], parts[2]
    assert "local (4, 4) on rank 0 · twin float32 · range [0, 15] (local shard)" in rank0
    assert "local (4, 4) on rank 1 · twin float32 · range [16, 31] (local shard)" in rank1
    for text in (rank0, rank1):
        assert re.search(r"scope\s+the whole tensor \(all ranks\)", text) and "range [0, 31]" in text  # --global
        assert "partial values (not the tensor's)" in text  # Partial(sum) labelled, not passed off as the tensor
        assert "parameters on this rank" in text and "Shard(0)" in text  # the FSDP2 model
