"""Automatic display in a real InteractiveShell: opt-in, through IPython's display formatters
only, and everything it registered undone exactly on False, %unload_ext and %reload_ext."""

from __future__ import annotations

import contextlib
import html as html_lib
import io
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from tests.conftest import run
from tests.test_html_injection import PAYLOADS

SETUP = """import torch, numpy as np
torch.manual_seed(0)
x = torch.randn(4, 5)
a = np.arange(12.0).reshape(3, 4)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
"""


@pytest.fixture
def ns(shell):
    run(shell, SETUP)
    yield shell
    shell.run_line_magic("config", "TensorMagics.auto_display = False")


def shown(ip, obj):
    """What a cell whose last expression is ``obj`` displays: the format dict."""
    data, _ = ip.display_formatter.format(obj)
    return data


def printers(ip):
    """Every registered printer of every display formatter (the state that must come back)."""
    fmt = ip.display_formatter
    tables = {key: f for key, f in fmt.formatters.items()}
    tables["mimebundle"] = fmt.mimebundle_formatter
    return {key: (dict(f.type_printers), dict(f.deferred_printers)) for key, f in tables.items()}


def auto(ip, on: bool) -> None:
    ip.run_line_magic("config", f"TensorMagics.auto_display = {on}")


def test_off_by_default_and_the_text_is_torchs_repr(ns):
    x = ns.user_ns["x"]
    assert shown(ns, x)["text/plain"] == repr(x) and "text/html" not in shown(ns, x)


def test_on_a_tensor_shows_one_line_and_html_that_opens_the_panel(ns):
    auto(ns, True)
    x = ns.user_ns["x"]
    data = shown(ns, x)
    line = data["text/plain"]
    s = x.double()
    assert "\n" not in line
    assert line.startswith("tensor (4, 5) float32 cpu · range [")
    assert f"range [{x.min().item():.4g}, {x.max().item():.4g}]" in line
    assert f"mean {s.mean().item():.4g} ± {s.std().item():.4g}" in line
    assert "no NaN/inf" in line and line.endswith("requires_grad=False")
    markup = data["text/html"]
    assert "<script" not in markup and "javascript:" not in markup
    assert markup.count("<details") == markup.count("<summary>") == 1 + 6  # the line + the panel's 6 tabs
    assert markup.index("<details><summary><code>") < markup.index("<details open>")  # closed: the panel is inside
    summary = markup[markup.index("<summary>") : markup.index("</summary>")]
    assert html_lib.escape(line) in summary and '<img src="data:image/png;base64,' in summary
    assert "<h4>tensorinfo · x</h4>" in markup and "<summary>Dtypes</summary>" in markup


def test_lines_for_arrays_modules_scalars_nan_grad_and_lists(ns):
    auto(ns, True)
    run(ns, "w = torch.ones(3, requires_grad=True); y = w * 2; n = torch.tensor([1., float('nan'), float('inf')])")
    ev = ns.ev
    assert shown(ns, ev("a"))["text/plain"] == "ndarray (3, 4) float64 · range [0, 11] · mean 5.5 ± 3.452 · no NaN/inf"  # np.std (ddof=0), as a.std() says
    assert shown(ns, ev("model"))["text/plain"] == "torch.nn.Sequential · 58 parameters · 232 B · float32 · cpu"
    assert shown(ns, ev("torch.tensor(3.)"))["text/plain"] == "tensor () float32 cpu · value 3 · no NaN/inf · requires_grad=False"
    assert shown(ns, ev("w"))["text/plain"].endswith("requires_grad (leaf)")
    assert shown(ns, ev("y"))["text/plain"].endswith("requires_grad (MulBackward0)")
    assert "1 NaN, 1 +inf!" in shown(ns, ev("n"))["text/plain"]
    pair = ev("[x[0, :2], a[0]]")  # what a cell displays is summarised; inside a list, the repr stays
    assert shown(ns, pair)["text/plain"] == repr(pair)
    assert "torch.nn.Parameter (3,) float32" in shown(ns, ev("torch.nn.Parameter(torch.ones(3))"))["text/plain"]


def test_repr_str_and_print_are_untouched_while_on(ns):
    x, a, model = (ns.user_ns[k] for k in ("x", "a", "model"))
    before = [repr(x), str(x), repr(a), str(a), repr(model)]
    printed_before = io.StringIO()
    with contextlib.redirect_stdout(printed_before):
        print(x, a, model)
    auto(ns, True)
    assert [repr(x), str(x), repr(a), str(a), repr(model)] == before
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print(x, a, model)
    assert printed.getvalue() == printed_before.getvalue()
    assert f"{x}" == before[1] and torch.Tensor.__repr__ is torch._tensor.Tensor.__repr__


