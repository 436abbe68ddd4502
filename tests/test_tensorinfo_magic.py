"""%tensorinfo through a real InteractiveShell: the seed snippet, options and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

from tests.conftest import run, shown_as_one_line_usage_error

SEED = """
import numpy as np
import torch
x = np.array([[1, 2], [3, 4]])
y = torch.from_numpy(x)
"""


def test_seed_interop_dtypes_and_sharing(shell):
    run(shell, SEED)
    r = shell.run_line_magic("tensorinfo", "x")
    d = r.to_dict()
    assert d["dtype"] == "int64"  # the seed's text says float64: it is wrong
    assert d["equivalent_dtype"] == "torch.int64"
    assert {"name": "y", "relation": "shares memory"}.items() <= d["aliases"][0].items()
    run(shell, "y = torch.tensor(x)\nz = y.numpy()")
    assert shell.run_line_magic("tensorinfo", "x").aliases == []  # torch.tensor copied
    ry = shell.run_line_magic("tensorinfo", "y").to_dict()
    assert ry["dtype"] == "torch.int64" and ry["equivalent_dtype"] == "int64"
    assert [a["name"] for a in ry["aliases"]] == ["z"]
    assert ry["aliases"][0]["relation"] == "shares memory"
    json.dumps(ry)  # JSON-serialisable


def test_required_keys_present(shell):
    run(shell, "import torch\nt = torch.arange(12.).reshape(3, 4).t()")
    d = shell.run_line_magic("tensorinfo", "t").to_dict()
    for key in [
        "name", "type", "dtype", "equivalent_dtype", "equivalent_note", "shape", "ndim", "numel",
        "itemsize", "strides", "byte_strides", "contiguous", "memory_format", "storage_offset",
        "nbytes", "storage_nbytes", "device", "requires_grad", "is_leaf", "grad_fn", "grad",
        "version", "stats", "aliases", "conversion",
    ]:
        assert key in d, key
    assert d["shape"] == [4, 3] and d["strides"] == [1, 4] and d["byte_strides"] == [4, 16]
    assert d["contiguous"] is False and d["memory_format"] == "Fortran"
    for key in ["min", "max", "mean", "std", "nan", "posinf", "neginf", "zeros", "exact", "sample_size"]:
        assert key in d["stats"], key
    assert d["stats"]["min"] == 0 and d["stats"]["max"] == 11 and d["stats"]["zeros"] == 1


def test_expand_shows_real_storage(shell):
    run(shell, "import torch\nbase = torch.zeros(3)\ne = base.expand(1000, 3)")
    d = shell.run_line_magic("tensorinfo", "e").to_dict()
    assert d["nbytes"] == 12000 and d["storage_nbytes"] == 12
    assert d["strides"] == [0, 1]
    assert [a["name"] for a in d["aliases"]] == ["base"] and d["aliases"][0]["relation"] == "view"


def test_return_value_assigns_without_display_and_semicolon_silences(shell, capsys):
    run(shell, SEED)
    shell.run_cell("r = %tensorinfo x", store_history=False)
    assert type(shell.user_ns["r"]).__name__ == "TensorInfo"
    assert capsys.readouterr().out == ""
    shell.run_cell("%tensorinfo x;", store_history=True)
    assert "tensorinfo" not in capsys.readouterr().out
    shell.run_cell("%tensorinfo x", store_history=True)
    assert "torch.int64" in capsys.readouterr().out


def test_unknown_name_suggests_close_names(shell):
    run(shell, "import numpy as np\nweights = np.ones(3)")
    before = dict(shell.user_ns)
    with pytest.raises(UsageError, match=r"name 'weight' is not defined; did you mean weights\?"):
        shell.run_line_magic("tensorinfo", "weight")
    assert shell.user_ns.keys() == before.keys()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("v = [1, 2, 3]", "v is a list, not an array or tensor; convert it with np.asarray"),
        ("v = None", "v is None, not an array or tensor"),
        ("v = 3.5", "v is a Python float"),
        ("v = {'a': 1}", "v is a dict"),
    ],
)
def test_non_arrays_are_usage_errors(shell, code, message):
    run(shell, code)
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("tensorinfo", "v")


def test_errors_are_one_line_usage_errors(shell, capsys):
    run(shell, "import numpy as np\na = np.ones(2)")
    for line in ["nope", "a[", "1/0", "--budget 0 a", "--wat a"]:
        shown_as_one_line_usage_error(shell, capsys, f"%tensorinfo {line}")


def test_expressions_with_quotes_and_spaces(shell):
    run(shell, "import numpy as np\nd = {'k': np.arange(6).reshape(2, 3)}")
    r = shell.run_line_magic("tensorinfo", "d['k'][:, 1]")
    assert r.shape == [2] and r.name == "d['k'][:, 1]"
    assert r.aliases == [] or all(a.name != "d" for a in r.aliases)


def test_module_summary_counts_and_tied_parameters(shell):
    run(
        shell,
        "import torch\n"
        "emb = torch.nn.Embedding(10, 4)\n"
        "head = torch.nn.Linear(4, 10, bias=False)\n"
        "head.weight = emb.weight\n"
        "model = torch.nn.Sequential(emb, head, torch.nn.BatchNorm1d(10))\n",
    )
    d = shell.run_line_magic("tensorinfo", "model").to_dict()
    assert d["parameters"] == 40 + 20  # tied weight counted once, plus BatchNorm's weight and bias
    assert any(s["relation"] == "same object" for s in d["shared"])
    assert d["devices"] == {"cpu": 6}  # emb.weight, bn weight/bias and 3 buffers
    assert d["buffers"] == 21


def test_namespace_table_groups_shared_memory(shell):
    run(shell, SEED + "c = torch.tensor(x)\nm = torch.nn.Linear(2, 2)")
    d = shell.run_line_magic("tensorinfo", "").to_dict()
    names = {e["name"] for e in d["entries"]}
    assert {"x", "y", "c", "m"} <= names
    assert sorted(map(sorted, d["groups"])) == [["x", "y"]]


def test_config_display_modes(shell):
    run(shell, SEED)
    r = shell.run_line_magic("tensorinfo", "x")
    assert set(r._repr_mimebundle_()) == {"text/plain", "text/html"}  # not in a kernel: no widget
    shell.run_line_magic("config", "TensorMagics.display = 'text'")
    assert set(r._repr_mimebundle_()) == {"text/plain"}
    shell.run_line_magic("config", "TensorMagics.display = 'bogus'")  # %config logs the error
    assert set(r._repr_mimebundle_()) == {"text/plain"}
    shell.run_line_magic("config", "TensorMagics.display = 'auto'")


def test_load_twice_registers_once_and_unload_removes(shell):
    shell.run_line_magic("load_ext", "tensormagic")
    assert sum(1 for c in shell.configurables if type(c).__name__ == "TensorMagics") == 1
    shell.run_line_magic("unload_ext", "tensormagic")
    assert "tensorinfo" not in shell.magics_manager.magics["line"]
    assert not any(type(c).__name__ == "TensorMagics" for c in shell.configurables)
    shell.run_line_magic("load_ext", "tensormagic")
    assert "tensorinfo" in shell.magics_manager.magics["line"]


def test_help_documents_every_option(shell):
    doc = shell.find_line_magic("tensorinfo").__doc__
    for option in ("--budget", "--exact", "expr"):
        assert option in doc


def test_package_and_every_engine_module_import_neither_ipython_nor_ipywidgets():
    """``import tensormagic`` and the pure engine (%tensorinfo, %%autograd, %todevice alike)."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, tensormagic, tensormagic.engine as e\n"
        "names = [m.name for m in pkgutil.walk_packages(e.__path__, 'tensormagic.engine.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names), 'IPython' in sys.modules, 'ipywidgets' in sys.modules, 'tensormagic.render' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, ipython, widgets, render = out.split()
    assert int(count) >= 30 and (ipython, widgets, render) == ("False", "False", "False")


