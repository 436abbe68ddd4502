"""SVG from a library (Graphviz, matplotlib) made inert and small enough to inline in a panel.

:func:`inert_svg` parses the markup (``xml.etree``), keeps only drawing elements and
presentation attributes from an allowlist (no ``script``, ``foreignObject``, ``style`` element,
event handler, external link or animation survives), turns ``style="..."`` declarations into
attributes (GitHub strips style attributes), replaces a marker colour by ``currentColor`` (so lines
and text follow the light or dark theme), keeps only ids something refers to (renamed per
picture, so two pictures on one page never clash), rounds coordinates, and writes the tree back
out with every text and attribute value escaped.  The root gets ``role="img"`` and the
``aria-label``; ``<title>`` texts can be replaced (Graphviz titles a node by its DOT name: the
caller passes the tooltip to show instead).
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from html import escape

#: Drawn with this colour, a line or text becomes ``currentColor`` (the theme's text colour).
THEME_COLOR = "#010203"

_ELEMENTS = {
    "svg", "g", "title", "desc", "defs", "clipPath", "path", "polygon", "polyline", "line", "rect",
    "circle", "ellipse", "text", "tspan", "use",
}
_DROP_WITH_CONTENT = {"script", "style", "metadata", "foreignObject", "a", "image", "iframe", "animate", "set", "animateTransform", "animateMotion"}
_ATTRIBUTES = {
    "viewBox", "width", "height", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "dx", "dy",
    "points", "d", "transform", "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity",
    "stroke-dasharray", "stroke-dashoffset", "stroke-linecap", "stroke-linejoin", "stroke-miterlimit", "opacity",
    "font-family", "font-size", "font-weight", "font-style", "text-anchor", "dominant-baseline", "clip-path",
    "preserveAspectRatio", "id", "href", "clipPathUnits", "text-decoration", "letter-spacing",
}
#: Style properties kept (as attributes).
_STYLE = _ATTRIBUTES - {"viewBox", "width", "height", "x", "y", "points", "d", "transform", "id", "href", "preserveAspectRatio"}
_NUMBER = re.compile(r"-?\d+\.\d{2,}")
_URL = re.compile(r"^url\(#([\w.:-]+)\)$")
#: Anything in a value that needs a closer look (most values are numbers and colours: none).
_SUSPECT = re.compile(r"[<>\"'`\\&]|url\(|javascript|expression\(|^#", re.IGNORECASE)
_HREF = re.compile(r"#[\w.:-]+")
_LOCAL: dict[str, str] = {}


def _local(tag: str) -> str:
    got = _LOCAL.get(tag)
    if got is None:
        got = _LOCAL[tag] = tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
    return got


def _short(match: re.Match[str]) -> str:
    text = f"{float(match.group()):.1f}"
    return "0" if text in ("0.0", "-0.0") else text.removesuffix(".0")


def _attributes(el: ET.Element) -> dict[str, str]:
    """The element's allowed attributes, style declarations included, links checked."""
    out: dict[str, str] = {}
    for raw, value in el.attrib.items():
        name = _local(raw)
        if name == "style":
            for decl in value.split(";"):
                prop, _, val = decl.partition(":")
                prop, val = prop.strip(), val.strip()
                if prop in _STYLE and val:
                    out.setdefault(prop, val)
        elif name in _ATTRIBUTES:
            out[name] = value
    for name, value in list(out.items()):
        if name == "href":
            if not _HREF.fullmatch(value.strip()):
                del out[name]  # only a reference inside this picture, never a link
            continue
        if _SUSPECT.search(value) is None:
            continue
        value = value.strip()
        if value.lower() == THEME_COLOR:
            out[name] = "currentColor"
        elif value.startswith("#") and re.fullmatch(r"#[0-9a-fA-F]{3,8}", value):
            out[name] = value  # a colour
        elif _URL.match(value):
            out[name] = value  # a reference inside this picture (clip-path="url(#p1)")
        else:
            del out[name]  # markup, quotes, script, CSS expressions, outside references
    return out


