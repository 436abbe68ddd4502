"""Real frontends for the tests: JupyterLab + Chromium, nbclient, nbconvert and terminal IPython.

Nothing here mocks Jupyter, IPython or the browser; it only starts the real programs in isolated
temporary directories (the real home directory is never touched) and caches the expensive results
once per test session:

* :func:`executed_quickstart` -- ``examples/quickstart.ipynb`` executed by nbclient in a real kernel;
* :func:`execute_notebook` -- any notebook executed the same way (isolated env);
* :func:`static_html` -- a notebook converted to HTML by nbconvert, widget state removed or kept;
* :class:`JupyterLab` -- a JupyterLab server on 127.0.0.1 (free port, token, readiness check);
* :func:`launch_chromium` -- Debian's Chromium under Playwright with the quiet flags;
* the pytest fixtures ``lab_server``, ``chromium`` and ``quickstart_page`` (import them into a test
  module: ``from frontend_support import chromium, lab_server, quickstart_page  # noqa: F401``).

What each panel must show lives in :data:`PANELS` (one :class:`PanelExpectation` per panel cell of
the quickstart): the kernel, static, browser and terminal tests are all driven by it, so a new
magic's cells are covered by adding entries there.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _build_examples() -> Any:
    """examples/build_examples.py as a module (the cell sources the expectations refer to)."""
    spec = importlib.util.spec_from_file_location("build_examples", REPO / "examples" / "build_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_EXAMPLES = _build_examples()
SEED_AUTOGRAD: str = _EXAMPLES.SEED_AUTOGRAD
WHY_NONE: str = _EXAMPLES.WHY_NONE
JACOBIAN: str = _EXAMPLES.JACOBIAN
MODEL_AUTOGRAD: str = _EXAMPLES.MODEL_AUTOGRAD
EXAMPLES = REPO / "examples"
QUICKSTART = EXAMPLES / "quickstart.ipynb"
WALKTHROUGH = EXAMPLES / "walkthrough.ipy"
#: Screenshots and rendered HTML land here (ignored by git).
ARTIFACTS = REPO / "artifacts" / "frontend"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: Debian's Chromium (``playwright install`` cannot download its own browser on these machines).
CHROMIUM = os.environ.get("TENSORMAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}

# Timeouts (seconds).  Seen here: server ready ~1.5 s, kernel idle 3-4 s, run-all ~1 s; x1.4 with
# both cores busy.  These leave a wide margin without letting a hang eat the suite's budget.
SERVER_READY_TIMEOUT = 30
KERNEL_IDLE_TIMEOUT = 30
RUN_ALL_TIMEOUT = 60
CELL_TIMEOUT = 120


def in_ci() -> bool:
    """True under CI, where a missing browser is a failure, never a skip."""
    return bool(os.environ.get("CI"))


# -- what every panel must show ---------------------------------------------------------------


@dataclass(frozen=True)
class PanelExpectation:
    """One panel cell of the quickstart and what each frontend must show for it.

    ``source``: the code cell's source in the notebook, exactly.  ``title``: the panel's title.
    ``tabs``: the tab titles in order (also the ``<summary>`` of the static HTML and the ``──``
    headings of the text view).  ``texts``: strings every view shows (first tab or headline).
    ``tab_texts``: per tab title, strings that tab shows once clicked.  ``terminal``: strings the
    walkthrough's text output shows for this panel (defaults to ``texts``); ``name``: an id for
    test names and screenshot files.
    """

    name: str
    source: str
    title: str
    tabs: tuple[str, ...]
    texts: tuple[str, ...] = ()
    tab_texts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    terminal: tuple[str, ...] | None = None

    @property
    def terminal_texts(self) -> tuple[str, ...]:
        return self.texts if self.terminal is None else self.terminal


TENSOR_TABS = ("Summary", "Layout & memory", "Values", "Autograd", "Aliases", "Dtypes")
#: The tabs of a tensor with an image, channel view or heatmap (2-D and up).
PICTURE_TABS = ("Summary", "Pictures", "Layout & memory", "Values", "Autograd", "Aliases", "Dtypes")

AUTOGRAD_TABS = ("Gradients", "Graph", "Cost", "Health")

#: Every panel cell of examples/quickstart.ipynb, in notebook order (the kernel test checks that
#: no panel cell is missing here).
PANELS: list[PanelExpectation] = [
    PanelExpectation(
        name="autograd_seed",
        source="%%autograd\n" + SEED_AUTOGRAD,
        title="autograd · y",
        tabs=AUTOGRAD_TABS,
        texts=("dy/dw = 3", "dy/db = 1", "x: no_requires_grad", "requires_grad=False, so autograd computes no gradient", "x = torch.tensor(3., requires_grad=True)"),
        tab_texts={
            # drawn: the text graph's "AddBackward0 → y" is a node labelled y and AddBackward0
            # (test_frontend_browser.py::test_the_graph_is_drawn_and_visible checks they are one node)
            "Graph": ("AddBackward0", "MulBackward0", "line 4: y = w * x + b"),
            "Cost": ("backward / forward", "saved for backward"),
            "Health": ("gradient flow",),
        },
    ),
    PanelExpectation(
        name="autograd_why_none",
        source="%%autograd\n" + WHY_NONE,
        title="autograd · loss",
        tabs=AUTOGRAD_TABS,
        texts=("loss = 16", "dloss/dw = 12", "dloss/dh = 3", "u: unused", "d: detached"),
        tab_texts={"Graph": ("MulBackward0",)},
    ),
    PanelExpectation(
        name="autograd_jacobian",
        source="%%autograd --check\n" + JACOBIAN,
        title="autograd · f",
        tabs=AUTOGRAD_TABS + ("Jacobian", "Check"),
        texts=("df/dv = [3.0, 5.0]",),
        tab_texts={
            "Jacobian": ("df/dv: shape (2, 2)", "[2.0, 1.0]", "[1.0, 4.0]"),
            "Check": ("gradcheck passed",),
        },
    ),
    PanelExpectation(
        name="tensorinfo_x",
        source="%tensorinfo x",
        title="tensorinfo · x",
        tabs=PICTURE_TABS,
        texts=("numpy.ndarray", "int64", "torch.int64", "shares memory with y"),
        tab_texts={
            "Layout & memory": ("strides (bytes)", "(16, 8)"),
            "Aliases": ("shares memory", "torch.from_numpy(a)"),
            "Dtypes": ("int64 <-> torch.int64", "→ torch.int64"),
        },
    ),
    PanelExpectation(
        name="tensorinfo_y",
        source="%tensorinfo y",
        title="tensorinfo · y",
        tabs=PICTURE_TABS,
        texts=("torch.Tensor", "torch.int64", "shares memory with z"),
        tab_texts={"Dtypes": ("torch.int64 <-> int64",)},
    ),
    PanelExpectation(
        name="tensorinfo_all",
        source="%tensorinfo",
        title="tensorinfo · namespace",
        tabs=("Variables", "Shared memory"),
        texts=("11 arrays, tensors and modules", "numpy.ndarray"),
        tab_texts={"Shared memory": ("y, z share memory", "h, d share memory")},
    ),
    PanelExpectation(
        name="tensorinfo_wide",
        source="%tensorinfo wide",
        title="tensorinfo · wide",
        tabs=PICTURE_TABS,
        texts=("(1000, 6)",),
        tab_texts={"Layout & memory": ("strides (elements)", "(0, 1)", "storage bytes")},
    ),
    PanelExpectation(
        name="tensorinfo_noisy",
        source="%tensorinfo noisy",
        title="tensorinfo · noisy",
        tabs=TENSOR_TABS,
        texts=("NaN/inf!",),
        tab_texts={"Values": ("non-finite values present",)},
    ),
    PanelExpectation(
        name="tensorinfo_half",
        source="%tensorinfo half",
        title="tensorinfo · half",
        tabs=TENSOR_TABS,
        texts=("torch.bfloat16", "no twin dtype"),
        tab_texts={"Dtypes": ("torch.bfloat16 has no twin",)},
    ),
    PanelExpectation(
        name="tensorinfo_budget",
        source="%tensorinfo --budget 1000 noisy",
        title="tensorinfo · noisy",
        tabs=TENSOR_TABS,
        texts=("(in a sample)",),
        tab_texts={"Values": ("estimated from a sample of 1,000 of 10,000 elements",)},
    ),
    PanelExpectation(
        name="tensorinfo_model",
        source="%tensorinfo model",
        title="tensorinfo · model",
        tabs=("Summary", "Parameters", "Sharing", "Structure"),
        texts=("Sequential", "58 parameters"),
        tab_texts={"Parameters": ("0.weight", "2.bias"), "Structure": ("Linear(in_features=4",)},
    ),
    # -- %todevice: placement, an all-or-nothing move to meta, a NumPy array becoming a tensor --
    PanelExpectation(
        name="todevice_placement",
        source="%todevice",
        title="todevice · placement",
        tabs=("Placement", "Devices"),
        texts=("20 objects on cpu, meta", "split!", "net is split across devices"),
        tab_texts={"Devices": ("no data: shapes and dtypes only", "auto chooses cpu")},
    ),
    PanelExpectation(
        name="todevice_move",
        source="%todevice t net sgd meta",
        title="todevice · t, net, sgd → meta",
        tabs=("Moves", "Warnings", "Placement", "Devices"),
        texts=("moved t, net, sgd to meta", "cpu, meta"),
        tab_texts={
            "Warnings": ("t no longer shares memory with NumPy array a",),
            "Devices": ("no data: shapes and dtypes only",),
        },
    ),
    PanelExpectation(
        name="todevice_numpy",
        source="%todevice a cpu",
        title="todevice · a → cpu",
        tabs=("Moves", "Placement", "Devices"),
        texts=("moved a to cpu", "numpy.ndarray -> torch.Tensor", "sharing the array's memory"),
        tab_texts={"Devices": ("no data: shapes and dtypes only",)},
    ),
    # -- tensors as pictures: an image, a normalised one undone, its channels, a heatmap with NaN --
    PanelExpectation(
        name="tensorinfo_photo",
        source="%tensorinfo photo",
        title="tensorinfo · photo",
        tabs=PICTURE_TABS,
        texts=("(3, 64, 64)", "range [0, 0.9998"),
        tab_texts={"Pictures": ("intensities [0, 1]", "nothing clipped"), "Values": ("12,288 values counted over every element",)},
    ),
    PanelExpectation(
        name="tensorinfo_denorm",
        source="%tensorinfo --denorm imagenet normalised",
        title="tensorinfo · normalised",
        tabs=PICTURE_TABS,
        texts=("(3, 64, 64)",),
        tab_texts={"Pictures": ("after x * std + mean (imagenet)",)},
    ),
    PanelExpectation(
        name="tensorinfo_channels",
        source="%tensorinfo --channels normalised",
        title="tensorinfo · normalised",
        tabs=PICTURE_TABS,
        texts=("(3, 64, 64)",),
        tab_texts={"Pictures": ("each channel's own statistics", "channel 2")},
    ),
    PanelExpectation(
        name="tensorinfo_grid",
        source="%tensorinfo grid",
        title="tensorinfo · grid",
        tabs=PICTURE_TABS,
        texts=("26 NaN/inf!",),
        tab_texts={"Pictures": ("colour scale: viridis from -2", "NaN magenta (24 pixels)", "+inf white (1 pixel)"), "Values": ("left out: 24 NaN, 1 +inf, 1 -inf",)},
    ),
    # -- a model layer by layer, from one forward pass ---------------------------------------
    PanelExpectation(
        name="tensorinfo_layers",
        source="%tensorinfo cnn --input batch",
        title="tensorinfo · cnn",
        tabs=("Layers", "Summary", "Parameters", "Sharing", "Structure"),
        texts=("75,776 MACs", "saved for backward", "55,296", "BatchNorm2d", "50.3%", "(4, 8, 8, 8)"),
        tab_texts={"Summary": ("buffer elements",), "Structure": ("BatchNorm2d(8",)},
    ),
    # -- a model's graph, grouped by module --
    PanelExpectation(
        name="autograd_model",
        source="%%autograd\n" + MODEL_AUTOGRAD,
        title="autograd · loss",
        tabs=AUTOGRAD_TABS,
        texts=("4 ok", "2 no_requires_grad"),
        tab_texts={
            "Graph": ("mlp.0 · Linear", "mlp.2 · Linear", "AddmmBackward0", "mlp.0.weight"),
            "Health": ("gradient flow",),
        },
    ),
]


@dataclass(frozen=True)
class AutoExpectation:
    """One cell of the quickstart that automatic display shows (its last expression).

    ``line``: the one line, exactly (``text/plain``, the HTML's ``<summary>``, the widget's
    header, the terminal).  ``title`` and ``tabs``: the ``%tensorinfo`` panel it opens.
    ``picture``: the ``alt`` text of its thumbnail.
    """

    name: str
    source: str
    line: str
    title: str
    tabs: tuple[str, ...]
    picture: str


MODULE_TABS = ("Summary", "Parameters", "Sharing", "Structure")

#: The automatically displayed cells of the quickstart, in notebook order (after every panel).
AUTO_DISPLAYS: list[AutoExpectation] = [
    AutoExpectation(
        name="auto_image",
        source=_EXAMPLES.IMAGE + "\nimage",
        line="tensor (3, 32, 32) float32 cpu · range [0, 1] · mean 0.5 ± 0.2979 · no NaN/inf · requires_grad=False",
        title="tensorinfo · image",
        tabs=PICTURE_TABS,
        picture="image",
    ),
    AutoExpectation(
        name="auto_cnn",
        source="cnn",
        line="torch.nn.Sequential · 5,370 parameters · 21.0 KiB · float32, int64 · cpu",
        title="tensorinfo · cnn",
        tabs=MODULE_TABS,
        picture="parameters per child module",
    ),
]


def page_titles() -> list[str]:
    """The titles of every panel the executed quickstart shows, in order (the automatically
    displayed objects' panels come last)."""
    return [p.title for p in PANELS] + [a.title for a in AUTO_DISPLAYS]


def panel(name: str) -> PanelExpectation:
    """The expectation called ``name``."""
    for p in PANELS:
        if p.name == name:
            return p
    raise KeyError(name)


# -- isolated environments --------------------------------------------------------------------


def isolated_env(base: Path) -> dict[str, str]:
    """An environment whose Jupyter, IPython and browser state all live under ``base``.

    The venv's own data dir (``sys.prefix/share/jupyter``, where ipykernel's ``python3`` kernelspec
    and the ipywidgets lab extension live) stays on the Jupyter path; the user's do not.
    """
    env = dict(os.environ)
    dirs = {
        "HOME": base / "home",
        "XDG_CONFIG_HOME": base / "home" / ".config",
        "XDG_CACHE_HOME": base / "home" / ".cache",
        "XDG_DATA_HOME": base / "home" / ".local" / "share",
        "JUPYTER_CONFIG_DIR": base / "jupyter" / "config",
        "JUPYTER_DATA_DIR": base / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": base / "jupyter" / "runtime",
        "IPYTHONDIR": base / "ipython",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # quiets the debugger's frozen-modules warning
    for key in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env.pop(key, None)
    # The kernel must be this interpreter (the venv, tensormagic installed in editable mode).
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- nbclient / nbconvert ---------------------------------------------------------------------


def read_notebook(path: Path = QUICKSTART) -> Any:
    """A notebook file as a NotebookNode (cells without an id get a stable one, as nbformat 4.5 wants)."""
    import nbformat

    data = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(data["cells"]):
        cell.setdefault("id", f"cell-{i}")
    return nbformat.reads(json.dumps(data), as_version=4)


def execute_notebook(nb: Any, store_widget_state: bool = True) -> Any:
    """Execute a copy of ``nb`` in a real ``python3`` kernel (isolated dirs); return the copy.

    Raises nbclient's ``CellExecutionError`` when a cell fails.
    """
    from nbclient import NotebookClient

    nb = copy.deepcopy(nb)
    with tempfile.TemporaryDirectory(prefix="tm-nbclient-") as tmp:
        env = isolated_env(Path(tmp))
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            startup_timeout=KERNEL_IDLE_TIMEOUT,
            kernel_name="python3",
            store_widget_state=store_widget_state,
            resources={"metadata": {"path": tmp}},
        )
        client.execute(env=env, cwd=tmp)
    return nb


@functools.cache
def _executed_quickstart() -> Any:
    return execute_notebook(read_notebook(QUICKSTART))


def executed_quickstart() -> Any:
    """``examples/quickstart.ipynb`` executed once per session by nbclient (a fresh copy each call)."""
    return copy.deepcopy(_executed_quickstart())


def strip_widget_state(nb: Any) -> Any:
    """A copy of ``nb`` without saved widget state: static renders then show each output's HTML."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    return nb


def static_html(nb: Any) -> str:
    """``nb`` converted to HTML by nbconvert (the ``lab`` template, as ``jupyter nbconvert --to html``)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


@functools.cache
def static_quickstart() -> str:
    """The executed quickstart as static HTML without widget state (saved to the artifacts too)."""
    html = static_html(strip_widget_state(executed_quickstart()))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "quickstart-static.html").write_text(html, encoding="utf-8")
    return html


