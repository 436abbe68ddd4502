"""Build ``quickstart.ipynb`` (Jupyter) and ``walkthrough.ipy`` (terminal IPython) from one list.

Run ``python examples/build_examples.py`` after editing the cells below; the test suite checks
that both files are up to date.  The walkthrough prints each report explicitly because
``ipython file.ipy`` runs the file as one silent cell (no automatic display).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The walkthrough runs a code cell's source as it is.
SAME = "<same>"

SEED_AUTOGRAD = """x = torch.tensor(3.)  # (1)
w = torch.tensor(4., requires_grad=True)
b = torch.tensor(5., requires_grad=True)
y = w * x + b
# Compute derivatives
y.backward()"""

WHY_NONE = """w = torch.tensor(2., requires_grad=True)
u = torch.tensor(1., requires_grad=True)
h = w * w
d = h.detach()
loss = h * 3 + d
loss.backward()"""

JACOBIAN = """v = torch.tensor([1., 2.], requires_grad=True)
f = torch.stack([v[0] * v[1], v[0] + v[1] ** 2])"""

MODEL_SETUP = """import torch.nn.functional as F
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
batch, target = torch.randn(16, 4), torch.randn(16, 1)"""

MODEL_AUTOGRAD = """loss = F.mse_loss(mlp(batch), target)
loss.backward()"""


IMAGE = """ys, xs = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
image = torch.stack([xs, ys, 1 - xs])  # an RGB picture, 3 x 32 x 32"""

PICTURES = """torch.manual_seed(0)
ys, xs = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
photo = torch.stack([xs, ys, 1 - xs]) * (0.8 + 0.2 * torch.rand(64, 64))  # an RGB image, 3 x 64 x 64
normalised = (photo - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
grid = torch.outer(torch.linspace(-1, 1, 48), torch.linspace(-2, 2, 64))
grid[10:14, 20:26] = float("nan")   # a patch of NaN
grid[36, 50] = float("inf")
grid[40, 8] = float("-inf")
del ys, xs"""

CNN = """torch.manual_seed(0)
cnn = torch.nn.Sequential(
    torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
    torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 10),
)
batch = torch.randn(4, 3, 8, 8)"""

LAYERS_DICT = """r = %tensorinfo cnn --input-size 4,3,8,8
[(row["name"], row["type"], row["macs"]) for row in r.to_dict()["layers"]], r.to_dict()["totals"]["macs"]"""
LAYERS_DICT_TERMINAL = """r = %tensorinfo cnn --input-size 4,3,8,8
print(([(row["name"], row["type"], row["macs"]) for row in r.to_dict()["layers"]], r.to_dict()["totals"]["macs"]))"""


def run_cell_magic(name: str, args: str, body: str) -> str:
    """Walkthrough code for a cell magic: ``ipython file.ipy`` runs the file as one cell, where
    ``%%magic`` cannot stand mid-file, so the walkthrough calls it and prints its report."""
    return f"r = get_ipython().run_cell_magic({name!r}, {args!r}, {body!r})\nprint(r)"


