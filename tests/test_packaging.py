"""The package as users install it: ``python -m build`` makes an sdist and a wheel, and the wheel,
installed into a fresh virtual environment with only its runtime dependencies, runs the
walkthrough's magics in terminal IPython (a missing package file or dependency fails here,
not for a user)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "tensormagic"
    # build from a copy of the tracked files (not the developer's build/ or .so files)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)], check=True, capture_output=True, text=True)
    return out


def test_build_makes_an_sdist_and_a_wheel_with_every_package_file(dist: Path):
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tensormagic").rglob("*.py")}
    assert expected <= set(names), sorted(expected - set(names))
    assert sdist.stat().st_size > 10_000


def test_the_wheel_runs_the_walkthrough_magics_in_a_fresh_venv(dist: Path, tmp_path: Path):
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # the runtime dependencies only (torch from the pinned wheel these machines hold)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "torch==2.13.0", str(wheel)], check=True, env=env, capture_output=True, text=True, timeout=900)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], check=True, env=env, capture_output=True, text=True).stdout.lower()
    installed = {line.split("==")[0] for line in listed.split()}
    assert {"tensormagic", "torch", "numpy", "ipython", "ipywidgets"} <= installed
    assert not {"pytest", "jupyterlab", "hypothesis", "playwright"} & installed
    script = tmp_path / "walk.ipy"
    script.write_text(
        "%load_ext tensormagic\n"
        "import numpy as np, torch\n"
        "r = get_ipython().run_cell_magic('autograd', '', 'x = torch.tensor(3.)\\nw = torch.tensor(4., requires_grad=True)\\nb = torch.tensor(5., requires_grad=True)\\ny = w * x + b\\ny.backward()')\n"
        "print(r)\n"
        "x = np.array([[1, 2], [3, 4]])\n"
        "y = torch.from_numpy(x)\n"
        "print(get_ipython().run_line_magic('tensorinfo', 'x'))\n"
        "print(get_ipython().run_line_magic('todevice', ''))\n"
        "import tensormagic, sys\n"
        "print('installed at', tensormagic.__file__)\n"
    )
    done = subprocess.run([str(venv / "bin" / "ipython"), "--colors=nocolor", str(script)], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "dy/dw = 3" in out and "x: no_requires_grad" in out
    assert "int64" in out and "shares memory with y" in out
    assert "installed at " + str(venv) in out