def github_like(html: str) -> Any:
    """``html`` as GitHub shows it: no scripts, style sheets, links or style/class attributes."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(["script", "style", "link", "iframe", "object"]):
        tag.decompose()
    for tag in soup.find_all(True):
        for attr in ("style", "class", "id") + tuple(a for a in tag.attrs if a.startswith("on")):
            tag.attrs.pop(attr, None)
    return soup


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def cell_for(nb: Any, source: str) -> Any:
    """The code cell whose source is exactly ``source`` (exactly one must exist)."""
    found = [c for c in code_cells(nb) if c.source == source]
    assert len(found) == 1, f"expected one code cell {source!r} in the notebook, found {len(found)}"
    return found[0]


def panel_output(cell: Any) -> Any:
    """The single rich output (display_data / execute_result) of a panel cell."""
    rich = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
    assert len(rich) == 1, f"{cell.source!r}: expected one panel output, got {[o.output_type for o in cell.outputs]}"
    return rich[0]


# -- JupyterLab server ------------------------------------------------------------------------


class JupyterLab:
    """A real JupyterLab server on 127.0.0.1, in its own temporary directories.

    ``root``: the server's root dir (copy notebooks there; the repo's files are never opened).
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, theme: str = "light") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tm-jupyterlab-"))
        self.root = self.tmp / "root"
        self.root.mkdir()
        self.settings_dir = self.tmp / "lab-settings"
        self.workspaces_dir = self.tmp / "lab-workspaces"
        self.workspaces_dir.mkdir()
        self.env = isolated_env(self.tmp)
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_settings(theme)

    def _write_settings(self, theme: str) -> None:
        settings = {
            # The news pop-up would cover screenshots (and it fetches from the internet).
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/apputils-extension/themes.jupyterlab-settings": {"theme": THEMES[theme]},
            # Every cell in the DOM (no windowing), so that locators find outputs far down the page.
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        }
        for name, value in settings.items():
            path = self.settings_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value), encoding="utf-8")

    def add_notebook(self, source: Path, name: str | None = None) -> str:
        """Copy a notebook into the root; return its path relative to the root."""
        name = name or source.name
        shutil.copy(source, self.root / name)
        return name

    def lab_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def api(self, path: str) -> Any:
        """GET ``/api/<path>`` with the token; the decoded JSON."""
        req = urllib.request.Request(f"{self.url}/api/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def start(self) -> "JupyterLab":
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--LabApp.user_settings_dir={self.settings_dir}",
            f"--LabApp.workspaces_dir={self.workspaces_dir}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + SERVER_READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.api("status")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"JupyterLab not ready after {SERVER_READY_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the server shuts its kernels down
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "JupyterLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- Chromium under Playwright ----------------------------------------------------------------


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (scripts/setup.sh)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or run .ci/run)"
    return None


def require_browser() -> None:
    """Skip (or, with ``CI`` set, fail) when Playwright or Chromium is missing."""
    why = browser_missing()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"CI is set and the browser tests cannot run: {why}", pytrace=False)
    pytest.skip(why)