#: (kind, notebook source, walkthrough source: SAME, other code, or None to leave it out)
CELLS: list[tuple[str, str, str | None]] = [
    ("markdown", """# tensormagic quick start

`%load_ext tensormagic` adds three magics to IPython and Jupyter:

* `%tensorinfo EXPR`: the whole truth about an array, tensor or module (and a model layer by
  layer with `--input`);
* `%%autograd`: every derivative in a cell, explained;
* `%todevice`: where every tensor lives, and moving it safely.

and, when you turn it on, a one-line summary for every tensor a cell shows.

This notebook walks the three snippets of *PyTorch and NumPy Basics* under the magics.""", None),
    ("code", "%load_ext tensormagic", SAME),
    ("markdown", """## 1. Derivatives: `%%autograd`

The first snippet: `y = w * x + b`, then `y.backward()`. `%%autograd` runs the cell as usual and
shows every derivative: dy/dw = x = 3, dy/db = 1, and why `x.grad` is None (x was created without
`requires_grad=True`), with the fix. The Graph tab draws the backward graph (with Graphviz): each
node coloured by what the report found (green: a gradient, grey: none, amber: unused, red:
NaN/inf), named after the cell's variables; hover over a node for its cell line and what it saved
for backward. The Health tab charts each parameter's gradient norm on a log scale.""", None),
    ("code", """import torch""", SAME),
    ("code", "%%autograd\n" + SEED_AUTOGRAD, run_cell_magic("autograd", "", SEED_AUTOGRAD)),
    ("markdown", """Why is my `.grad` None? An intermediate (`h`: its gradient is shown, but `.grad` stays None
without `.retain_grad()`), a detached copy (`d`) and a tensor that never reaches the loss (`u`).""", None),
    ("code", "%%autograd\n" + WHY_NONE, run_cell_magic("autograd", "", WHY_NONE)),
    ("markdown", """A non-scalar output gets its Jacobian (within a budget), and `--check` runs
`torch.autograd.gradcheck` in float64 on copies of the inputs.""", None),
    ("code", "%%autograd --check\n" + JACOBIAN, run_cell_magic("autograd", "--check", JACOBIAN)),
    ("markdown", """## 2. NumPy and Torch: dtypes and shared memory

The source material claims that `np.array([[1, 2], [3, 4]])` is `float64`. It is not: integers make
`int64`, and its torch twin is `torch.int64`. `%tensorinfo` shows the truth, and which variables
share memory: `torch.from_numpy` shares, `torch.tensor` copies.""", None),
    ("code", """import numpy as np
import torch

# Create array in NumPy
x = np.array([[1, 2], [3, 4]])
# Converting a NumPy array to a torch tensor: from_numpy shares x's memory
y = torch.from_numpy(x)""", SAME),
    ("code", "%tensorinfo x", "r = %tensorinfo x\nprint(r)"),
    ("code", """y = torch.tensor(x)   # a copy this time
z = y.numpy()         # shares y's memory
x.dtype, y.dtype""", """y = torch.tensor(x)   # a copy this time
z = y.numpy()         # shares y's memory
print((x.dtype, y.dtype))"""),
    ("code", "%tensorinfo y", "r = %tensorinfo y\nprint(r)"),
    ("markdown", """`%tensorinfo` with no argument lists every array, tensor and module, grouped by shared memory.
`r = %tensorinfo x` returns the report instead of showing it: `r.to_dict()` is plain data.""", None),
    ("code", "%tensorinfo", "r = %tensorinfo\nprint(r)"),
    ("code", """r = %tensorinfo x
r.to_dict()["dtype"], r.to_dict()["equivalent_dtype"], [a["name"] for a in r.to_dict()["aliases"]]""", """r = %tensorinfo x
print((r.to_dict()["dtype"], r.to_dict()["equivalent_dtype"], [a["name"] for a in r.to_dict()["aliases"]]))"""),
    ("markdown", """## 3. What a tensor really is

Strides, real storage and value statistics: an `expand`ed tensor repeats elements without
storing them, a transposed tensor is not contiguous, NaN and inf are counted, and bfloat16 has
no NumPy twin.""", None),
    ("code", """base = torch.arange(6.)
wide = base.expand(1000, 6)       # 6,000 elements over 6 stored floats
noisy = torch.randn(10_000)
noisy[::1000] = float("nan")
half = noisy.to(torch.bfloat16)""", SAME),
    ("code", "%tensorinfo wide", "r = %tensorinfo wide\nprint(r)"),
    ("code", "%tensorinfo noisy", "r = %tensorinfo noisy\nprint(r)"),
    ("code", "%tensorinfo half", "r = %tensorinfo half\nprint(r)"),
    ("markdown", """Statistics are exact up to `--budget` elements (default 2**27) and estimated from a fixed-seed
sample above it, labelled as such; `--exact` always computes them exactly. How reports show is a
setting: `%config TensorMagics.display = 'text'` (or `'html'`, `'widget'`, `'auto'`, the default).""", None),
    ("code", "%tensorinfo --budget 1000 noisy", "r = %tensorinfo --budget 1000 noisy\nprint(r)"),
    ("code", """model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))""", SAME),
    ("code", "%tensorinfo model", "r = %tensorinfo model\nprint(r)"),
    ("markdown", """## 4. Where everything lives: `%todevice`

PyTorch moves data to GPUs. `%todevice` lists every tensor, array, module and optimizer with its
device, flags a model split across devices, and moves things all or nothing. This machine may have
no GPU: `meta` (shapes and dtypes, no data) stands in for one.""", None),
    ("code", """a = np.random.rand(3)                      # NumPy's default dtype is float64
t = torch.from_numpy(a)                    # shares a's memory
net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
net[1].to("meta")                          # half the model elsewhere: a classic bug
sgd = torch.optim.SGD(net.parameters(), lr=0.1)""", SAME),
    ("code", "%todevice", "r = %todevice\nprint(r)"),
    ("code", "%todevice t net sgd meta", "r = %todevice t net sgd meta\nprint(r)"),
    ("markdown", """Moving back from `meta` fails (there is no data to copy), and because moves are all or nothing,
`a` is not converted either. A NumPy array moved to the CPU becomes a tensor sharing its memory.""", None),
    ("code", """try:
    %todevice a t cpu
except Exception as error:                 # a UsageError: one line, and nothing was moved
    print(error)
print(type(a).__name__, t.device)""", SAME),
    ("code", "%todevice a cpu", "r = %todevice a cpu\nprint(r)"),
    ("markdown", """## 5. Tensors as pictures

`%tensorinfo` draws what it inspects, on the tensor's own device (a GPU tensor is reduced to at
most 512 x 512 pixels there before anything is copied): an image view for image-shaped tensors
(`(3, H, W)`, `(H, W, 3)`, a batch `(N, 3, H, W)` as a grid), a channel view of feature maps, a
heatmap of 2-D tensors with NaN in magenta, +inf white and -inf black, and a histogram of every
element (Values tab). `--image`, `--channels`, `--heatmap`, `--hist` ask for one, `--no-pictures`
for none, and `--denorm imagenet` (or `MEAN,STD`) undoes a normalisation first.""", None),
    ("code", PICTURES, SAME),
    ("code", "%tensorinfo photo", "r = %tensorinfo photo\nprint(r)"),
    ("code", "%tensorinfo --denorm imagenet normalised", "r = %tensorinfo --denorm imagenet normalised\nprint(r)"),
    ("code", "%tensorinfo --channels normalised", "r = %tensorinfo --channels normalised\nprint(r)"),
    ("code", "%tensorinfo grid", "r = %tensorinfo grid\nprint(r)"),
    ("markdown", """## 6. A model layer by layer: `%tensorinfo model --input x`

One forward pass with module hooks gives a row per module call, in call order and nested by
depth: input and output shapes, own parameters, MACs (as `torch.utils.flop_counter` counts them,
attention included), the bytes each layer saves for backward (training memory), activation
statistics (a dead ReLU shows as its fraction of zeros; where a NaN first appears is flagged) and
the totals, tied parameters counted once. Nothing changes: BatchNorm's running statistics, the
random generators, train/eval mode, hooks and `.grad` are as before, and the graph is freed.""", None),
    ("code", CNN, SAME),
    ("code", "%tensorinfo cnn --input batch", "r = %tensorinfo cnn --input batch\nprint(r)"),
    ("code", LAYERS_DICT, LAYERS_DICT_TERMINAL),
    ("markdown", """## 7. A model's graph, drawn by module

In a model's backward graph each node sits in a box for the module call that made it (`mlp.0` is
the first `Linear`, its weight and bias inside it), found from the cell's own module calls, not
guessed from names; repeated blocks are drawn once, and a graph too big to draw node by node is
drawn one node per module. The terminal shows the same graph as text, each node with its module.""", None),
    ("code", MODEL_SETUP, SAME),
    ("code", "%%autograd\n" + MODEL_AUTOGRAD, run_cell_magic("autograd", "", MODEL_AUTOGRAD)),
    ("markdown", """## 8. Every tensor shown truthfully: automatic display

With `%config TensorMagics.auto_display = True` (or `c.TensorMagics.auto_display = True` in
`ipython_config.py`, or `TENSORMAGIC_AUTO_DISPLAY=1` before `%load_ext`), every tensor, array and
module a cell displays is one line (shape, dtype, device, range, mean ± std, NaN/inf, grad state)
and a small picture; click it for the whole `%tensorinfo` panel. `print`, `repr` and `str` stay
torch's own, and `False` (or `%unload_ext`) puts IPython's display back exactly as it was.""", None),
    ("code", "%config TensorMagics.auto_display = True", SAME),
    ("code", IMAGE + "\nimage", IMAGE + "\ndisplay(image)"),
    ("code", "cnn", "display(cnn)"),
    ("code", "print(image[0, 0, :3])  # print stays torch's own", SAME),
    ("code", "%config TensorMagics.auto_display = False", SAME),
]


def notebook() -> dict:
    """The notebook as nbformat 4 JSON."""
    cells = []
    for number, (kind, source, _) in enumerate(CELLS):
        cell = {"cell_type": kind, "id": f"cell-{number:02d}", "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def walkthrough() -> str:
    """The terminal walkthrough: markdown as comments, reports printed explicitly."""
    out = ["# tensormagic walkthrough for terminal IPython: run `ipython examples/walkthrough.ipy`.",
           "# Generated by examples/build_examples.py from the same cells as quickstart.ipynb.", ""]
    for kind, source, term in CELLS:
        if kind == "markdown":
            out += ["# " + line if line else "#" for line in source.splitlines()]
            if source.startswith("#"):  # a heading: say where we are
                out.append(f"print({'=== ' + source.splitlines()[0].lstrip('# ')!r})")
        elif term is not None:
            out.append(source if term == SAME else term)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def outputs() -> dict[Path, str]:
    """The generated files and their contents."""
    return {
        HERE / "quickstart.ipynb": json.dumps(notebook(), indent=1, ensure_ascii=False) + "\n",
        HERE / "walkthrough.ipy": walkthrough(),
    }


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for path, text in outputs().items():
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python examples/build_examples.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
