"""Launch N ranks on 127.0.0.1 (gloo), each a real InteractiveShell with tensormagic, and read what they wrote.

:func:`launch` runs the same cells on every rank (see :mod:`tests.distributed.rank_main`) and
returns one dict per rank.  Every rank is bounded: the process group's timeout is short and the
whole launch is killed after ``timeout`` seconds, so a test can never leave a rank waiting.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

RANK_MAIN = Path(__file__).with_name("rank_main.py")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", TM_PG_TIMEOUT=env.get("TM_PG_TIMEOUT", "60"),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


class LaunchError(AssertionError):
    """A rank crashed, hung or wrote nothing: the message has every rank's log tail."""


def launch(world: int, cells: list[str], timeout: float = 150.0) -> list[dict[str, Any]]:
    """Run ``cells`` (IPython source, dedented) on ``world`` ranks; each rank's outcome, by rank."""
    cells = [textwrap.dedent(c).strip("\n") for c in cells]
    with tempfile.TemporaryDirectory(prefix="tm-dist-") as tmp:
        out = Path(tmp)
        cells_file = out / "cells.json"
        cells_file.write_text(json.dumps(cells))
        port = free_port()
        logs = [open(out / f"rank{r}.log", "w+") for r in range(world)]  # noqa: SIM115 - closed below
        procs = [subprocess.Popen([sys.executable, str(RANK_MAIN), str(cells_file), str(out)], env=rank_env(r, world, port), stdout=logs[r], stderr=subprocess.STDOUT, cwd=str(ROOT)) for r in range(world)]
        deadline = time.monotonic() + timeout
        try:
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            hung = [r for r, p in enumerate(procs) if p.poll() is None]
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        tails = []
        for r, f in enumerate(logs):
            f.seek(0)
            tails.append(f"--- rank {r} (exit {procs[r].returncode}) ---\n" + f.read()[-3000:])
            f.close()
        if hung:
            raise LaunchError(f"ranks {hung} still ran after {timeout:g} s and were killed\n" + "\n".join(tails))
        outcomes = []
        for r in range(world):
            path = out / f"rank{r}.json"
            if not path.exists():
                raise LaunchError(f"rank {r} wrote no result\n" + "\n".join(tails))
            got = json.loads(path.read_text())
            if "crash" in got:
                raise LaunchError(f"rank {r} crashed:\n{got['crash']}\n" + "\n".join(tails))
            outcomes.append(got)
        return outcomes


__all__ = ["LaunchError", "free_port", "launch", "rank_env"]