def launch_chromium(playwright: Any, home: Path) -> Any:
    """Debian's Chromium, headless, with the flags that keep it quiet on these machines.

    Its HOME and XDG dirs are under ``home`` (Chromium writes crash-report and dconf files there).
    """
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, env=isolated_env(home)
    )


# JavaScript helpers run in the page (JupyterLab exposes ``window.jupyterapp``).
JS_KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""
JS_ALL_EXECUTED = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session.kernel;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  return k.status === 'idle' && cells.every(c => c.model.executionCount !== null);
}"""
JS_CELL_SOURCES = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .map(c => [c.model.type, c.model.sharedModel.getSource()])"""


@dataclass
class LabPage:
    """An open, executed notebook in JupyterLab: the Playwright page plus helpers."""

    page: Any
    server: JupyterLab
    path: str

    def cell(self, source: str) -> Any:
        """The locator of the code cell whose source is exactly ``source``."""
        cells = self.page.evaluate(JS_CELL_SOURCES)
        index = [i for i, (kind, src) in enumerate(cells) if kind == "code" and src == source]
        assert len(index) == 1, f"expected one code cell {source!r}, found {len(index)}"
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index[0])

    def output(self, source: str) -> Any:
        """The output area of that cell."""
        return self.cell(source).locator(".jp-OutputArea-output")

    def panel(self, expect: "PanelExpectation") -> Any:
        """The locator of the widget panel (``.tensormagic-panel``) of that expectation's cell."""
        return self.output(expect.source).locator(".tensormagic-panel")

    def tab(self, expect: "PanelExpectation", title: str) -> Any:
        """The locator of one tab (ARIA role ``tab``) of that panel."""
        return self.panel(expect).get_by_role("tab", name=title, exact=True)

    def select_tab(self, expect: "PanelExpectation", title: str) -> None:
        """Click a tab of that panel and wait until it is the selected one."""
        tab = self.tab(expect, title)
        tab.click()
        self.page.wait_for_function("el => el.getAttribute('aria-selected') === 'true'", arg=tab.element_handle())

    def set_theme(self, theme: str) -> None:
        """Switch JupyterLab's theme (no reload) and wait until it is applied."""
        self.page.evaluate(
            "t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", THEMES[theme]
        )
        light = "true" if theme == "light" else "false"
        self.page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=10_000)
        self.page.wait_for_timeout(300)  # the theme's CSS variables settle