def test_no_engine_module_imports_the_renderers_ipython_or_ipywidgets_anywhere():
    """Not even lazily inside a function: every arrow points from render and the glue down."""
    import ast
    from pathlib import Path

    import tensormagic.engine

    forbidden = ("tensormagic.render", "tensormagic.magics", "IPython", "ipywidgets")
    found = []
    files = sorted(Path(tensormagic.engine.__file__).parent.rglob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.startswith(forbidden)]
        if "importlib" in path.read_text() and any(f in path.read_text() for f in forbidden):
            found.append(f"{path.name}: importlib with a forbidden module name")
    assert len(files) >= 30 and found == []


def test_builtin_names_are_evaluated_not_called_unknown(shell):
    with pytest.raises(UsageError, match=r"^len is a builtin_function_or_method, not an array"):
        shell.run_line_magic("tensorinfo", "len")


@pytest.mark.parametrize("path", ["fused C pass", "pure torch"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_large_float_statistics_are_exact_in_float64(monkeypatch, layout, path):
    """Tensors of several chunks of the pure loop: exact mean (float64 sum), accurate std, zeros."""
    from tensormagic.engine.tensorinfo.statistics import fused, tensor_stats
    from tensormagic.engine.tensorinfo.statistics.cpu import FAST_CHUNK

    if path == "fused C pass" and not fused.available():
        pytest.skip("the C helper is not built here")
    if path == "pure torch":
        monkeypatch.setattr(fused, "_fused", None)

    g = torch.Generator().manual_seed(1)
    t = torch.randn(2 * FAST_CHUNK + 7, generator=g) * 1e-3 + 1e4
    t[::1000] = 0.0
    if layout == "transposed":
        t = t[: 2 * FAST_CHUNK].reshape(2048, -1).t()
    s = tensor_stats(t)
    d = t.double()
    assert s.mean == pytest.approx(float(d.mean()), rel=1e-12)
    assert s.std == pytest.approx(float(d.std()), rel=1e-5)  # float32 centring: as the property tests
    assert s.zeros == int((t == 0).sum()) > 0
    assert (s.min, s.max) == (float(t.min()), float(t.max()))


def test_tables_use_short_torch_type_names_and_sizes():
    from tensormagic.render.format import fmt_bytes, short_type

    assert short_type("torch.nn.modules.container.Sequential") == "torch.nn.Sequential"
    assert short_type("torch.optim.sgd.SGD") == "torch.optim.SGD"
    assert short_type("torch.optim.Optimizer") == "torch.optim.Optimizer"
    assert fmt_bytes(24_000) == "23.4 KiB (24,000 B)" and fmt_bytes(24_000, exact=False) == "23.4 KiB"


def test_numpy_conversion_fix_says_whether_it_copies(shell):
    run(shell, "import torch\nw = torch.ones(3, requires_grad=True)\nb = torch.ones(3, dtype=torch.bfloat16)")
    conv = shell.run_line_magic("tensorinfo", "w").conversion[0]
    assert conv.result == "fails" and conv.detail.endswith("use t.detach().numpy() (the same memory, no copy)")
    conv = shell.run_line_magic("tensorinfo", "b").conversion[0]
    assert conv.result == "fails" and conv.detail.endswith("use t.float().numpy() (a copy)")
