"""JupyterLab in a real browser: a JupyterLab server on 127.0.0.1, Debian's Chromium via Playwright.

The quickstart notebook is opened and run once per session (``quickstart_page``); each test then
asserts on the rendered DOM.  Screenshots of every panel, in the light and the dark theme, land
in ``artifacts/frontend/`` (ignored by git).  Without Chromium or Playwright these tests skip,
and fail when ``CI`` is set.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from frontend_support import (
    ARTIFACTS,
    AUTO_DISPLAYS,
    PANELS,
    REPO,
    THEMES,
    github_like,
    isolated_env,
    panel,
    static_quickstart,
    AutoExpectation,
    LabPage,
    PanelExpectation,
    chromium,  # noqa: F401 - pytest fixtures
    lab_server,  # noqa: F401
    quickstart_page,  # noqa: F401
)

pytestmark = pytest.mark.browser

#: The least WCAG contrast ratio between any text of a panel and what lies behind it.
MIN_CONTRAST = 4.5

JS_KERNEL_PREFIX = """async () => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const f = k.requestExecute({code: 'import sys, tensormagic; print(sys.prefix); print(tensormagic.__file__)',
                              silent: false, store_history: false});
  let out = '';
  f.onIOPub = m => { if (m.header.msg_type === 'stream') out += m.content.text; };
  await f.done;
  return out;
}"""

# For each visible text node of the element: its colour, the first opaque background behind it,
# and the WCAG contrast ratio of the two.  Returns the worst few.
JS_CONTRAST = """el => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = ([r, g, b]) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = node => { for (let n = node; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor); if (c && c[3] > 0.5) return c; }
    return parse(getComputedStyle(document.body).backgroundColor) || [255, 255, 255, 1]; };
  const worst = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const node = t.parentElement; if (!t.textContent.trim() || !node.offsetParent) continue;
    const s = getComputedStyle(node); if (s.visibility === 'hidden' || s.display === 'none') continue;
    const fg = parse(s.color), bg = background(node);
    const [a, b] = [lum(fg), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    worst.push({ratio: Math.round(ratio * 100) / 100, text: t.textContent.trim().slice(0, 40), color: s.color,
                background: 'rgb(' + bg.slice(0, 3).join(',') + ')', tag: node.tagName, cls: node.className});
  }
  worst.sort((x, y) => x.ratio - y.ratio);
  return worst.slice(0, 5);
}"""

JS_OVERFLOW = """el => [...el.querySelectorAll('*')].filter(n => n.offsetParent && n.scrollWidth > n.clientWidth + 1
    && getComputedStyle(n).overflowX === 'visible' && n.clientWidth > 0).map(n => n.tagName + '.' + n.className).slice(0, 5)"""


def panel_of(lab: LabPage, expect: PanelExpectation):
    return lab.panel(expect)


def tab(lab: LabPage, expect: PanelExpectation, title: str):
    return lab.tab(expect, title)


def test_kernel_is_the_venv_python_with_tensormagic(quickstart_page: LabPage):
    prefix, module = quickstart_page.page.evaluate(JS_KERNEL_PREFIX).splitlines()
    assert prefix == sys.prefix
    assert module.startswith(str(REPO / "tensormagic")), module  # the editable install of this checkout


@pytest.mark.parametrize("expect", PANELS, ids=lambda p: p.name)
def test_panel_renders_as_widget(quickstart_page: LabPage, expect: PanelExpectation):
    lab = quickstart_page
    output = lab.output(expect.source)
    assert output.count() == 1, f"{expect.source!r}: {output.count()} outputs"
    # The widget manager rendered it: no HTML or text renderer was used for this output.
    assert output.locator(".jp-RenderedHTMLCommon, .jp-RenderedText").count() == 0, "rendered from a fallback"
    assert output.locator(":scope > .jupyter-widgets.tensormagic-panel").count() == 1
    panel = panel_of(lab, expect)
    panel.wait_for(state="visible")
    assert panel.locator(".widget-tab").count() == (1 if expect.tabs else 0)
    seen = panel.inner_text()
    assert "Error displaying widget" not in seen and "Loading widget" not in seen
    assert seen.lstrip().startswith(expect.title)
    assert "── " not in seen, "the text view leaked into the widget"
    for text in expect.texts:
        assert text in seen, f"{text!r} not visible in the {expect.title!r} panel"


@pytest.mark.parametrize("expect", [p for p in PANELS if p.tabs], ids=lambda p: p.name)
def test_tab_titles(quickstart_page: LabPage, expect: PanelExpectation):
    tabs = panel_of(quickstart_page, expect).get_by_role("tab")
    assert [t.strip() for t in tabs.all_inner_texts()] == list(expect.tabs)
    assert tabs.first.get_attribute("aria-selected") == "true"


@pytest.mark.parametrize(
    "expect,title",
    [(p, t) for p in PANELS for t in p.tab_texts],
    ids=lambda v: v.name if isinstance(v, PanelExpectation) else v,
)
def test_clicking_a_tab_shows_its_content(quickstart_page: LabPage, expect: PanelExpectation, title: str):
    lab = quickstart_page
    panel = panel_of(lab, expect)
    texts = expect.tab_texts[title]
    before = panel.inner_text()
    assert not all(t in before for t in texts), f"{title!r}'s content was visible before the click"
    try:
        lab.select_tab(expect, title)
        after = panel.inner_text()
        for text in texts:
            assert text in after, f"{text!r} not visible after clicking {title!r}"
    finally:
        tab(lab, expect, expect.tabs[0]).click()


def test_dtype_table_pairs_int64_with_torch_int64(quickstart_page: LabPage):
    lab = quickstart_page
    x = panel("tensorinfo_x")
    try:
        lab.select_tab(x, "Dtypes")
        table = panel_of(lab, x).locator("table:visible").last
        row = table.locator("tr", has_text="→ torch.int64")
        assert row.count() == 1
        assert [c.strip() for c in row.locator("td").all_inner_texts()][:2] == ["→ torch.int64", "int64"]
        assert panel_of(lab, x).get_by_text("int64 <-> torch.int64").is_visible()
    finally:
        tab(lab, x, x.tabs[0]).click()


@pytest.mark.parametrize("theme", list(THEMES))
def test_panels_look_clean(quickstart_page: LabPage, theme: str):
    """Screenshot every panel (each tab of the tabbed ones) at 1280x800; check contrast and overflow."""
    lab = quickstart_page
    out_dir = ARTIFACTS / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = []
    try:
        lab.set_theme(theme)
        for expect in PANELS:
            panel = panel_of(lab, expect)
            panel.scroll_into_view_if_needed()
            for i, title in enumerate(expect.tabs or ("",)):
                if title:
                    tab(lab, expect, title).click()
                    lab.page.wait_for_timeout(50)
                slug = title.lower().replace(" & ", "-").replace(" ", "-")
                panel.screenshot(path=str(out_dir / f"{theme}-{expect.name}-{i}{('-' + slug) if slug else ''}.png"))
                worst = panel.evaluate(JS_CONTRAST)
                if worst and worst[0]["ratio"] < MIN_CONTRAST:
                    problems.append(f"{expect.name}/{title}: low contrast {worst[0]}")
                overflow = panel.evaluate(JS_OVERFLOW)
                if overflow:
                    problems.append(f"{expect.name}/{title}: content wider than its box: {overflow}")
            if expect.tabs:
                tab(lab, expect, expect.tabs[0]).click()
            box = panel.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280, f"{expect.name} off screen: {box}"
        lab.page.screenshot(path=str(out_dir / f"{theme}-page.png"))
    finally:
        lab.set_theme("light")
    assert not problems, "\n".join(problems)


def test_github_like_html_reads_well(chromium):
    """The static HTML stripped as GitHub strips it, in Chromium at GitHub's content width.

    The first section of each panel is open and shows its facts; the others open with a click on
    their summary; no panel is wider than the page.  Screenshot: static-github-like.png.
    """
    stripped = str(github_like(static_quickstart()))
    page = chromium.new_page(viewport={"width": 1012, "height": 800})
    try:
        page.set_content(stripped, wait_until="load")
        x = page.locator("h4", has_text="tensorinfo · x").locator("xpath=..")
        assert x.get_by_role("rowheader", name="torch twin").is_visible()
        assert not x.get_by_text("int64 <-> torch.int64").is_visible()  # Dtypes is collapsed
        x.locator("summary", has_text="Dtypes").click()
        assert x.get_by_text("int64 <-> torch.int64").is_visible()
        page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
        too_wide = page.evaluate("""() => [...document.querySelectorAll('h4')].map(h => h.parentElement)
            .filter(p => p.scrollWidth > 1012).map(p => p.querySelector('h4').textContent)""")
        assert not too_wide, f"panels wider than GitHub's column: {too_wide}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("h4").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "static-github-like.png"))
    finally:
        page.close()


def drawn_share(png: bytes) -> float:
    """The share of a screenshot's pixels that differ clearly from its most common colour (the
    background): 0 for a blank picture."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    colors = im.getcolors(maxcolors=1 << 22) or []
    background = max(colors)[1]
    drawn = sum(n for n, rgb in colors if max(abs(a - b) for a, b in zip(rgb, background)) > 48)
    return drawn / (im.width * im.height)


