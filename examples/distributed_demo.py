"""Two ranks on 127.0.0.1 (gloo, CPU), each inspecting a sharded tensor and an FSDP2 model.

Run it with ``python examples/distributed_demo.py``: it starts itself once per rank (RANK 0 and 1),
each rank runs an IPython shell with tensormagic loaded, and the parent prints every rank's
reports (the text view) in rank order.  Nothing leaves this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

WORLD = 2
ROOT = Path(__file__).resolve().parents[1]

CELLS = [
    "import torch",
    "from torch.distributed.device_mesh import init_device_mesh",
    "from torch.distributed.tensor import distribute_tensor, Shard, Partial, DTensor",
    "from torch.distributed.fsdp import fully_shard",
    "mesh = init_device_mesh('cpu', (2,))",
    "x = distribute_tensor(torch.arange(32.).reshape(8, 4), mesh, [Shard(0)])",
    "p = DTensor.from_local(torch.ones(2, 3) * (RANK + 1), mesh, [Partial()], run_check=False)",
    "torch.manual_seed(0); model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)); fully_shard(model);",
    "r = %tensorinfo x\nprint(r)",
    "r = %tensorinfo --global x\nprint(r)",
    "r = %tensorinfo p\nprint(r)",
    "r = %tensorinfo model\nprint(r)",
]


def rank_main(rank: int) -> None:
    """One rank: a process group, an IPython shell with the extension, the cells."""
    import torch.distributed as dist
    from IPython.core.interactiveshell import InteractiveShell

    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    shell = InteractiveShell.instance(colors="nocolor")
    shell.run_line_magic("load_ext", "tensormagic")
    shell.user_ns["RANK"] = rank
    for cell in CELLS:
        if not shell.run_cell(cell, store_history=False).success:
            raise SystemExit(f"rank {rank}: the cell {cell!r} failed")
    dist.barrier()
    dist.destroy_process_group()


def main() -> int:
    """Start both ranks, wait (bounded), print their outputs in rank order."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(WORLD):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", TM_DEMO_RANK=str(rank),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        procs.append(subprocess.Popen([sys.executable, __file__], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    code = 0
    for rank, proc in enumerate(procs):
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            out, code = proc.communicate()[0], 1
        print(f"=================== rank {rank} ===================")
        print(out)
        code = code or proc.returncode
    return code


if __name__ == "__main__":
    if "TM_DEMO_RANK" in os.environ:
        rank_main(int(os.environ["TM_DEMO_RANK"]))
    else:
        sys.exit(main())
