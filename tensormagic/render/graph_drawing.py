"""The autograd graph drawn: a :class:`~.graph_view.GraphView` as DOT, laid out by Graphviz, as inert SVG.

The DOT source is built with the ``graphviz`` Python package (its quoting keeps names and code
lines from ending a string or an ID); the labels are Graphviz HTML-like labels whose every
user-derived part is escaped here.  Tooltips never go through DOT: each node's ``<title>`` (its
DOT name) is replaced by its tooltip when the SVG is sanitised (:func:`~.svg.inert_svg`).

``dot`` runs as a subprocess with a timeout (the ``graphviz`` package's ``pipe`` has none, and
prints Graphviz's warnings to stderr): the binary is ``$TENSORMAGIC_DOT`` when set, else ``dot``
on ``PATH``.  Without either the binary or the package, :func:`draw_graph` says how to get them
and the views show the text graph instead.  Layouts are cached by their DOT source, so showing
one report in several views (or re-running a cell) lays it out once.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from html import escape

from tensormagic.engine.autograd.report import AutogradReport
from tensormagic.render.document import Drawing
from tensormagic.render.graph_nodes import ORDER, WORDS, GraphView, ViewNode
from tensormagic.render.graph_view import FULL_LIMIT, MODULE_LIMIT, graph_view
from tensormagic.render.svg import THEME_COLOR, inert_svg

#: Seconds ``dot`` may take; past that the text graph is shown.
DOT_TIMEOUT = 20.0
#: Widest drawing, in inches (Graphviz scales a wider one down): about 900 pixels.
MAX_WIDTH_IN = 9.4
#: Bytes of SVG one graph picture may take (a report's HTML stays under 200 KB); a bigger
#: drawing is made again with fewer nodes (the module level).
PICTURE_BUDGET = 140_000

#: (fill, border) per status category.
COLORS = {
    "gradient": ("#dcfce7", "#15803d"),
    "none": ("#e2e8f0", "#475569"),
    "unused": ("#fef3c7", "#b45309"),
    "nan": ("#fee2e2", "#b91c1c"),
    "op": ("#f8fafc", "#64748b"),
}
TEXT = "#111827"
FONT = "Helvetica,Arial,sans-serif"
INSTALL_HINT = "apt-get install graphviz, brew install graphviz or conda install graphviz"


def dot_binary() -> str | None:
    """The ``dot`` to run: ``$TENSORMAGIC_DOT`` when set (None if it is not an executable), else PATH's."""
    return _find_dot(os.environ.get("TENSORMAGIC_DOT"), os.environ.get("PATH"))


@functools.lru_cache(maxsize=8)
def _find_dot(chosen: str | None, path: str | None) -> str | None:
    if chosen:
        return chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else None
    return shutil.which("dot", path=path)


def _has_package() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return True


def missing_tools() -> str | None:
    """What is missing to draw graphs, as a one-line hint (None: nothing)."""
    package = _has_package()
    binary = dot_binary() is not None
    if package and binary:
        return None
    where = os.environ.get("TENSORMAGIC_DOT")
    if not binary and not package:
        return f"to see this graph drawn, install Graphviz ({INSTALL_HINT}) and the graphviz Python package (pip install graphviz)"
    if not binary:
        return f"to see this graph drawn, install Graphviz's dot ({INSTALL_HINT})" + (f"; TENSORMAGIC_DOT={where} is not an executable" if where else "")
    return "to see this graph drawn, install the graphviz Python package (pip install graphviz)"


def _text(s: str) -> str:
    """User text for an HTML-like label: escaped, control characters dropped."""
    return escape("".join(ch if ch >= " " else " " for ch in s), quote=True)


def _label(node: ViewNode) -> str:
    parts = []
    if node.title:
        parts.append(f"<B>{_text(node.title)}</B>")
    if node.op:
        parts.append(_text(node.op))
    if node.caption:
        parts.append(f'<FONT POINT-SIZE="8">{_text(node.caption)}</FONT>')
    return "<" + "<BR/>".join(parts or ["&#160;"]) + ">"


