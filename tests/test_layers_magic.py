"""``%tensorinfo model --input x`` in a real InteractiveShell: the report, its Layers tab in the
text, HTML and widget views, and every mistake as a one-line UsageError."""

from __future__ import annotations

import html as html_lib

import ipywidgets as widgets
import pytest
import torch

from tensormagic.engine.layers import LayersInfo
from tensormagic.render.display import build_panel, render_html, render_text
from tensormagic.render.widget import render_widget
from tests.conftest import run, shown_as_one_line_usage_error
from tests.test_html_injection import PAYLOADS, assert_inert, widget_html_values

SETUP = """import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                            torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10))
x = torch.randn(2, 3, 4, 4)
"""


@pytest.fixture
def ns(shell):
    run(shell, SETUP)
    return shell


@pytest.mark.parametrize("line", ["model --input x", "--input x model", "model --input=x", "model --input (x,)", "model --input-size 2,3,4,4", "model --input {'input': x}"])
def test_input_and_input_size_give_the_layers_report(ns, line):
    r = ns.run_line_magic("tensorinfo", line)
    assert isinstance(r, LayersInfo)
    assert [row.name for row in r.layers] == ["model", "0", "1", "2", "3", "4"]
    assert r.totals.macs == 2 * 8 * 4 * 4 * 27 + 2 * 128 * 10
    assert r.layers[1].output_shape == [[2, 8, 4, 4]]


def test_budget_and_exact_apply_to_activation_statistics(ns):
    r = ns.run_line_magic("tensorinfo", "--budget 10 model --input x")
    assert r.totals.stats_budget == 10 and not r.layers[1].stats.exact
    r = ns.run_line_magic("tensorinfo", "--exact model --input x")
    assert r.layers[1].stats.exact


def test_layers_tab_in_all_three_views(ns):
    r = ns.run_line_magic("tensorinfo", "model --input x")
    text = render_text(r)
    assert text.splitlines()[0] == "tensorinfo · model"
    assert "── Layers " in text and text.index("── Layers ") < text.index("── Summary ")
    assert "\n\u00a0\u00a00    Conv2d " in text  # indented by depth under the model's row
    assert "6,912    ████████" in text and "Σ 9,472" in text  # bars, and a container's sum
    assert "9,472 MACs" in text.splitlines()[1] and "peak activations" in text.splitlines()[1]
    markup = render_html(r)
    assert markup.index("<summary>Layers</summary>") < markup.index("<summary>Summary</summary>")
    assert "<details open><summary>Layers</summary>" in markup
    assert '<td class="tm-bar">█' in markup
    assert "\u00a0\u00a00" in html_lib.unescape(markup)  # the indent survives HTML's whitespace rules
    box = render_widget(build_panel(r))
    tab = box.children[1]
    assert isinstance(tab, widgets.Tab) and tab.titles[:2] == ("Layers", "Summary")


def test_without_input_the_module_panel_says_how_to_get_layers(ns):
    r = ns.run_line_magic("tensorinfo", "model")
    assert not isinstance(r, LayersInfo)
    assert "per-layer shapes and costs (MACs, memory, activations): %tensorinfo model --input x, or --input-size 8,3,32,32" in render_text(r)


@pytest.mark.parametrize(
    "cell,message",
    [
        ("%tensorinfo model --input-size 2,4,4,4", "the forward raised in model.0 (Conv2d), given (2, 4, 4, 4): RuntimeError: "),
        ("%tensorinfo x --input x", "--input runs a forward pass of a model: x is a torch.Tensor, not a torch.nn.Module"),
        ("%tensorinfo model --input x --input-size 2,3,4,4", "--input and --input-size conflict"),
        ("%tensorinfo model --input", "--input needs a value, e.g. %tensorinfo model --input x"),
        ("%tensorinfo model --input-size", "--input-size needs a value, e.g. %tensorinfo model --input-size 8,3,32,32"),
        ("%tensorinfo --input x", "--input needs the model to run, e.g. %tensorinfo model --input x"),
        ("%tensorinfo model --input y", "name 'y' is not defined"),
        ("%tensorinfo model --input 3", "--input needs a tensor, a tuple or list of arguments, or a dict of keyword arguments, not a int"),
        ("%tensorinfo model --input-size 2,three", "--input-size needs whole numbers"),
        ("%tensorinfo model --input x --input x", "--input is given twice"),
        ("%tensorinfo lazy --input x", "lazy is a lazy module (weight is uninitialized)"),
    ],
)
def test_mistakes_are_one_line_usage_errors(ns, capsys, cell, message):
    run(ns, "lazy = torch.nn.LazyLinear(3)")
    before = {k: ns.user_ns[k] for k in ("model", "x")}
    state = {k: v.clone() for k, v in ns.user_ns["model"].state_dict().items()}
    err = shown_as_one_line_usage_error(ns, capsys, cell)
    assert message in str(err), str(err)
    assert all(ns.user_ns[k] is v for k, v in before.items())
    assert all(torch.equal(v, ns.user_ns["model"].state_dict()[k]) for k, v in state.items())


def test_help_documents_the_options(ns):
    doc = ns.find_line_magic("tensorinfo").__doc__
    assert "--input" in doc and "--input-size" in doc


@pytest.mark.parametrize("payload", PAYLOADS)
def test_layer_names_types_and_errors_are_escaped(ns, payload):
    cls = type(payload, (torch.nn.Module,), {"forward": lambda self, v: self.inner(v)})
    cls.__qualname__ = payload
    outer = cls()
    outer.add_module("inner", torch.nn.Linear(2, 2))
    ns.user_ns["evil"] = outer
    ns.user_ns["v"] = torch.ones(1, 2)
    r = ns.run_line_magic("tensorinfo", "evil --input v")
    markup = render_html(r)
    assert_inert(markup, payload)
    for value in widget_html_values(render_widget(build_panel(r))):
        assert_inert(value)
        assert payload not in value
