"""User-derived strings never become markup in the panels' HTML or widget HTML.

Each payload reaches a panel through a different door (an expression's text, a module class
name, an ``extra_repr``, a dtype-like string, an exception message, a parameter name; in
``%%autograd``'s pictures a cell line, a variable's dict key, a module's name and class, a custom
Function's name).  The output is PARSED with ``html.parser.HTMLParser``: no ``script`` (or other
active) element and no ``on*`` attribute may exist, and the payload's text must be there,
escaped.  The one ``svg`` allowed is a picture the renderer made (``role="img"``, an
``aria-label``, class ``tm-picture``), holding only drawing elements and presentation
attributes, its only references ``#id``s inside itself.
"""

from __future__ import annotations

import html as html_lib
import re
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
#: Inside a picture's <svg> (names as html.parser gives them: lower case).
SVG_TAGS = {"g", "title", "desc", "defs", "clippath", "path", "polygon", "polyline", "line", "rect", "circle", "ellipse", "text", "tspan", "use"}
SVG_ATTRIBUTES = {
    "viewbox", "width", "height", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "dx", "dy", "points", "d",
    "transform", "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-dasharray",
    "stroke-dashoffset", "stroke-linecap", "stroke-linejoin", "stroke-miterlimit", "opacity", "font-family", "font-size",
    "font-weight", "font-style", "text-anchor", "dominant-baseline", "clip-path", "preserveaspectratio", "id", "href",
    "clippathunits", "text-decoration", "letter-spacing",
}