def luminance(css_color: str) -> float:
    r, g, b = (int(v) for v in css_color[css_color.index("(") + 1 : css_color.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


JS_NODE_TEXTS = """svg => [...svg.querySelectorAll('g')].filter(g => g.querySelector(':scope > title'))
  .map(g => [g.querySelector(':scope > title').textContent, [...g.querySelectorAll('text')].map(t => t.textContent)])"""


@pytest.mark.parametrize("theme", list(THEMES))
def test_the_graph_and_the_chart_are_drawn_and_visible(quickstart_page: LabPage, theme: str):
    """The seed's and the model's Graph tabs show an SVG labelled "autograd graph", the Health
    tab a chart: each with drawn (non-blank) pixels in its screenshot, its lines and labels in
    the theme's text colour; the seed's y node is AddBackward0's, the model's nodes are boxed by
    module.  Screenshots: artifacts/frontend/screenshots/<theme>-picture-*.png."""
    lab = quickstart_page
    out_dir = ARTIFACTS / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    seed, model = panel("autograd_seed"), panel("autograd_model")
    try:
        lab.set_theme(theme)
        for expect, tab_title, label in ((seed, "Graph", "autograd graph of y"), (model, "Graph", "autograd graph of loss"), (seed, "Health", "gradient flow chart")):
            lab.select_tab(expect, tab_title)
            svg = panel_of(lab, expect).locator(f'svg[aria-label^="{label}"]')
            svg.wait_for(state="visible")
            assert svg.count() == 1
            box = svg.bounding_box()
            assert box is not None and box["width"] > 150 and box["height"] > 60, box
            png = svg.screenshot(path=str(out_dir / f"{theme}-picture-{expect.name}-{tab_title.lower()}.png"))
            assert drawn_share(png) > 0.02, f"{expect.name}/{tab_title} looks blank in the {theme} theme"
            color = svg.evaluate("el => getComputedStyle(el).color")
            assert (luminance(color) < 0.4) if theme == "light" else (luminance(color) > 0.6), (theme, color)
            if expect is seed and tab_title == "Graph":
                nodes = svg.evaluate(JS_NODE_TEXTS)
                y = [texts for title, texts in nodes if title.startswith("AddBackward0 → y")]
                assert y and "y" in y[0] and "AddBackward0" in y[0], nodes
                assert any(texts[:1] == ["w"] for _, texts in nodes) and any(texts[:1] == ["b"] for _, texts in nodes)
            if expect is model and tab_title == "Graph":
                boxes = [title for title, _ in svg.evaluate(JS_NODE_TEXTS) if title.startswith("made by ")]
                assert "made by mlp.0 (Linear)" in boxes and "made by mlp (Sequential)" in boxes
            tab(lab, expect, expect.tabs[0]).click()
    finally:
        lab.set_theme("light")


#: Each picture of a tensor in the quickstart: (panel, tab, selector).
TENSOR_PICTURES = [
    ("tensorinfo_photo", "Pictures", 'img[alt^="RGB image of photo"]'),
    ("tensorinfo_denorm", "Pictures", 'img[alt^="RGB image of normalised"]'),
    ("tensorinfo_channels", "Pictures", 'img[alt^="channel view of normalised"]'),
    ("tensorinfo_grid", "Pictures", 'img[alt^="heatmap of grid"]'),
    ("tensorinfo_grid", "Values", 'svg[aria-label^="histogram of grid"]'),
]


def magenta_share(png: bytes) -> float:
    """The share of a screenshot's pixels in the heatmap's NaN colour (magenta)."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    colors = im.getcolors(maxcolors=1 << 22) or []
    return sum(n for n, (r, g, b) in colors if r > 230 and g < 30 and b > 230) / (im.width * im.height)


@pytest.mark.parametrize("theme", list(THEMES))
def test_tensor_pictures_are_drawn_and_visible(quickstart_page: LabPage, theme: str):
    """The image, the undone normalisation, the channel view and the heatmap (PNGs) and the
    histogram (SVG) each show drawn pixels in their screenshot, in both themes; the heatmap's
    NaN patch shows magenta, the chart's axes follow the theme.  Screenshots:
    artifacts/frontend/screenshots/<theme>-picture-<panel>-<tab>.png."""
    lab = quickstart_page
    out_dir = ARTIFACTS / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        lab.set_theme(theme)
        for name, tab_title, selector in TENSOR_PICTURES:
            expect = panel(name)
            lab.select_tab(expect, tab_title)
            picture = panel_of(lab, expect).locator(selector)
            picture.wait_for(state="visible")
            assert picture.count() == 1
            box = picture.bounding_box()
            assert box is not None and box["width"] >= 128 and box["height"] >= 64, (name, box)
            png = picture.screenshot(path=str(out_dir / f"{theme}-picture-{name}-{tab_title.lower()}.png"))
            assert drawn_share(png) > 0.02, f"{name}/{tab_title} looks blank in the {theme} theme"
            if selector.startswith("img"):
                assert picture.evaluate("el => el.complete && el.naturalWidth > 0")
            else:
                color = picture.evaluate("el => getComputedStyle(el).color")
                assert (luminance(color) < 0.4) if theme == "light" else (luminance(color) > 0.6), (theme, color)
            if name == "tensorinfo_grid" and tab_title == "Pictures":
                assert magenta_share(png) > 0.003, "the NaN patch is not visible"
            tab(lab, expect, expect.tabs[0]).click()
    finally:
        lab.set_theme("light")


def test_nbconverts_static_html_shows_the_tensor_pictures_offline(chromium):
    """The executed quickstart as static HTML with the network refused: the heatmap of grid
    is drawn (decoded, magenta NaN patch visible) once its Pictures section is opened."""
    page = chromium.new_page(viewport={"width": 1012, "height": 800})
    page.route("**/*", lambda route: route.abort())
    try:
        page.set_content(static_quickstart(), wait_until="load")
        grid = page.locator("h4", has_text="tensorinfo · grid").first.locator("xpath=..")
        grid.locator("summary").get_by_text("Pictures", exact=True).click()
        img = grid.locator('img[alt^="heatmap of grid"]')
        img.wait_for(state="visible")
        assert img.evaluate("el => el.complete && el.naturalWidth > 0")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        png = img.screenshot(path=str(ARTIFACTS / "static-heatmap-offline.png"))
        assert drawn_share(png) > 0.02 and magenta_share(png) > 0.003
    finally:
        page.close()


def test_nbconverts_static_html_shows_the_graph_offline(chromium):
    """The executed quickstart as static HTML (no widget state), opened with every request to
    the network refused: the seed's graph is there, drawn, once its Graph section is opened."""
    page = chromium.new_page(viewport={"width": 1012, "height": 800})
    blocked: list[str] = []
    page.route("**/*", lambda route: (blocked.append(route.request.url), route.abort()))
    try:
        page.set_content(static_quickstart(), wait_until="load")
        seed = page.locator("h4", has_text="autograd · y").first.locator("xpath=..")
        seed.locator("summary").get_by_text("Graph", exact=True).click()
        svg = seed.locator('svg[aria-label^="autograd graph of y"]')
        svg.wait_for(state="visible")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        png = svg.screenshot(path=str(ARTIFACTS / "static-graph-offline.png"))
        assert drawn_share(png) > 0.02
        assert page.evaluate("() => [...document.querySelectorAll('svg.tm-picture')].length") >= 4
    finally:
        page.close()


@pytest.mark.parametrize("ci", [True, False], ids=["CI-fails", "local-skips"])
def test_missing_browser_fails_under_ci_and_skips_otherwise(tmp_path, ci: bool):
    """Runs this module's first browser test in a child pytest with no Chromium where it looks."""
    env = isolated_env(tmp_path)
    env["TENSORMAGIC_CHROMIUM"] = str(tmp_path / "no-chromium")
    env.pop("CI", None)
    env.pop("PYTEST_ADDOPTS", None)
    if ci:
        env["CI"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         f"{__file__}::test_tab_titles"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    if ci:
        assert proc.returncode == 1 and "CI is set and the browser tests cannot run" in out, out[-1500:]
    else:
        assert proc.returncode == 0 and "skipped" in out and "no Chromium at" in out, out[-1500:]


# -- automatic display (frontend_support.AUTO_DISPLAYS) ---------------------------------------


def _auto_widget(lab: LabPage, expect: AutoExpectation):
    return lab.output(expect.source).locator(".tensormagic-auto")


@pytest.mark.parametrize("expect", AUTO_DISPLAYS, ids=lambda a: a.name)
def test_browser_shows_the_line_and_picture_and_opens_the_panel(quickstart_page: LabPage, expect: AutoExpectation):
    lab = quickstart_page
    widget = _auto_widget(lab, expect)
    widget.wait_for(state="visible")
    assert lab.output(expect.source).locator(".jp-RenderedHTMLCommon, .jp-RenderedText").count() == 0
    assert widget.locator("code").first.inner_text() == expect.line
    img = widget.locator(f'img[alt="{expect.picture}"]')
    assert img.evaluate("i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0")
    assert widget.locator(".tensormagic-panel").count() == 0  # nothing built until opened
    out_dir = ARTIFACTS / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    widget.screenshot(path=str(out_dir / f"light-{expect.name}-closed.png"))
    widget.get_by_text("%tensorinfo panel").click()
    panel = widget.locator(".tensormagic-panel")
    panel.wait_for(state="visible", timeout=30_000)
    assert panel.inner_text().lstrip().startswith(expect.title)
    tabs = [t.strip() for t in panel.get_by_role("tab").all_inner_texts()]
    assert tabs == list(expect.tabs)
    widget.screenshot(path=str(out_dir / f"light-{expect.name}-open.png"))


@pytest.mark.parametrize("theme", list(THEMES))
def test_browser_auto_display_reads_in_both_themes(quickstart_page: LabPage, theme: str):
    lab = quickstart_page
    out_dir = ARTIFACTS / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = []
    try:
        lab.set_theme(theme)
        for expect in AUTO_DISPLAYS:
            widget = _auto_widget(lab, expect)
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=str(out_dir / f"{theme}-{expect.name}.png"))
            worst = widget.evaluate(JS_CONTRAST)
            if worst and worst[0]["ratio"] < MIN_CONTRAST:
                problems.append(f"{expect.name}: low contrast {worst[0]}")
            box = widget.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280
    finally:
        lab.set_theme("light")
    assert not problems, "\n".join(problems)