def _legend(statuses: set[str]) -> str:
    cells = "".join(
        f'<TD BGCOLOR="{COLORS[c][0]}" COLOR="{COLORS[c][1]}"><FONT COLOR="{TEXT}">{escape(WORDS[c])}</FONT></TD>'
        for c in ORDER if c in statuses or c in ("gradient", "none", "unused", "nan")
    )
    return f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="3" CELLPADDING="2"><TR>{cells}</TR></TABLE>>'


def _effort(nodes: int) -> dict[str, str]:
    """Graphviz's effort for a graph of ``nodes`` nodes: a big one gets fewer crossing-reduction
    and network-simplex iterations and straight edges (spline routing around a thousand nodes
    takes seconds), so that 1,000 nodes lay out in well under a second."""
    if nodes <= 150:
        return {}
    if nodes <= 400:
        return {"mclimit": "0.3", "nslimit": "2", "nslimit1": "2", "remincross": "false"}
    return {"mclimit": "0.05", "nslimit": "0.2", "nslimit1": "0.2", "searchsize": "5", "remincross": "false", "splines": "line"}


def dot_source(view: GraphView) -> str:
    """The DOT source of ``view`` (needs the ``graphviz`` Python package)."""
    import graphviz

    big = len(view.nodes) > 60
    g = graphviz.Digraph("autograd", strict=False)
    g.attr(
        rankdir="TB", bgcolor="transparent", fontname=FONT, fontsize="10", nodesep="0.2", ranksep="0.3",
        margin="0", pad="0.05", size=f"{MAX_WIDTH_IN},200", fontcolor=THEME_COLOR, labelloc="b", labeljust="l",
        label=_legend({n.status for n in view.nodes}), **_effort(len(view.nodes)),
    )
    g.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="10", fontcolor=TEXT, margin="0.12,0.03", height="0.3", penwidth="1")
    g.attr("edge", color=THEME_COLOR, arrowsize="0.6", penwidth="0.8")
    tree: dict[tuple[str, ...], list[ViewNode]] = {}
    for node in view.nodes:
        tree.setdefault(node.box, []).append(node)
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for box in list(tree):
        for depth in range(len(box), 0, -1):
            parent, path = box[: depth - 1], box[:depth]
            kids = children.setdefault(parent, [])
            if path not in kids:
                kids.append(path)
            tree.setdefault(path, [])
            tree.setdefault(parent, [])

    def add_nodes(graph: graphviz.Digraph, path: tuple[str, ...]) -> None:
        for node in tree.get(path, []):
            fill, line = COLORS.get(node.status, COLORS["op"])
            style = {"op": "rounded,filled", "leaf": "filled", "tensor": "filled,dashed", "module": "filled", "more": "rounded,dashed"}[node.kind]
            if big:
                style = style.replace("rounded,", "")  # a rounded box costs 3x the bytes
            extra = {"shape": "box3d"} if node.kind == "module" else {}
            if node.output:
                extra["peripheries"] = "2"
            if node.before_cell:
                style += ",dashed"
            graph.node(node.key, label=_label(node), fillcolor=fill, color=line, style=style, penwidth="2.5" if node.first_nan else ("1.4" if node.kind == "leaf" else "1"), **extra)
        for sub in children.get(path, []):
            key = sub[-1].rsplit("/", 1)[-1]
            box = view.boxes.get(key)
            name = "cluster_" + sub[-1].replace("/", "_")
            with graph.subgraph(name=name) as c:
                if box is not None and box.kind == "repeat":
                    c.attr(label=f"<{_text(box.label)}>", style="rounded,dashed,filled", fillcolor="#8080801a", color=THEME_COLOR, fontcolor=THEME_COLOR, fontsize="9", labelloc="t", penwidth="1")
                elif box is not None and box.kind == "off":
                    c.attr(label=f"<{_text(box.label)}>", style="rounded,dotted", color=THEME_COLOR, fontcolor=THEME_COLOR, fontsize="9", labelloc="t", penwidth="0.8")
                else:
                    label = box.label if box is not None else key
                    c.attr(label=f"<{_text(label)}>", style="rounded,filled", fillcolor="#8080800f", color=THEME_COLOR, fontcolor=THEME_COLOR, fontsize="9", labelloc="t", penwidth="0.7")
                add_nodes(c, sub)

    add_nodes(g, ())
    for e in view.edges:
        if e.style == "saved":
            g.edge(e.a, e.b, style="dotted", arrowhead="none", label="saved", fontsize="8", fontcolor=THEME_COLOR, fontname=FONT)
        else:
            g.edge(e.a, e.b)
    return str(g.source)


