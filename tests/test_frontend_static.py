"""Static renders: the executed quickstart converted to HTML by nbconvert, widget state removed.

Without saved widget state nbconvert (and GitHub, nbviewer...) shows each output's ``text/html``:
our panel's fallback.  It must carry the values, contain no script built from user data, and read
well as plain semantic HTML once CSS and scripts are stripped (GitHub strips both).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import nbformat
import pytest
from bs4 import BeautifulSoup

from frontend_support import (
    ARTIFACTS,
    PANELS,
    REPO,
    WIDGET_VIEW,
    PanelExpectation,
    execute_notebook,
    github_like,
    isolated_env,
    panel,
    page_titles,
    static_html,
    static_quickstart,
)

#: Tags GitHub's HTML sanitizer keeps (a subset of its allowlist) plus the panel's own <style>,
#: and the drawing elements of the pictures' inline SVG (render/svg.py's allowlist).
ALLOWED_TAGS = {
    "div", "span", "p", "h4", "strong", "em", "b", "i", "code", "pre", "br", "small",
    "table", "caption", "thead", "tbody", "tr", "th", "td", "details", "summary", "style",
    "img",  # a tensor's pictures: inline PNG data URIs only (checked below), as notebooks' plots
}
SVG_TAGS = {"svg", "g", "title", "defs", "clippath", "path", "polygon", "polyline", "line", "rect", "circle", "ellipse", "text", "tspan", "use"}
MARKS = ("ℹ", "✔", "⚠", "✘")
pytestmark = pytest.mark.kernel  # the notebook is executed by nbclient in a real kernel first

HOSTILE = '</script><script>alert("pwned")</script><img src=x onerror=alert(1)>'


def panels_in_order(soup: BeautifulSoup) -> list[tuple[str, BeautifulSoup]]:
    """Each panel's fallback (``div.tensormagic`` holding an ``h4``) as (title, div), in page order."""
    found = []
    for div in soup.select("div.tensormagic"):
        h4 = div.find("h4", recursive=False)
        if h4 is not None:
            found.append((h4.get_text(), div))
    return found


def panel_div(soup: BeautifulSoup, expect: PanelExpectation) -> BeautifulSoup:
    """The fallback of the panel ``expect`` (the panels are in PANELS' order)."""
    panels = panels_in_order(soup)
    title, div = panels[PANELS.index(expect)]
    assert title == expect.title
    return div


def text_of(node) -> str:
    return " ".join(node.get_text(" ").split())


@pytest.fixture(scope="module")
def soup() -> BeautifulSoup:
    return BeautifulSoup(static_quickstart(), "html.parser")


def test_fallback_replaces_widgets(soup):
    assert not soup.select(f'script[type="{WIDGET_VIEW}"]'), "widget views left in the static HTML"
    assert "widget-state+json" not in static_quickstart()
    assert [t for t, _ in panels_in_order(soup)] == page_titles()


@pytest.mark.parametrize("expect", PANELS, ids=lambda p: p.name)
def test_panel_fallback_values(soup, expect: PanelExpectation):
    div = panel_div(soup, expect)
    details = div.find_all("details", recursive=False)
    assert [d.summary.get_text() for d in details] == list(expect.tabs)
    if details:
        assert details[0].has_attr("open") and not any(d.has_attr("open") for d in details[1:])
    seen = text_of(div)
    for text in expect.texts + sum(expect.tab_texts.values(), ()):
        assert text in seen, f"{text!r} missing from the static HTML of {expect.title!r}"


def test_dtype_row_reads_as_a_table(soup):
    """The Dtypes section of x: a real table whose marked row pairs torch.int64 with int64."""
    div = panel_div(soup, panel("tensorinfo_x"))
    dtypes = next(d for d in div.find_all("details") if d.summary.get_text() == "Dtypes")
    headers = [th.get_text() for th in dtypes.select("thead th")]
    assert headers == ["torch dtype", "NumPy dtype", "note"]
    rows = [[td.get_text() for td in tr.find_all("td")] for tr in dtypes.select("tbody tr")]
    assert ["→ torch.int64", "int64", ""] in rows


def test_no_script_in_any_output(soup):
    outputs = soup.select(".jp-OutputArea-output")
    assert len(outputs) >= len(PANELS)
    for out in outputs:
        assert out.find("script") is None, str(out)[:300]
        assert not any(a.startswith("on") for tag in out.find_all(True) for a in tag.attrs)


