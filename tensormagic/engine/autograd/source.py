"""What the cell's source says: where each name is assigned, which statements use which names,
and which tensors were cut from the graph (``.detach()``, ``.data``, ``torch.no_grad()``).

Pure Python (``ast``): cheap, and exact about lines where the recorder of ops is not running.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field

_NO_GRAD = re.compile(r"\b(no_grad|inference_mode)\b|set_grad_enabled\(\s*False\s*\)")
_BACKWARD_CALL = re.compile(r"^\s*(?P<expr>.+?)\.backward\s*\(.*\)\s*;?\s*$")


@dataclass
class Statement:
    """A simple statement: its first line and the names it reads and binds."""

    line: int
    loads: set[str]
    stores: set[str]


@dataclass
class Cut:
    """A name bound to something cut from autograd's graph, and how."""

    line: int
    how: str  # "detach" | "data" | "no_grad"
    code: str
    sources: set[str] = field(default_factory=set)  # the names read by that statement


@dataclass
class CellSource:
    """The facts the report needs from the cell's source."""

    lines: list[str]
    assigned: dict[str, int] = field(default_factory=dict)  # name -> last line binding it
    loaded: set[str] = field(default_factory=set)
    statements: list[Statement] = field(default_factory=list)
    cuts: dict[str, Cut] = field(default_factory=dict)
    loop_targets: set[str] = field(default_factory=set)  # names bound by a for loop (last item: an alias)
    last_expression: str | None = None
    parse_error: str | None = None

    def code(self, line: int | None) -> str | None:
        """The source of a 1-based line, stripped."""
        if line is None or not 0 < line <= len(self.lines):
            return None
        return self.lines[line - 1].strip()

    def code_without_comment(self, line: int | None) -> str | None:
        """The source of a 1-based line without its trailing ``# comment``, stripped."""
        code = self.code(line)
        if code is None:
            return None
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
        except (tokenize.TokenError, SyntaxError):
            return code
        comment = next((tok for tok in tokens if tok.type == tokenize.COMMENT), None)
        return code if comment is None else code[: comment.start[1]].rstrip()

    def backward_expression(self, line: int | None) -> str | None:
        """``loss`` from ``loss.backward()``, ``f(x)`` from ``torch.autograd.grad(f(x), x)``: what the
        gradient call on that line differentiates."""
        text = self.code(line)
        if not text:
            return None
        try:
            tree = ast.parse(text.rstrip(";"))
        except SyntaxError:
            m = _BACKWARD_CALL.match(text)
            return m.group("expr").strip() if m else None
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)):
                attr = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                if attr == "backward" and isinstance(node.func, ast.Attribute) and not node.args and not _is_autograd(node.func.value):
                    return ast.get_source_segment(text, node.func.value)
                if attr in ("backward", "grad") and node.args:
                    return ast.get_source_segment(text, node.args[0])
                if attr == "backward" and isinstance(node.func, ast.Attribute):
                    return ast.get_source_segment(text, node.func.value)
        return None


def _is_autograd(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "autograd") or (isinstance(node, ast.Name) and node.id == "autograd")