def _titles(view: GraphView) -> dict[str, str]:
    out = {n.key: n.tooltip for n in view.nodes}
    for node in view.nodes:
        for path in node.box:
            key = path.rsplit("/", 1)[-1]
            box = view.boxes.get(key)
            if box is not None:
                out["cluster_" + path.replace("/", "_")] = box.tooltip
    return out


def layout(binary: str, source: str, timeout: float = DOT_TIMEOUT) -> tuple[bytes | None, str | None, float]:
    """(SVG bytes, error, seconds) of ``dot -Tsvg`` on ``source``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([binary, "-Tsvg"], input=source.encode("utf-8"), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"Graphviz took more than {timeout:g} s to lay this graph out", time.perf_counter() - t0
    except OSError as exc:
        return None, f"could not run {binary}: {exc.strerror or exc}", time.perf_counter() - t0
    if proc.returncode != 0 or not proc.stdout:
        first = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[0]
        return None, f"Graphviz failed: {first[:200]}", time.perf_counter() - t0
    return proc.stdout, None, time.perf_counter() - t0


def draw_view(view: GraphView, timeout: float = DOT_TIMEOUT) -> Drawing:
    """``view`` drawn as inert inline SVG (or why not)."""
    hint = missing_tools()
    binary = dot_binary()
    if hint is not None or binary is None:
        return Drawing(alt=view.alt, missing=hint)
    key = (binary, repr((view.nodes, view.edges, view.boxes, view.alt)), timeout)  # a view's repr: ~1% of its DOT
    got = _by_view.get(key)
    if got is None:
        got = _drawn(binary, dot_source(view), view.alt, tuple(_titles(view).items()), timeout)
        if len(_by_view) >= 32:
            _by_view.pop(next(iter(_by_view)))
        _by_view[key] = got
    markup, error = got
    if markup is None:
        return Drawing(alt=view.alt, missing=error)
    return Drawing(svg=markup, alt=view.alt, notes=list(view.notes))


#: view -> (inert SVG, error): the same view drawn again (a report shown in several views, a cell
#: run again) skips building its DOT source too.
_by_view: dict[tuple[str, str, float], tuple[str | None, str | None]] = {}


def clear_cache() -> None:
    """Forget every layout (benchmarks and tests time cold drawings)."""
    _by_view.clear()
    _drawn.cache_clear()


@functools.lru_cache(maxsize=32)
def _drawn(binary: str, source: str, alt: str, titles: tuple[tuple[str, str], ...], timeout: float) -> tuple[str | None, str | None]:
    """(inert SVG, error) of one layout (cached: a layout is pure, and a report shown in several
    views, or a cell run again, draws the same graph)."""
    svg, error, _ = layout(binary, source, timeout)
    if svg is None:
        return None, error
    return inert_svg(svg.decode("utf-8"), alt, titles=dict(titles)), None


def draw_graph(report: AutogradReport, full_limit: int = FULL_LIMIT, module_limit: int = MODULE_LIMIT, budget: int = PICTURE_BUDGET, timeout: float = DOT_TIMEOUT) -> Drawing:
    """The picture of ``report``'s graph: every node up to ``full_limit``, else the module level
    (or a cut), within ``budget`` bytes (halving the limits until it fits)."""
    hint = missing_tools()
    if hint is not None:
        return Drawing(missing=hint)
    while True:
        drawing = draw_view(graph_view(report, full_limit, module_limit), timeout)
        if drawing.svg is None or len(drawing.svg) <= budget or full_limit < 8:
            return drawing
        full_limit, module_limit = min(full_limit, max(4, len(report.graph.nodes))) // 2, module_limit // 2


__all__ = ["COLORS", "DOT_TIMEOUT", "PICTURE_BUDGET", "clear_cache", "dot_binary", "dot_source", "draw_graph", "draw_view", "layout", "missing_tools"]