class Collector(HTMLParser):
    """Every start tag with its attributes and whether it is inside a picture's <svg>, and all
    text (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]], bool]] = []
        self.text: list[str] = []
        self.svg_depth = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs, self.svg_depth > 0))
        if tag == "svg":
            self.svg_depth += 1

    def handle_endtag(self, tag):
        if tag == "svg" and self.svg_depth:
            self.svg_depth -= 1

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs, self.svg_depth > 0))

    def handle_data(self, data):
        self.text.append(data)


def _picture_root(attrs: list[tuple[str, str | None]], inside: bool) -> bool:
    """An <svg> the renderer made: not nested, role=img, an aria-label, class tm-picture, only sizes."""
    a = dict(attrs)
    return not inside and a.get("role") == "img" and bool(a.get("aria-label")) and a.get("class") == "tm-picture" and set(a) <= {"role", "aria-label", "class", "viewbox", "width", "height", "font-family", "font-size", "text-anchor"}


def _picture_img(tag: str, attrs: list[tuple[str, str | None]], inside: bool) -> bool:
    """An <img> the renderer made of a tensor: class tm-picture, an alt text, an inline PNG data
    URI of base64 characters only, and sizes; nothing else."""
    a = dict(attrs)
    src = a.get("src") or ""
    return (
        tag == "img" and not inside and a.get("class") in ("tm-picture", "tm-picture tm-pixels") and bool(a.get("alt"))
        and re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/]+=*", src) is not None and set(a) <= {"class", "alt", "src", "width", "height"}
    )


def assert_inert(markup: str, payload: str | None = None) -> None:
    parser = Collector()
    parser.feed(markup)
    parser.close()
    for tag, attrs, in_svg in parser.tags:
        for name, value in attrs:
            assert not name.lower().startswith("on"), (tag, name)
        if tag == "svg" and _picture_root(attrs, in_svg):
            continue
        if _picture_img(tag, attrs, in_svg):
            continue
        if in_svg:
            assert tag in SVG_TAGS, (tag, markup[:300])
            for name, value in attrs:
                assert name in SVG_ATTRIBUTES, (tag, name)
                assert "javascript" not in (value or "").lower() and "<" not in (value or ""), (tag, name, value)
                if name == "href":
                    assert tag == "use" and re.fullmatch(r"#tm[0-9a-f]+-[\w.:-]+", value or ""), (tag, value)
                if "url(" in (value or ""):
                    assert re.fullmatch(r"url\(#tm[0-9a-f]+-[\w.:-]+\)", value or ""), (tag, name, value)
            continue
        assert tag not in ACTIVE_TAGS, (tag, markup[:300])
        for name, _ in attrs:
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


AUTOGRAD_CELL = """Fn = type(PAYLOAD, (torch.autograd.Function,), {{"forward": staticmethod(lambda ctx, x: x * 2), "backward": staticmethod(lambda ctx, g: g * 2)}})
y = Fn.apply(mods[PAYLOAD](d[PAYLOAD])).sum()  # {comment}
y.backward()"""


@pytest.mark.parametrize("payload", PAYLOADS)
def test_autograd_graph_labels_module_names_and_alt_texts_are_escaped(shell, payload):
    """Markup in a module's dict key (module and parameter names: box labels, leaf labels), its
    class name (box labels), a custom Function's name (an op label), a tensor's dict key (a leaf
    label, the alt text) and a cell line (captions, tooltips) stays text in the picture."""
    run(shell, "import torch")
    block = type(payload, (torch.nn.Module,), {"forward": lambda self, x: torch.relu(self.lin(x))})()
    block.lin = torch.nn.Linear(2, 2)
    shell.user_ns.update(PAYLOAD=payload, mods={payload: block}, d={payload: torch.ones(2, requires_grad=True)})
    report = shell.run_cell_magic("autograd", "", AUTOGRAD_CELL.format(comment=payload))
    names = [m.name for m in report.graph.modules]
    assert f"mods[{payload!r}]" in names and f"mods[{payload!r}].lin" in names
    assert payload in {m.type for m in report.graph.modules}
    assert any(n.op == f"{payload}Backward" for n in report.graph.nodes)
    out = render_html(report)
    assert out.count("<svg") == 2, "the graph and the gradient-flow chart are drawn"
    check_report(report, payload)
    for text in [*names, f"{payload}Backward", f"d[{payload!r}]"]:
        assert text not in out and html_lib.escape(text, quote=True)[:20] in out, text
    label = re.search(r'<svg[^>]*aria-label="([^"]*)"', out).group(1)
    assert "autograd graph" in label and html_lib.escape(f"d[{payload!r}]", quote=True)[:20] in label


def test_svg_sanitiser_drops_active_content_from_a_hostile_svg():
    """inert_svg itself, on an SVG no library would make: scripts, handlers, links, styles, foreign
    content, external references and entities are gone; the drawing stays."""
    from tensormagic.render.svg import inert_svg

    hostile = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(1)" width="10" height="10">'
        '<script>alert(2)</script><style>*{display:none}</style><foreignObject><div>x</div></foreignObject>'
        '<a xlink:href="javascript:alert(3)"><rect width="5" height="5" fill="red" onclick="alert(4)"/></a>'
        '<use href="https://evil.example/x.svg#a"/><use xlink:href="#ok"/><image href="http://x/y.png"/>'
        '<rect id="ok" style="fill: url(http://evil.example/p); stroke: #010203; behavior: url(x.htc)" width="1" height="1"/>'
        '<animate attributeName="href" to="javascript:alert(5)"/><text x="1" y="1">&lt;b&gt;keep</text></svg>'
    )
    out = inert_svg(hostile, 'a "label" <b>')
    assert_inert(out)
    for gone in ("script", "alert", "style>", "foreignObject", "evil", "javascript", "image", "animate", "onload", "onclick", "behavior"):
        assert gone not in out, gone
    assert 'fill="red"' in out and "&lt;b&gt;keep" in out and 'stroke="currentColor"' in out
    assert 'aria-label="a &quot;label&quot; &lt;b&gt;"' in out
    assert re.search(r'<use href="#tm[0-9a-f]+-ok"/>', out) and re.search(r'<rect [^>]*id="tm[0-9a-f]+-ok"', out)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_tensor_pictures_alt_texts_and_labels_are_escaped(shell, payload):
    """An image and a heatmap reached through keys full of markup: every picture's alt text
    (img) or aria-label (the histogram's svg) names them, escaped; nothing else becomes markup."""
    image = torch.rand(3, 8, 8)
    heat = torch.randn(6, 9)
    heat[0, 0] = float("nan")
    shell.user_ns["d"] = {payload: image, payload + "h": heat}
    for key, flags, words in ((payload, "--image --channels --hist", ("RGB image of", "channel view of", "histogram of")), (payload + "h", "", ("heatmap of", "histogram of"))):
        report = shell.run_line_magic("tensorinfo", f"{flags} d[{key!r}]")
        shown = repr(key)[1:-1][:20]
        check_report(report, shown)
        parser = Collector()
        parser.feed(render_html(report))
        labels = [dict(a).get("alt") or dict(a).get("aria-label") for t, a, inside in parser.tags if (t == "img" or (t == "svg" and not inside))]
        assert len(labels) == len(words)
        for word, label in zip(words, labels):
            assert label.startswith(word) and shown in label, (word, label)
