"""User-derived strings never become markup in %tensorinfo's HTML or widget HTML.

Each payload reaches a panel through a different door (an expression's text, a module class
name, an ``extra_repr``, a dtype-like string, an exception message, a parameter name).  The
output is PARSED with ``html.parser.HTMLParser``: no ``script`` (or other active) element and no
``on*`` attribute may exist, and the payload's text must be there, escaped.
"""

from __future__ import annotations

import html as html_lib
from html.parser import HTMLParser

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from IPython.core.error import UsageError

from tensormagic.render.display import build_panel, render_html
from tensormagic.render.widget import render_widget
from tests.conftest import run

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "\"'><svg onload=alert(1)>",
    "</pre></code></td></table><script>alert('q\"')</script>",
    "<iframe srcdoc='<script>alert(1)</script>'>",
]
ACTIVE_TAGS = {"script", "img", "svg", "iframe", "object", "embed", "link", "meta", "base", "form", "input", "a", "math", "video", "audio"}


class Collector(HTMLParser):
    """Every start tag with its attributes, and all text (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(markup: str, payload: str | None = None) -> None:
    parser = Collector()
    parser.feed(markup)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag not in ACTIVE_TAGS, (tag, markup[:300])
        for name, _ in attrs:
            assert not name.lower().startswith("on"), (tag, name)
            assert name.lower() not in ("srcdoc", "href", "src", "formaction"), (tag, name)
    if payload is not None:
        text = "".join(parser.text)
        # The payload shows as text (maybe truncated with an ellipsis), and its raw form is absent.
        assert payload[:20] in text, (payload, text[:500])
        assert payload not in markup
        assert html_lib.escape(payload[:20], quote=True) in markup


def widget_html_values(box: widgets.Widget) -> list[str]:
    """The value of every ipywidgets.HTML in a widget tree (and every tab title, as text)."""
    found: list[str] = []
    stack = [box]
    while stack:
        w = stack.pop()
        if isinstance(w, (widgets.HTML, widgets.HTMLMath)):
            found.append(w.value)
        if isinstance(w, widgets.Tab):
            found.extend(html_lib.escape(t or "") for t in w.titles)  # titles are plain text
        stack.extend(getattr(w, "children", ()))
    return found


def check_report(report, payload: str) -> None:
    """The report's HTML and widget HTML: inert, payload visible as text."""
    assert_inert(render_html(report), payload)
    box = render_widget(build_panel(report))
    values = widget_html_values(box)
    assert values
    for value in values:
        assert_inert(value)
    joined = "".join(values)
    assert payload not in joined
    assert html_lib.escape(payload[:20], quote=True) in joined


@pytest.mark.parametrize("payload", PAYLOADS)
def test_expression_text_is_escaped(shell, payload):
    shell.user_ns["d"] = {payload: torch.ones(2), "arr": np.ones(2)}
    report = shell.run_line_magic("tensorinfo", f"d[{payload!r}]")
    assert report.name == f"d[{payload!r}]"
    check_report(report, repr(payload)[1:-1][:20])


@pytest.mark.parametrize("payload", PAYLOADS)
def test_module_class_name_extra_repr_and_parameter_names_are_escaped(shell, payload):
    cls = type(payload, (torch.nn.Module,), {"extra_repr": lambda self, p=payload: p})
    cls.__qualname__ = payload
    module = cls()
    module.register_buffer("buf", torch.ones(2))
    inner = torch.nn.Module()
    inner.weight = torch.nn.Parameter(torch.ones(2))
    module.add_module("child", inner)
    shell.user_ns["m"] = module
    report = shell.run_line_magic("tensorinfo", "m")
    assert payload in report.type and payload in report.structure
    check_report(report, payload)
    ns = shell.run_line_magic("tensorinfo", "")
    check_report(ns, payload)  # the namespace table shows the class name


@pytest.mark.parametrize("payload", PAYLOADS)
def test_extra_repr_that_raises_with_markup_is_escaped(shell, payload):
    def extra_repr(self):
        raise RuntimeError(payload)

    shell.user_ns["m"] = type("Broken", (torch.nn.Module,), {"extra_repr": extra_repr})()
    report = shell.run_line_magic("tensorinfo", "m")
    assert any(payload in n for n in report.notes)
    check_report(report, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_tensor_subclass_name_and_failing_statistics_message_are_escaped(shell, payload):
    """A tensor subclass named with markup whose reductions raise an exception with markup."""

    class Evil(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.aminmax, torch.Tensor.reshape, torch.Tensor.to, torch.Tensor.detach):
                raise RuntimeError(payload)
            return super().__torch_function__(func, types, args, kwargs or {})

    Evil.__qualname__ = Evil.__name__ = payload
    Evil.__module__ = "torch.evil"
    shell.user_ns["e"] = torch.ones(3).as_subclass(Evil)
    report = shell.run_line_magic("tensorinfo", "e")
    assert payload in report.type
    check_report(report, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_dtype_like_strings_are_escaped(shell, payload):
    """Structured dtypes carry user field names into the dtype string (and the dtype table)."""
    a = np.zeros(3, dtype=[(payload, "f4"), ("b", "i4")])
    shell.user_ns["a"] = a
    report = shell.run_line_magic("tensorinfo", "a")
    assert payload in report.dtype or repr(payload)[1:-1] in report.dtype
    check_report(report, payload if payload in report.dtype else repr(payload)[1:-1])


@pytest.mark.parametrize("payload", PAYLOADS)
def test_exception_messages_in_usage_errors_are_plain_text(shell, payload):
    """UsageErrors carry user text too; when shown they are text, but check they are one line."""
    shell.user_ns["d"] = {}
    with pytest.raises(UsageError) as err:
        shell.run_line_magic("tensorinfo", f"d[{payload!r}]")
    assert "\n" not in str(err.value)


def test_namespace_panel_escapes_keys_of_every_field(shell):
    payload = PAYLOADS[1]
    run(shell, "import torch, numpy as np")
    cls = type(payload, (torch.nn.Module,), {})
    shell.user_ns["mod"] = cls()
    shell.user_ns["arr"] = np.zeros(2, dtype=[(payload, "u1")])
    ns = shell.run_line_magic("tensorinfo", "")
    check_report(ns, payload)


def test_quotes_survive_as_text_in_attributes_and_cells():
    """The renderer itself: every quote and angle bracket of a panel string is escaped."""
    from tensormagic.render import html
    from tensormagic.render.document import Bars, KeyValues, Note, Panel, Preformatted, Section, Table

    p = "\"'<b onmouseover=x>&"
    panel = Panel(
        title=p,
        headline=p,
        sections=[
            Section(p, [KeyValues([(p, p)]), Table([p], [[p]], caption=p, total_rows=5), Note(p), Bars([p], [1.0], caption=p), Preformatted(p)]),
        ],
    )
    out = html.render_panel(panel)
    assert_inert(out, p)
    assert out.count(html_lib.escape(p, quote=True)) >= 9
    box = render_widget(panel)
    for value in widget_html_values(box):
        assert_inert(value)
