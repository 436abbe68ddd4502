"""Tensors as pictures (%tensorinfo): the engine's pixels and counts, the PNGs and charts the
renderers make of them, and the flags.  Real torch, NumPy, Pillow and IPython; no mocks."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re

import numpy as np
import pytest
import torch
from IPython.core.error import UsageError
from PIL import Image

from tensormagic.engine.tensorinfo import inspect_object
from tensormagic.engine.tensorinfo.pictures import PictureError, Raster, options
from tensormagic.engine.tensorinfo.pictures.options import IMAGENET, MAX_PIXELS, MAX_SIDE
from tensormagic.engine.tensorinfo.pictures.raster import colour_scale, lut
from tensormagic.engine.tensorinfo.pictures.reports import NAN_COLOR, NEGINF_COLOR, POSINF_COLOR
from tensormagic.render.display import build_panel, render_html, render_text
from tensormagic.render.document import Picture
from tests.conftest import run


def pixels(tile: Raster) -> np.ndarray:
    """The raster as an (h, w, 3) uint8 array."""
    return np.frombuffer(tile.rgb, dtype=np.uint8).reshape(tile.height, tile.width, 3)


def pictures_of(obj, **flags):
    report = inspect_object("obj", obj, {}, pictures=options(**flags) if flags else None)
    assert report.pictures is not None
    return report.pictures


def panel_pictures(report) -> list[Picture]:
    return [b for s in build_panel(report).sections for b in s.blocks if isinstance(b, Picture)]


def decoded(picture: Picture) -> Image.Image:
    drawing = picture.drawing()
    assert drawing.png is not None, drawing.missing
    return Image.open(io.BytesIO(drawing.png)).convert("RGB")


# -- the image view -----------------------------------------------------------------------------


def test_a_red_chw_image_decodes_to_red_pixels():
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    p = pictures_of(red)
    assert p.kinds() == ["image", "histogram"]
    assert p.image.mode == "RGB" and p.image.layout == "(3, H, W)" and p.image.clipped == 0
    assert (pixels(p.image.tiles[0]) == [255, 0, 0]).all()
    report = inspect_object("red", red, {})
    [image, _histogram] = panel_pictures(report)
    assert "RGB image" in image.drawing().alt
    png = decoded(image)
    assert set(map(tuple, np.asarray(png).reshape(-1, 3).tolist())) == {(255, 0, 0)}


@pytest.mark.parametrize("make", [lambda: np.dstack([np.zeros((8, 8)), np.ones((8, 8)), np.zeros((8, 8))]), lambda: torch.tensor([0, 255, 0], dtype=torch.uint8).repeat(8, 8, 1)], ids=["HW3-float64-array", "HW3-uint8"])
def test_channels_last_and_uint8_images_are_green(make):
    p = pictures_of(make())
    assert p.image is not None and p.image.layout == "(H, W, 3)"
    assert (pixels(p.image.tiles[0]) == [0, 255, 0]).all()


def test_uint8_chw_scale_and_a_grey_image():
    img = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    assert (pixels(pictures_of(img).image.tiles[0]) == 128).all()
    grey = torch.linspace(0, 1, 64).reshape(1, 8, 8)
    view = pictures_of(grey).image
    assert view.mode == "grey"
    px = pixels(view.tiles[0])
    assert (px[..., 0] == px[..., 1]).all() and px[0, 0, 0] == 0 and px[-1, -1, 0] == 255
    alt = panel_pictures(inspect_object("g", grey, {}))[0].drawing().alt
    assert "grey image" in alt


def test_denorm_imagenet_round_trip():
    torch.manual_seed(0)
    original = torch.rand(3, 16, 16)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in IMAGENET)
    normalised = (original - mean) / std
    assert pictures_of(normalised).image is None  # not in [0, 1]: no image view by default
    view = pictures_of(normalised, denorm="imagenet").image
    expected = (original * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(pixels(view.tiles[0]).astype(int) - expected.astype(int)).max() <= 1
    assert view.clipped == 0 and view.denorm == "imagenet"
    same = pictures_of(normalised, denorm="0.485,0.456,0.406,0.229,0.224,0.225").image
    assert pixels(same.tiles[0]).tolist() == pixels(view.tiles[0]).tolist()


def test_clipping_is_counted_and_said():
    img = torch.full((3, 8, 8), 0.5)
    img[:, 0, :4] = 2.0  # 12 values above 1
    view = pictures_of(img, image=True).image
    assert view.clipped == 12 and view.shown == 192
    text = render_text(inspect_object("img", img, {}, pictures=options(image=True)))
    assert "12 of the 192 values shown were outside and clipped (6.2%)" in text


def test_a_batch_becomes_a_grid_of_the_first_images():
    batch = torch.rand(20, 3, 8, 8)
    view = pictures_of(batch).image
    assert view.layout == "(N, 3, H, W)" and view.total == 20 and len(view.tiles) == 8  # the first MAX_IMAGES
    assert view.tiles[3].rgb == pictures_of(batch[3]).image.tiles[0].rgb
    png = decoded(panel_pictures(inspect_object("batch", batch, {}))[0])
    assert png.size[0] >= 4 * 8 and png.size[1] >= 4 * 8


# -- the heatmap --------------------------------------------------------------------------------


def test_a_nan_at_0_0_has_the_nan_colour_there_only():
    torch.manual_seed(0)
    t = torch.randn(8, 8)
    t[0, 0] = float("nan")
    view = pictures_of(t).heatmap
    px = pixels(view.tiles[0])
    is_nan = (px == NAN_COLOR).all(axis=-1)
    assert is_nan[0, 0] and is_nan.sum() == 1
    assert view.nonfinite == {"NaN": 1, "+inf": 0, "-inf": 0}
    # the PNG the panel shows: the same pixel (scaled up), magenta; nowhere else
    heat = next(p for p in panel_pictures(inspect_object("t", t, {})) if "heatmap" in p.drawing().alt)
    png = np.asarray(decoded(heat))
    k = png.shape[1] // 8  # drawn k times larger; the colour scale and its swatches below
    magenta = (png == NAN_COLOR).all(axis=-1)
    assert magenta[:k, :k].all() and magenta[: 8 * k, : 8 * k].sum() == k * k


def test_infinities_have_their_own_colours_and_a_nan_is_found_between_the_values_read():
    t = torch.zeros(2048, 2048)
    t[1, 1] = float("inf")
    t[5, 3] = float("-inf")
    t[1001, 999] = float("nan")  # not on a row or column the picture reads
    view = pictures_of(t).heatmap
    step = view.tiles[0].step[0]
    assert step == 4 and view.marks_exact
    px = pixels(view.tiles[0])
    assert (px[0, 0] == POSINF_COLOR).all() and (px[1, 0] == NEGINF_COLOR).all()
    assert (px[1001 // 4, 999 // 4] == NAN_COLOR).all()
    assert len({NAN_COLOR, POSINF_COLOR, NEGINF_COLOR}) == 3
    assert [int((px == c).all(axis=-1).sum()) for c in (NAN_COLOR, POSINF_COLOR, NEGINF_COLOR)] == [1, 1, 1]
    assert view.nonfinite == {"NaN": 1, "+inf": 1, "-inf": 1}


def test_nan_search_in_bands_of_rows_marks_each_block_once():
    t = torch.zeros(3000, 3000)
    t[2999, 2999] = float("nan")  # the last band, the last block
    t[1398, 17] = float("nan")  # the first row of the second band (bands of 1398 rows here)
    t[1397, 3] = float("-inf")  # the last row of the first band
    t[5, 5] = float("inf")
    view = pictures_of(t).heatmap
    step = view.tiles[0].step[0]
    px = pixels(view.tiles[0])
    nan = (px == NAN_COLOR).all(axis=-1)
    assert step == 6 and nan.sum() == 2 and nan[2999 // 6, 2999 // 6] and nan[1398 // 6, 17 // 6]
    assert (px[1397 // 6, 0] == NEGINF_COLOR).all() and (px[0, 0] == POSINF_COLOR).all()
    z = torch.zeros(64, 64, dtype=torch.complex64)
    z[3, 4] = complex(float("nan"), 0)
    z[9, 9] = complex(0, float("inf"))
    zp = pixels(pictures_of(z).heatmap.tiles[0])
    assert (zp[3, 4] == NAN_COLOR).all() and (zp[9, 9] == POSINF_COLOR).all()


def test_nd_tensors_get_the_first_slices_of_the_last_two_dims():
    t = torch.arange(10 * 4 * 5, dtype=torch.float32).reshape(10, 4, 5)
    view = pictures_of(t, heatmap=True).heatmap
    assert view.total == 10 and len(view.tiles) == 4 and view.tiles[1].label == "[1, :, :]"
    assert view.lo == 0.0 and view.hi == 199.0


# -- the 512 x 512 cap ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape,flags", [((3000, 2000), {}), ((3, 2000, 1200), {}), ((40, 3, 600, 600), {}), ((64, 700, 700), {}), ((6, 3000, 3000), {"heatmap": True})])
def test_every_view_holds_at_most_512_by_512_pixels(shape, flags):
    t = torch.rand(*shape)
    p = pictures_of(t, **flags)
    views = [v for v in (p.image, p.channels, p.heatmap) if v is not None]
    assert views
    for v in views:
        assert sum(tile.width * tile.height for tile in v.tiles) <= MAX_PIXELS
        assert all(tile.width <= MAX_SIDE and tile.height <= MAX_SIDE and len(tile.rgb) == tile.width * tile.height * 3 for tile in v.tiles)
        first = v.tiles[0]
        assert abs(first.width / first.height - shape[-1] / shape[-2]) < 0.02 or v is p.image  # aspect kept


# -- the histogram --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: torch.randn(100_000), lambda: np.random.default_rng(0).normal(5, 3, (300, 300)), lambda: torch.randn(70_000, dtype=torch.float64)[::2] ** 3, lambda: torch.randint(-1000, 1000, (5000,)), lambda: (torch.rand(300, 200) * 10).half()])
def test_histogram_counts_are_true_for_every_element_and_match_numpy(make):
    obj = make()
    h = pictures_of(obj).histogram
    values = (obj if isinstance(obj, torch.Tensor) else torch.from_numpy(obj)).double().numpy().ravel()
    assert h.exact and sum(h.counts) == h.counted == values.size
    assert np.histogram(values, bins=np.array(h.edges))[0].tolist() == h.counts
    assert h.edges == np.linspace(values.min(), values.max(), len(h.counts) + 1).tolist()


def test_histogram_leaves_out_nan_and_inf_and_says_so():
    t = torch.randn(10_000)
    t[:7] = float("nan")
    t[7] = float("inf")
    h = pictures_of(t).histogram
    assert sum(h.counts) == 10_000 - 8 and h.left_out == {"NaN": 7, "+inf": 1, "-inf": 0}
    assert "left out: 7 NaN, 1 +inf" in render_text(inspect_object("t", t, {}))


def test_integers_and_booleans_get_one_bar_per_value():
    i = torch.tensor([3, 3, 4, 7, 7, 7, 5])
    h = pictures_of(i).histogram
    assert h.integer and h.edges[:-1] == [3.0, 4.0, 5.0, 6.0, 7.0] and h.counts == [2, 1, 1, 0, 3]
    b = torch.tensor([True, False, True, True])
    hb = pictures_of(b).histogram
    assert hb.boolean and hb.counts == [1, 3]
    u = np.array([0, 255, 255, 1], dtype=np.uint8)
    assert not pictures_of(u).histogram.integer  # 256 values: equal bins, not one bar each


def test_markers_come_from_the_statistics_and_the_log_flag_from_the_counts():
    t = torch.cat([torch.zeros(100_000), torch.linspace(1, 2, 50)])
    report = inspect_object("t", t, {})
    h = report.pictures.histogram
    s = report.stats
    assert h.markers == {"min": s.min, "max": s.max, "mean": s.mean, "mean - std": s.mean - s.std, "mean + std": s.mean + s.std}
    assert h.log
    assert not pictures_of(torch.rand(10_000)).histogram.log


def test_above_the_budget_the_histogram_is_a_labelled_sample():
    t = torch.randn(5000)
    report = inspect_object("t", t, {}, budget=1000)
    h = report.pictures.histogram
    assert not h.exact and sum(h.counts) == 1000
    assert "(from a sample" in render_text(report)


def test_the_chart_is_an_svg_labelled_histogram_with_axes():
    report = inspect_object("t", torch.randn(1000), {})
    [chart] = panel_pictures(report)
    drawing = chart.drawing()
    assert drawing.svg is not None and drawing.svg.startswith("<svg") and 'aria-label="histogram of t: ' in drawing.svg
    assert "count" in drawing.svg and "value" in drawing.svg and "mean" in drawing.svg


# -- reports and HTML ---------------------------------------------------------------------------


def test_to_dict_is_json_and_holds_no_tensors():
    report = inspect_object("x", torch.rand(2, 3, 16, 16), {}, pictures=options(image=True, channels=True, heatmap=True, hist=True))
    data = report.to_dict()
    json.dumps(data)

    def no_arrays(v, depth=0):
        assert not isinstance(v, (torch.Tensor, np.ndarray)), type(v)
        if dataclasses.is_dataclass(v):
            [no_arrays(getattr(v, f.name), depth + 1) for f in dataclasses.fields(v)]
        elif isinstance(v, (list, tuple)):
            [no_arrays(x, depth + 1) for x in v]
        elif isinstance(v, dict):
            [no_arrays(x, depth + 1) for x in v.values()]

    no_arrays(report.pictures)
    tile = data["pictures"]["image"]["tiles"][0]
    assert len(base64.b64decode(tile["rgb"])) == tile["width"] * tile["height"] * 3
    seen = []

    def walk(v):
        seen.append(type(v))
        if isinstance(v, dict):
            [walk(x) for x in v.values()]
        elif isinstance(v, list):
            [walk(x) for x in v]

    walk(data)
    assert set(seen) <= {dict, list, str, int, float, bool, type(None)}


def test_a_big_image_reports_html_stays_under_200_kb():
    torch.manual_seed(0)
    big = torch.rand(16, 3, 1024, 1024)  # noise: the worst case for PNG
    report = inspect_object("big", big, {}, pictures=options(image=True, channels=True, heatmap=True, hist=True))
    markup = render_html(report)
    assert len(markup.encode()) < 200_000
    assert markup.count("<img ") == 3 and "RGB image of big" in markup and "channel view of big" in markup and "heatmap of big" in markup
    assert re.search(r'<svg [^>]*aria-label="histogram of big', markup)


def test_text_view_shows_alt_texts_and_descriptions():
    t = torch.randn(8, 8)
    text = render_text(inspect_object("t", t, {}))
    assert "── Pictures" in text and "heatmap of t: 8x8 (every value)" in text and "no NaN or inf here" in text


# -- defaults and flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,kinds",
    [
        (lambda: torch.rand(3, 32, 32), ["image", "histogram"]),
        (lambda: torch.randn(3, 32, 32), ["channels", "histogram"]),
        (lambda: torch.randn(8, 16, 12, 12), ["channels", "histogram"]),
        (lambda: torch.randn(30, 40), ["heatmap", "histogram"]),
        (lambda: torch.randn(5, 2, 3, 30, 40), ["heatmap", "histogram"]),
        (lambda: torch.randn(100), ["histogram"]),
        (lambda: torch.tensor(3.0), []),
    ],
)
def test_default_pictures_by_shape(make, kinds):
    assert pictures_of(make()).kinds() == kinds


def test_flags_through_the_magic(shell, capsys):
    run(shell, "import torch\nimg = torch.rand(3, 16, 16)\nv = torch.randn(10)\nmodel = torch.nn.Linear(2, 2)")
    assert shell.run_line_magic("tensorinfo", "--heatmap img").pictures.kinds() == ["heatmap"]
    assert shell.run_line_magic("tensorinfo", "--hist --channels img").pictures.kinds() == ["channels", "histogram"]
    assert shell.run_line_magic("tensorinfo", "--no-pictures img").pictures is None
    cases = {
        "--image v": "v: a tensor of shape (10,) is not an image",
        "--denorm 1,2,3 img": "--denorm needs as many means as stds",
        "--denorm 0.1,0.2,0.3,0.4 img": "--denorm 0.1,0.2,0.3,0.4 gives 2 means and stds, but the image has 3 channels",
        "--denorm nope img": "--denorm takes imagenet, MEAN,STD",
        "--no-pictures --hist img": "--no-pictures and --hist conflict",
        "img --image": "--image must come before the expression",
        "--image model": "model is a module: pictures",
        "--channels v": "v: a tensor of shape (10,) has no channels",
    }
    for line, message in cases.items():
        with pytest.raises(UsageError) as err:
            shell.run_line_magic("tensorinfo", line)
        assert type(err.value) is UsageError and message in str(err.value) and "\n" not in str(err.value), (line, str(err.value))


def test_public_api_keywords():
    import tensormagic

    img = torch.rand(3, 16, 16)
    assert tensormagic.tensorinfo(img, heatmap=True).pictures.kinds() == ["heatmap"]
    assert tensormagic.tensorinfo(img, pictures=False).pictures is None
    with pytest.raises(PictureError, match="not an image"):
        tensormagic.tensorinfo(torch.randn(4), image=True)


def test_the_users_tensor_is_unchanged():
    t = torch.randn(3, 40, 40)
    t[0, 0, 0] = float("nan")
    before = t.clone()
    version = t._version
    inspect_object("t", t, {}, pictures=options(image=True, channels=True, heatmap=True, hist=True, denorm="imagenet"))
    assert torch.equal(t.nan_to_num(), before.nan_to_num()) and t._version == version


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 40, 40), (40, 40), (2, 3, 8, 8)])
def test_pictures_drawn_in_place_never_touch_the_users_values(dtype, shape):
    """The pictures' arithmetic runs in place on their own copies; a small contiguous tensor
    read at step 1 (values outside [0, 1], no NaN: the in-place paths) is left exactly as it was."""
    t = (torch.randn(*shape, dtype=dtype) * 3).contiguous()
    before = t.clone()
    version = t._version
    inspect_object("t", t, {}, pictures=options(image=True, channels=len(shape) > 2, heatmap=True, hist=True))
    assert torch.equal(t, before) and t._version == version


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([1.0, 1.0 + 1e-6], torch.float32), ([3e-38, 3e-38 + 1e-37], torch.float32), ([1e-300, 1e-300 + 1e-310], torch.float64), ([0.0, 5e-324], torch.float64), ([-3e38, 3e38], torch.float32), ([-1.7e308, 1.7e308], torch.float64)],
)
def test_the_colour_scale_spans_tiny_and_huge_ranges(values, dtype):
    """The lowest value gets the scale's first colour and the highest its last, whatever the span
    (a tiny one whose reciprocal overflows, or one wider than the dtype's largest number)."""
    t = torch.tensor(values, dtype=dtype)
    lo, hi = float(t.min()), float(t.max())
    rgb = colour_scale(t.clone(), lo, hi, finite=True)
    table = lut(t.device)
    assert torch.equal(rgb[0], table[0]) and torch.equal(rgb[-1], table[-1])


# -- on the device ------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pictures_of_a_cuda_tensor_are_made_on_the_gpu():
    torch.manual_seed(0)
    host = torch.randn(4096, 4096)
    host[7, 9] = float("nan")
    gpu = host.cuda()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    on_gpu = pictures_of(gpu)
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < gpu.numel() * gpu.element_size() // 2  # never a whole copy on the device
    on_cpu = pictures_of(host)
    assert on_gpu.heatmap.tiles[0].rgb == on_cpu.heatmap.tiles[0].rgb
    assert on_gpu.histogram.counts == on_cpu.histogram.counts and on_gpu.histogram.exact


def test_a_large_cpu_tensor_bins_the_statistics_sample_labelled_and_exact_counts_every_value():
    from tensormagic.engine.tensorinfo.pictures.histogram import HIST_ALL_MAX

    t = torch.randn(HIST_ALL_MAX + 1, generator=torch.Generator().manual_seed(0))
    h = inspect_object("t", t, {}).pictures.histogram
    assert not h.exact and 0 < h.counted < t.numel() and "longer than the statistics" in h.sample_reason
    assert "(from a sample: counting all" in render_text(inspect_object("t", t, {}))
    full = inspect_object("t", t, {}, budget=2 * t.numel()).pictures.histogram
    assert full.exact and full.counted == t.numel()
    counts, _ = np.histogram(t.numpy().astype(np.float64), bins=np.asarray(full.edges))  # the same edges, in float64
    assert full.counts == counts.tolist()
