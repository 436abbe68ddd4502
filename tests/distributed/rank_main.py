"""One rank of a launched test: a real InteractiveShell with tensormagic, running the given cells.

Run as ``python rank_main.py CELLS.json OUT_DIR`` with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT`` set.  Every cell runs on every rank (a cell branches on ``RANK`` itself);
cells put what the test compares into the ``RESULTS`` dict (JSON-serialisable values).  The rank
writes ``OUT_DIR/rank{RANK}.json``: each cell's outcome (error as one line, seconds, stdout) and
``RESULTS``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any


def main() -> int:
    cells_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cells: list[str] = json.loads(cells_path.read_text())
    outcome: dict[str, Any] = {"rank": rank, "cells": [], "results": {}}
    import torch.distributed as dist
    from IPython.core.interactiveshell import InteractiveShell

    pg_timeout = float(os.environ.get("TM_PG_TIMEOUT", "60"))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=pg_timeout))
    shell = InteractiveShell.instance(colors="nocolor")
    shell.run_line_magic("load_ext", "tensormagic")
    results: dict[str, Any] = {}
    shell.user_ns.update(RANK=rank, WORLD_SIZE=world, RESULTS=results)
    try:
        for code in cells:
            out = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                res = shell.run_cell(code, store_history=False)
            err = res.error_before_exec or res.error_in_exec
            outcome["cells"].append({
                "ok": err is None,
                "error": None if err is None else f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - start,
                "stdout": out.getvalue()[-20000:],
            })
    except BaseException:  # noqa: BLE001 - the test reads what went wrong from the file
        outcome["crash"] = traceback.format_exc()
    outcome["results"] = _plain(results)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(outcome))
    with contextlib.suppress(Exception):
        dist.barrier()
        dist.destroy_process_group()
    return 0


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_plain(v) for v in value]
        return repr(value)


if __name__ == "__main__":
    sys.exit(main())