def test_false_restores_exactly_what_was_there_including_another_extensions(ns):
    fmt = ns.display_formatter

    def theirs_text(obj, p, cycle):
        p.text("theirs")

    def theirs_html(obj):
        return "<b>theirs</b>"

    fmt.formatters["text/plain"].for_type(torch.Tensor, theirs_text)
    fmt.formatters["text/html"].for_type(np.ndarray, theirs_html)
    fmt.mimebundle_formatter.for_type_by_name("torch.nn.modules.module", "Module", lambda obj: {"text/plain": "deferred"})
    before = printers(ns)
    auto(ns, True)
    assert printers(ns) != before
    assert shown(ns, ns.user_ns["x"])["text/plain"].startswith("tensor (4, 5)")  # ours win while on ...
    assert shown(ns, ns.user_ns["a"])["text/html"].startswith("<style>")
    assert shown(ns, ns.user_ns["model"])["text/plain"].startswith("torch.nn.Sequential · 58 parameters")
    auto(ns, False)
    assert printers(ns) == before  # ... and theirs are back, exactly
    assert shown(ns, ns.user_ns["x"])["text/plain"] == "theirs"
    assert shown(ns, ns.user_ns["a"])["text/html"] == "<b>theirs</b>"
    auto(ns, True)
    auto(ns, True)  # twice: still one registration, and False undoes it
    auto(ns, False)
    assert printers(ns) == before
    del fmt.formatters["text/plain"].type_printers[torch.Tensor]
    del fmt.formatters["text/html"].type_printers[np.ndarray]
    fmt.mimebundle_formatter.deferred_printers.pop(("torch.nn.modules.module", "Module"), None)
    fmt.mimebundle_formatter.type_printers.pop(torch.nn.Module, None)


def test_a_printer_registered_after_ours_is_left_alone(ns):
    auto(ns, True)
    plain = ns.display_formatter.formatters["text/plain"]

    def later(obj, p, cycle):
        p.text("later")

    plain.for_type(np.ndarray, later)
    auto(ns, False)
    assert plain.type_printers[np.ndarray] is later
    del plain.type_printers[np.ndarray]


def test_unload_and_reload_restore_the_formatters(ns, monkeypatch):
    ns.run_line_magic("unload_ext", "tensormagic")
    ns.run_line_magic("load_ext", "tensormagic")
    before = printers(ns)
    auto(ns, True)
    ns.run_line_magic("unload_ext", "tensormagic")
    assert printers(ns) == before
    ns.run_line_magic("load_ext", "tensormagic")  # %config is remembered for the session (IPython's rule) ...
    assert shown(ns, ns.user_ns["x"])["text/plain"].startswith("tensor (4, 5)")
    ns.run_line_magic("reload_ext", "tensormagic")  # ... so reloading unregisters, then registers again
    assert shown(ns, ns.user_ns["x"])["text/plain"].startswith("tensor (4, 5)")
    auto(ns, False)
    assert printers(ns) == before
    ns.run_line_magic("reload_ext", "tensormagic")
    assert printers(ns) == before
    monkeypatch.setenv("TENSORMAGIC_AUTO_DISPLAY", "1")
    ns.run_line_magic("reload_ext", "tensormagic")
    assert shown(ns, ns.user_ns["x"])["text/plain"].startswith("tensor (4, 5)")
    monkeypatch.delenv("TENSORMAGIC_AUTO_DISPLAY")
    ns.run_line_magic("unload_ext", "tensormagic")
    assert printers(ns) == before
    ns.run_line_magic("load_ext", "tensormagic")


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False), ("", False)])
def test_environment_variable_is_read_at_load_ext(ns, monkeypatch, value, on):
    ns.run_line_magic("unload_ext", "tensormagic")
    monkeypatch.setenv("TENSORMAGIC_AUTO_DISPLAY", value)
    ns.run_line_magic("load_ext", "tensormagic")
    x = ns.user_ns["x"]
    assert (shown(ns, x)["text/plain"] != repr(x)) is on


def test_a_bad_environment_value_is_one_line_and_changes_nothing(ns, monkeypatch, capsys):
    ns.run_line_magic("unload_ext", "tensormagic")
    monkeypatch.setenv("TENSORMAGIC_AUTO_DISPLAY", "maybe")
    ns.run_line_magic("load_ext", "tensormagic")
    err = capsys.readouterr().err.strip()
    assert err == "tensormagic: TENSORMAGIC_AUTO_DISPLAY='maybe' is not 1 or 0 (true/false, yes/no, on/off); automatic display stays as configured"
    assert shown(ns, ns.user_ns["x"])["text/plain"] == repr(ns.user_ns["x"])