def _root_name(node: ast.AST) -> str | None:
    """``model`` for ``model.fc.weight``/``model[0]``, ``w`` for ``w``."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _names(node: ast.AST, ctx: type) -> set[str]:
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ctx):
            out.add(sub.id)
    return out


def _loads_stores(node: ast.AST) -> tuple[set[str], set[str]]:
    """``(_names(node, ast.Load), _names(node, ast.Store))`` in one walk."""
    loads: set[str] = set()
    stores: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            if isinstance(sub.ctx, ast.Load):
                loads.add(sub.id)
            elif isinstance(sub.ctx, ast.Store):
                stores.add(sub.id)
    return loads, stores


def _cut_kind(value: ast.AST) -> str | None:
    for sub in ast.walk(value):
        if isinstance(sub, ast.Attribute) and sub.attr in ("detach", "detach_"):
            return "detach"
        if isinstance(sub, ast.Attribute) and sub.attr == "data" and isinstance(sub.ctx, ast.Load):
            return "data"
    return None


_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Delete)


def analyse_source(source: str, tree: ast.Module | None = None) -> CellSource:
    """Analyse the (transformed) cell, parsed here unless its ``tree`` is given; a syntax error
    leaves an almost empty result."""
    info = CellSource(lines=source.splitlines())
    if tree is None:
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            info.parse_error = str(exc)
            return info
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        info.last_expression = ast.get_source_segment(source, tree.body[-1].value)
    # (node, inside a no_grad block?) - iterative, so deep nesting cannot overflow the stack
    todo: list[tuple[ast.AST, int | None, str | None]] = [(n, None, None) for n in reversed(tree.body)]
    while todo:
        node, no_grad_line, no_grad_code = todo.pop()
        if isinstance(node, (ast.With, ast.AsyncWith)):
            text = " ".join(ast.get_source_segment(source, item.context_expr) or "" for item in node.items)
            inner = (node.lineno, info.code(node.lineno)) if _NO_GRAD.search(text) else (no_grad_line, no_grad_code)
            todo += [(n, inner[0], inner[1]) for n in reversed(node.body)]
            _scan_targets(info, node.items, node.lineno)
            continue
        if isinstance(node, _SIMPLE):
            loads, stores = _loads_stores(node)
            for target in getattr(node, "targets", []) or [getattr(node, "target", None)]:
                if target is not None:
                    root = _root_name(target)
                    if root and not isinstance(target, ast.Name):
                        loads.add(root)  # w.data[...] = ... reads w too
            info.statements.append(Statement(node.lineno, loads, stores))
            info.loaded |= loads
            for name in stores:
                info.assigned[name] = node.lineno
                info.loop_targets.discard(name)
            value = getattr(node, "value", None)
            if stores and value is not None:
                how = _cut_kind(value)
                if how is None and no_grad_line is not None:
                    how = "no_grad"
                if how is not None:
                    code = info.code(node.lineno) or ""
                    if how == "no_grad":
                        code = f"{no_grad_code}  …  {code}"
                    for name in stores:
                        info.cuts[name] = Cut(node.lineno, how, code, _names(value, ast.Load))
                else:
                    for name in stores:
                        info.cuts.pop(name, None)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            info.assigned[node.name] = node.lineno
            # names read inside a function body are uses too (the function may run in this cell)
            info.loaded |= _names(node, ast.Load)
            continue
        if isinstance(node, (ast.For, ast.AsyncFor)):
            for name in _names(node.target, ast.Store):
                info.assigned[name] = node.lineno
                info.loop_targets.add(name)
            info.statements.append(Statement(node.lineno, _names(node.iter, ast.Load), _names(node.target, ast.Store)))
            info.loaded |= _names(node.iter, ast.Load)
        elif isinstance(node, (ast.If, ast.While)):
            info.statements.append(Statement(node.lineno, _names(node.test, ast.Load), set()))
            info.loaded |= _names(node.test, ast.Load)
        for child_field in ("body", "orelse", "finalbody", "handlers"):
            for child in reversed(getattr(node, child_field, []) or []):
                todo.append((child, no_grad_line, no_grad_code))
        if isinstance(node, ast.ExceptHandler):
            continue
        if not isinstance(node, (ast.For, ast.AsyncFor, ast.If, ast.While, ast.Try, ast.ExceptHandler)) and not hasattr(node, "body"):
            loads = _names(node, ast.Load)
            info.loaded |= loads
            info.statements.append(Statement(getattr(node, "lineno", 0), loads, _names(node, ast.Store)))
    return info


def _scan_targets(info: CellSource, items: list[ast.withitem], line: int) -> None:
    for item in items:
        info.loaded |= _names(item.context_expr, ast.Load)
        if item.optional_vars is not None:
            for name in _names(item.optional_vars, ast.Store):
                info.assigned[name] = line


__all__ = ["CellSource", "Cut", "Statement", "analyse_source"]
