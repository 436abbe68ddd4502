"""Automatic display in the real frontends: a kernel run by nbclient (also switched on by the
environment variable), nbconvert's static HTML, terminal IPython (the walkthrough, and an
interactive session configured by ``ipython_config.py``), and JupyterLab in headless Chromium
(in tests/test_frontend_browser.py, which holds the browser fixtures of the session)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
import torch
from bs4 import BeautifulSoup

from frontend_support import (
    AUTO_DISPLAYS,
    WIDGET_STATE,
    WIDGET_VIEW,
    AutoExpectation,
    cell_for,
    execute_notebook,
    executed_quickstart,
    github_like,
    isolated_env,
    panel_output,
    static_quickstart,
)
from test_frontend_terminal import walkthrough_run

PRINT_CELL = "print(image[0, 0, :3])  # print stays torch's own"


def _image() -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    return torch.stack([xs, ys, 1 - xs])


# -- a real kernel (nbclient) ----------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("expect", AUTO_DISPLAYS, ids=lambda a: a.name)
def test_kernel_output_is_the_line_the_html_and_a_widget(expect: AutoExpectation):
    nb = executed_quickstart()
    out = panel_output(cell_for(nb, expect.source))
    assert out.output_type == "execute_result"
    data = out.data
    assert data["text/plain"] == expect.line
    soup = BeautifulSoup(data["text/html"], "html.parser")
    summary = soup.select_one("div.tm-auto > details > summary")
    assert summary.get_text(" ", strip=True) == expect.line
    img = summary.find("img")
    assert img["alt"] == expect.picture and img["src"].startswith("data:image/png;base64,")
    assert soup.select_one("div.tm-auto > details > div.tensormagic > h4").get_text() == expect.title
    model_id = data[WIDGET_VIEW]["model_id"]
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    assert "tensormagic-auto" in state[model_id]["state"]["_dom_classes"]


@pytest.mark.kernel
def test_kernel_print_stays_torchs_repr():
    nb = executed_quickstart()
    cell = cell_for(nb, PRINT_CELL)
    assert [o.output_type for o in cell.outputs] == ["stream"]
    assert cell.outputs[0].text == str(_image()[0, 0, :3]) + "\n"


@pytest.mark.kernel
def test_environment_variable_turns_it_on_in_a_kernel(monkeypatch):
    monkeypatch.setenv("TENSORMAGIC_AUTO_DISPLAY", "1")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        "%load_ext tensormagic",
        "import torch\nt = torch.arange(6.).reshape(2, 3)\nt",
        "display(torch.nn.Linear(2, 2))",
        "repr(t) == torch.Tensor.__repr__(t), str(t) == torch.Tensor.__str__(t)",
        "%config TensorMagics.auto_display = False",
        "t",
    )]
    out = execute_notebook(nb).cells
    assert out[1].outputs[0].data["text/plain"] == "tensor (2, 3) float32 cpu · range [0, 5] · mean 2.5 ± 1.871 · no NaN/inf · requires_grad=False"
    assert {"text/html", WIDGET_VIEW} <= set(out[1].outputs[0].data)
    assert out[2].outputs[0].output_type == "display_data"
    assert out[2].outputs[0].data["text/plain"] == "torch.nn.Linear · 6 parameters · 24 B · float32 · cpu"
    assert out[3].outputs[0].data["text/plain"] == "(True, True)"
    assert out[5].outputs[0].data == {"text/plain": repr(torch.arange(6.0).reshape(2, 3))}


# -- static HTML (nbconvert) -----------------------------------------------------------------


@pytest.mark.kernel
def test_static_html_opens_the_panel_from_the_line():
    soup = BeautifulSoup(static_quickstart(), "html.parser")
    autos = soup.select("div.tm-auto")
    assert len(autos) == len(AUTO_DISPLAYS)
    for div, expect in zip(autos, AUTO_DISPLAYS):
        details = div.find("details", recursive=False)
        assert not details.has_attr("open")  # closed: one line until clicked
        assert details.summary.get_text(" ", strip=True) == expect.line
        assert details.summary.img["src"].startswith("data:image/png;base64,")
        panel = details.find("div", class_="tensormagic", recursive=False)
        assert panel.h4.get_text() == expect.title
        assert [d.summary.get_text() for d in panel.find_all("details", recursive=False)] == list(expect.tabs)
    stripped = github_like(static_quickstart())  # GitHub drops classes and styles: still a line that opens
    lines = [s.get_text(" ", strip=True) for s in stripped.find_all("summary")]
    assert all(a.line in lines for a in AUTO_DISPLAYS)


# -- terminal IPython ------------------------------------------------------------------------


def test_walkthrough_prints_the_one_line():
    out = walkthrough_run().stdout.splitlines()
    for expect in AUTO_DISPLAYS:
        assert expect.line in out, expect.line
    assert str(_image()[0, 0, :3]) in out


def test_terminal_ipython_configured_by_ipython_config_py():
    with tempfile.TemporaryDirectory(prefix="tm-ipython-cfg-") as tmp:
        env = isolated_env(Path(tmp))
        profile = Path(env["IPYTHONDIR"]) / "profile_default"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "ipython_config.py").write_text(
            'c.InteractiveShellApp.extensions = ["tensormagic"]\nc.TensorMagics.auto_display = True\n', encoding="utf-8"
        )
        commands = "import torch\nt = torch.arange(6.).reshape(2, 3)\nt\nprint(t)\nexit\n"
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ipython"), "--simple-prompt", "--colors=nocolor", "--no-banner"],
            input=commands, env=env, capture_output=True, text=True, timeout=180,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Out[3]: tensor (2, 3) float32 cpu · range [0, 5] · mean 2.5 ± 1.871 · no NaN/inf · requires_grad=False\n" in proc.stdout
    assert str(torch.arange(6.0).reshape(2, 3)) in proc.stdout  # print: torch's own text
    assert "<div" not in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