def test_user_data_cannot_inject_markup():
    """A tensor reached through a key full of markup: the name shows as text, never as tags."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext tensormagic"),
        nbformat.v4.new_code_cell(f"import torch\nd = {{{HOSTILE!r}: torch.ones(2)}}"),
        nbformat.v4.new_code_cell(f"%tensorinfo d[{HOSTILE!r}]"),
    ]
    executed = execute_notebook(nb, store_widget_state=False)
    out = executed.cells[2].outputs[0]
    html = static_html(executed)
    soup = BeautifulSoup(html, "html.parser")
    area = soup.select(".jp-OutputArea-output")[-1]
    assert area.find("script") is None and area.find("img") is None
    assert "alert(" in text_of(area), "the hostile name should show as text"
    assert "<script>" not in out.data["text/html"] and "<img" not in out.data["text/html"]


def test_fallback_uses_only_sanitizer_safe_tags(soup):
    for title, div in panels_in_order(soup):
        outside = {t.name for t in div.find_all(True) if t.name != "svg" and t.find_parent("svg") is None} | {div.name}
        assert outside <= ALLOWED_TAGS, f"{title}: tags GitHub would drop: {sorted(outside - ALLOWED_TAGS)}"
        for svg in div.find_all("svg"):
            assert svg.get("role") == "img" and svg.get("aria-label"), title
            inner = {t.name for t in svg.find_all(True)}
            assert inner <= SVG_TAGS, f"{title}: {sorted(inner - SVG_TAGS)} in a picture"


def test_pictures_are_inline_with_alt_texts_and_no_outside_reference(soup):
    """The seed's graph and chart: inline SVG (no file, no URL), labelled; the model's graph boxed
    by module; the text graph is there too, folded under the picture."""
    seed = panel_div(soup, panel("autograd_seed"))
    graph = next(d for d in seed.find_all("details", recursive=False) if d.summary.get_text() == "Graph")
    svg = graph.find("svg")
    assert svg is not None and svg["aria-label"].startswith("autograd graph of y")
    texts = [t.get_text() for t in svg.find_all("text")]
    assert {"y", "w", "b", "AddBackward0", "MulBackward0"} <= set(texts)
    folded = graph.find("details")
    assert folded.summary.get_text() == "the graph as text" and "#1 AddBackward0 → y" in folded.get_text()
    health = next(d for d in seed.find_all("details", recursive=False) if d.summary.get_text() == "Health")
    assert health.find("svg")["aria-label"].startswith("gradient flow chart")
    model = panel_div(soup, panel("autograd_model"))
    texts = [t.get_text() for t in model.find("svg").find_all("text")]
    assert "mlp.0 · Linear" in texts and "mlp · Sequential" in texts
    for div in soup.select("div.tensormagic"):
        for tag in div.find_all(True):
            for name, value in tag.attrs.items():
                value = " ".join(value) if isinstance(value, list) else str(value)
                assert "http:" not in value and "https:" not in value, (tag.name, name, value[:80])
                # the only data URIs: inline PNG pictures (automatic display's thumbnails)
                assert "data:" not in value or (tag.name == "img" and name == "src" and value.startswith("data:image/png;base64,")), (tag.name, name, value[:80])
                if name == "href":
                    assert value.startswith("#"), value


def test_each_reports_html_stays_under_200_kb(soup):
    for title, div in panels_in_order(soup):
        assert len(str(div).encode()) < 200_000, title


def test_reads_well_without_css_or_scripts():
    """GitHub strips style sheets, classes and scripts: meaning must not rest on them."""
    stripped = github_like(static_quickstart())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "quickstart-github-like.html").write_text(str(stripped), encoding="utf-8")
    # Titles are headings, sections are <details> with a <summary>, facts are table rows.
    headings = [h.get_text() for h in stripped.find_all("h4")]
    assert headings == page_titles()
    for h4 in stripped.find_all("h4"):
        panel = h4.parent
        # The headline follows the title as bold text, readable on its own.
        assert panel.find("strong") is not None and len(panel.find("strong").get_text()) > 10
        for details in panel.find_all("details", recursive=False):
            assert details.summary is not None and details.summary.get_text().strip()
        for th in panel.select('th[scope="row"]'):
            td = th.find_next_sibling("td")
            assert td is not None, f"{h4.get_text()}: a label without its value"
    # Notes (p.tm-LEVEL before stripping) say what they are by a mark, not by colour alone.
    for note in BeautifulSoup(static_quickstart(), "html.parser").select("div.tensormagic p[class^=tm-]"):
        if note.find("strong") is None:  # the headline is bold instead
            assert note.get_text().strip().startswith(MARKS), f"note without a mark: {note.get_text()[:60]!r}"
    # No CSS source text left over as visible text.
    assert not re.search(r"\.tensormagic\s*[{ ]", stripped.get_text())


def test_make_walkthrough_writes_static_html(tmp_path):
    """The main job (``make walkthrough``, setup already done): terminal panels, then an HTML file
    whose panels are the offline-readable fallback (no widget state, no CDN widget manager)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out_dir = tmp_path / "html"
    proc = subprocess.run(
        [make, "--no-print-directory", "-o", "setup", "walkthrough", f"HTML_DIR={out_dir}"],
        cwd=REPO, env=isolated_env(tmp_path / "env"), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "tensorinfo · x" in proc.stdout and "✓ int64 <-> torch.int64" in proc.stdout
    html = (out_dir / "quickstart.html").read_text(encoding="utf-8")
    assert "widget-state+json" not in html and "embed-amd.js" not in html
    soup = BeautifulSoup(html, "html.parser")
    assert [t for t, _ in panels_in_order(soup)] == page_titles()


def test_tensor_pictures_are_inline_pngs_and_a_chart_with_alt_texts(soup):
    """The pictures section of the image, the undone normalisation, the channels and the heatmap
    with NaN: inline PNGs whose alt texts say what they show; the histogram chart: inline SVG."""
    wanted = {"tensorinfo_photo": "RGB image of photo", "tensorinfo_denorm": "RGB image of normalised", "tensorinfo_channels": "channel view of normalised", "tensorinfo_grid": "heatmap of grid"}
    for name, alt in wanted.items():
        div = panel_div(soup, panel(name))
        pictures = next(d for d in div.find_all("details", recursive=False) if d.summary.get_text() == "Pictures")
        imgs = pictures.find_all("img")
        assert len(imgs) == 1 and imgs[0]["alt"].startswith(alt) and imgs[0]["src"].startswith("data:image/png;base64,"), name
        assert int(imgs[0]["width"]) >= 128 and int(imgs[0]["height"]) >= 64
    grid = panel_div(soup, panel("tensorinfo_grid"))
    values = next(d for d in grid.find_all("details", recursive=False) if d.summary.get_text() == "Values")
    chart = values.find("svg")
    assert chart is not None and chart["aria-label"].startswith("histogram of grid: ")
    assert "NaN magenta (24 pixels)" in grid.find("img")["alt"]