class Refuser(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "element_size":
            raise RuntimeError("element_size is refused")
        return super().__torch_function__(func, types, args, kwargs or {})


class OwnHTML(torch.Tensor):
    def _repr_html_(self):
        return "<i>mine</i>"


def test_per_mime_printers_reuse_the_bundle_instead_of_reading_the_tensor_again(ns, monkeypatch):
    import tensormagic.magics.auto_display as auto_display

    ns.display_formatter.formatters["text/plain"].for_type(torch.Tensor, lambda obj, p, cycle: p.text("theirs"))
    auto(ns, True)
    calls = []
    real = auto_display.tensorinfo_engine.inspect_object
    monkeypatch.setattr(auto_display.tensorinfo_engine, "inspect_object", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert shown(ns, ns.user_ns["x"])["text/plain"].startswith("tensor (4, 5)")
    assert calls == ["x"]  # one report per display
    auto(ns, False)
    del ns.display_formatter.formatters["text/plain"].type_printers[torch.Tensor]


def test_what_cannot_be_summarised_shows_as_torchs_repr_without_an_error(ns, capsys):
    auto(ns, True)
    refuser = torch.ones(3).as_subclass(Refuser)
    data = shown(ns, refuser)
    assert data == {"text/plain": repr(refuser)}
    assert capsys.readouterr().err == ""
    mine = torch.ones(2).as_subclass(OwnHTML)
    assert shown(ns, mine)["text/html"] == "<i>mine</i>"  # its own display method stays


def test_displayed_as_a_cell_output_and_by_display(ns, capsys):
    auto(ns, True)
    ns.run_cell("x", store_history=True)
    ns.run_cell("from IPython.display import display; display(a)", store_history=True)
    out = capsys.readouterr().out
    assert "tensor (4, 5) float32 cpu · range" in out and "ndarray (3, 4) float64" in out


def test_large_tensors_use_the_budget_sample_and_say_so(ns, monkeypatch):
    import tensormagic.magics.auto_display as auto_display

    monkeypatch.setattr(auto_display, "DEFAULT_BUDGET", 1000)
    auto(ns, True)
    line = shown(ns, torch.arange(10_000.0))["text/plain"]
    assert line.endswith("statistics from a sample of 1,000 of 10,000 values (--budget) · requires_grad=False")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_html_escapes_every_user_derived_string(ns, payload):
    cls = type(payload, (torch.nn.Module,), {"extra_repr": lambda self, p=payload: p})
    cls.__qualname__ = payload
    module = cls()
    module.add_module("inner", torch.nn.Linear(2, 2))
    module.add_module("other", torch.nn.Linear(2, 3))
    auto(ns, True)
    markup = shown(ns, module)["text/html"]
    parser = _Tags()
    parser.feed(markup)
    for tag, attrs in parser.tags:
        assert tag not in ("script", "svg", "iframe", "a", "object", "embed"), tag
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "img":  # the picture: an inline PNG and nothing else
            assert attrs["src"].startswith("data:image/png;base64,") and set(attrs) == {"src", "alt"}
    assert payload not in markup and html_lib.escape(payload[:20]) in markup


def test_without_pillow_the_picture_is_a_sparkline(ns, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    auto(ns, True)
    markup = shown(ns, torch.arange(100.0))["text/html"]
    summary = markup[markup.index("<summary>") : markup.index("</summary>")]
    assert "<img" not in summary and '<span class="tm-spark">' in summary
    spark = summary.split('<span class="tm-spark">')[1].split("</span>")[0]
    assert len(spark) == 12 and set(spark) <= set(" ▁▂▃▄▅▆▇█")  # one block per histogram bin


def test_pictures_are_read_from_a_strided_view_only(ns):
    from tensormagic.engine.preview import SIDE, tensor_preview

    big = torch.zeros(4000, 3000)
    big[0, 0] = float("nan")
    p = tensor_preview(big)
    assert p.kind == "heatmap" and len(p.values) <= SIDE and len(p.values[0]) <= SIDE
    assert p.step == (84, 63) and p.values[0][0] != p.values[0][0]  # NaN kept (drawn in its own colour)
    img = tensor_preview(torch.rand(3, 64, 64))
    assert img.kind == "image" and len(img.values) == 32 and len(img.values[0][0]) == 3
    assert tensor_preview(np.arange(10.0)) is None  # 1-D without a histogram: no picture