def inert_svg(markup: str, label: str, titles: Mapping[str, str] | None = None, css_class: str = "tm-picture", font: str | None = None) -> str:
    """``markup`` (a library's SVG) as an inert inline ``<svg>`` labelled ``label`` (see the
    module docstring).  ``titles``: DOT name -> tooltip; other ``<title>`` elements are dropped
    when ``titles`` is given.  ``font``: the font family of every text (the library's own font
    may not exist in the browser)."""
    root = ET.fromstring(markup.encode("utf-8") if isinstance(markup, str) else markup)
    if _local(root.tag) != "svg":
        raise ValueError("not an SVG document")
    prefix = "tm" + hashlib.blake2s(markup.encode("utf-8", "replace"), digest_size=4).hexdigest()
    referenced: set[str] = set()
    for el in root.iter():
        for raw, value in el.attrib.items():
            name = _local(raw)
            m = _URL.match(value.strip()) if "url(" in value else None
            if m:
                referenced.add(m.group(1))
            elif name == "href" and value.startswith("#"):
                referenced.add(value[1:])
            elif name == "style":
                for ref in re.findall(r"url\(#([\w.:-]+)\)", value):
                    referenced.add(ref)
    # text properties most texts share go on the root once (they inherit)
    hoisted: dict[str, str] = {}
    cache: dict[int, dict[str, str]] = {}
    texts = [el for el in root.iter() if _local(el.tag) == "text"]
    for el in texts:
        cache[id(el)] = _attributes(el)
    for prop in ("font-family", "font-size", "text-anchor"):
        values = [cache[id(el)].get(prop) for el in texts]
        common = max(set(values), key=lambda v: (values.count(v), str(v))) if values else None
        if common is not None and values.count(common) * 2 > len(values):
            hoisted[prop] = common
    if font is not None:
        hoisted["font-family"] = font

    def emit(el: ET.Element, parts: list[str]) -> None:
        tag = _local(el.tag)
        if tag == "a":
            for child in el:
                emit_child(child, parts)
            return
        attrs = cache.pop(id(el), None) or _attributes(el)
        if tag == "title":
            text = (el.text or "").strip()
            if titles is not None:
                if text not in titles:
                    return
                text = titles[text]
            if text:
                parts.append(f"<title>{escape(text, quote=True)}</title>")
            return
        if tag in ("polygon", "path", "rect") and attrs.get("fill", "") in ("transparent", "none") and attrs.get("stroke", "none") in ("transparent", "none"):
            return  # an invisible background
        if tag in ("text", "tspan", "g"):
            for prop, value in hoisted.items():
                if attrs.get(prop) == value or (prop == "font-family" and font is not None):
                    attrs.pop(prop, None)
        ident = attrs.pop("id", None)
        if ident is not None and ident in referenced:
            attrs["id"] = f"{prefix}-{ident}"
        for name, value in list(attrs.items()):
            m = _URL.match(value)
            if m:
                attrs[name] = f"url(#{prefix}-{m.group(1)})"
            elif name == "href":
                attrs[name] = f"#{prefix}-{value[1:]}"
            elif name in ("points", "d", "transform", "x", "y", "width", "height", "viewBox", "cx", "cy", "rx", "ry", "r", "x1", "x2", "y1", "y2", "font-size", "stroke-width"):
                attrs[name] = _NUMBER.sub(_short, value)
        if tag == "svg" and el is root:
            attrs = {k: v for k, v in attrs.items() if k in ("viewBox", "width", "height")} | {k: _NUMBER.sub(_short, v) for k, v in hoisted.items()}
            attrs["class"] = css_class
            attrs["role"] = "img"
            attrs["aria-label"] = label
        head = "".join(f' {k}="{escape(v, quote=True) if _SUSPECT.search(v) else v}"' for k, v in attrs.items())
        children = [c for c in el if _local(c.tag) in _ELEMENTS or _local(c.tag) == "a"]
        content = el.text if tag in ("text", "tspan") and el.text and (el.text.strip() or not children) else None
        inner: list[str] = [escape(content, quote=False)] if content else []
        for child in children:
            emit_child(child, inner)
        if not inner:
            if tag not in ("g", "defs", "text", "tspan", "clipPath"):
                parts.append(f"<{tag}{head}/>")
            return  # an empty group draws nothing
        parts.append(f"<{tag}{head}>")
        parts += inner
        parts.append(f"</{tag}>")

    def emit_child(child: ET.Element, parts: list[str]) -> None:
        emit(child, parts)
        tail = child.tail
        if tail and tail.strip() and _local(child.tag) == "tspan":
            parts.append(escape(tail, quote=False))

    out: list[str] = []
    emit(root, out)
    return "".join(out)


__all__ = ["THEME_COLOR", "inert_svg"]