def open_and_run_all(browser: Any, server: JupyterLab, path: str) -> LabPage:
    """Open ``path`` in JupyterLab at 1280x800, wait for the kernel, run all cells, wait for them."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(KERNEL_IDLE_TIMEOUT * 1000)
    page.goto(server.lab_url(path))
    page.wait_for_function(JS_KERNEL_IDLE, timeout=KERNEL_IDLE_TIMEOUT * 1000, polling=100)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(JS_ALL_EXECUTED, timeout=RUN_ALL_TIMEOUT * 1000, polling=100)
    return LabPage(page, server, path)


# -- pytest fixtures (import them into a test module) ------------------------------------------


@pytest.fixture(scope="session")
def lab_server() -> Iterator[JupyterLab]:
    """One JupyterLab server per session, the quickstart notebook copied into its root."""
    require_browser()
    with JupyterLab() as server:
        server.add_notebook(QUICKSTART)
        yield server


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium per session."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tm-chromium-") as home, sync_playwright() as p:
        browser = launch_chromium(p, Path(home))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def quickstart_page(chromium: Any, lab_server: JupyterLab) -> Iterator[LabPage]:
    """The quickstart notebook open in JupyterLab, every cell run: the :class:`LabPage`."""
    lab = open_and_run_all(chromium, lab_server, QUICKSTART.name)
    try:
        yield lab
    finally:
        lab.page.context.close()
