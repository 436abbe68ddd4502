"""The pictures' subsamples copied out by the statistics' C pass (``pictures/grids.py``) give
exactly the pictures a view draws when it reads the tensor itself."""

from __future__ import annotations

import pytest
import torch

from tensormagic.engine.tensorinfo.pictures import PictureOptions, tensor_grids
from tensormagic.engine.tensorinfo.pictures.grids import channel_grid, heatmap_grid, image_grid
from tensormagic.engine.tensorinfo.pictures.heatmap import heatmap_view
from tensormagic.engine.tensorinfo.pictures.images import channel_view, image_view
from tensormagic.engine.tensorinfo.pictures.options import channel_layout, image_layout
from tensormagic.engine.tensorinfo.statistics import fused, stats_sample_grids
from tensormagic.engine.tensorinfo.statistics.fused import PlaneGrid, grid_fits

needs_c_pass = pytest.mark.skipif(not fused.available(), reason="the optional C pass is not built (no C compiler): the views read the tensor themselves")
BIG = 10**9  # a statistics budget that takes every tensor here whole


def _rasters(view):
    return [(r.width, r.height, r.rgb) for r in view.tiles]


@needs_c_pass
@pytest.mark.parametrize(
    ("make", "dtype"),
    [
        (lambda: torch.randn(1500, 1300), torch.float32),
        (lambda: torch.randn(5, 700, 900, dtype=torch.float64), torch.float64),
        (lambda: (torch.randn(2, 3, 600, 610) * 40).to(torch.int16), torch.int16),
        (lambda: torch.randn(1200, 2048)[:, :1500], torch.float32),  # a view: rows inside longer runs
        (lambda: torch.randn(900, 800).to(torch.bfloat16), torch.bfloat16),
    ],
)
def test_a_heatmap_from_the_pass_is_the_heatmap_read_from_the_tensor(make, dtype):
    t = make()
    assert t.dtype == dtype
    spec = heatmap_grid(tuple(t.shape))
    stats, _, grids = stats_sample_grids(t, BIG, [spec])
    assert spec in grids  # the pass filled it
    assert _rasters(heatmap_view(t, stats, 0, grids)) == _rasters(heatmap_view(t, stats, 0, None))


@needs_c_pass
@pytest.mark.parametrize("shape", [(3, 700, 650), (1, 800, 800), (12, 3, 300, 310), (900, 700)])
def test_image_and_channel_views_from_the_pass_are_the_views_read_from_the_tensor(shape):
    t = torch.rand(*shape)
    layout = image_layout(shape)
    wanted = [g for g in (image_grid(shape), channel_grid(shape)) if g is not None]
    stats, _, grids = stats_sample_grids(t, BIG, wanted)
    assert set(grids) == set(wanted)
    assert _rasters(image_view(t, layout, None, True, grids)) == _rasters(image_view(t, layout, None, True, None))
    clayout = channel_layout(shape)
    if clayout is not None:
        assert _rasters(channel_view(t, clayout, BIG, grids)) == _rasters(channel_view(t, clayout, BIG, None))


def test_grids_are_asked_for_every_default_picture_and_only_where_the_walk_is_row_major():
    t = torch.rand(16, 3, 200, 200)
    kinds = {g.planes for g in tensor_grids(t, PictureOptions())}
    assert kinds == {24, 3}  # the image grid (8 images x 3 channels) and the channel view's (values in [0, 1] or not)
    assert tensor_grids(t, PictureOptions(kinds=())) == []
    transposed = torch.randn(300, 200).t()
    assert not grid_fits(transposed, PlaneGrid(planes=1, height=200, width=300, step=(2, 2)))
    expanded = torch.randn(1, 300).expand(200, 300)
    assert not grid_fits(expanded, PlaneGrid(planes=1, height=200, width=300, step=(2, 2)))


@needs_c_pass
def test_a_grid_that_does_not_lie_in_the_values_is_refused_by_the_pass():
    t = torch.randn(100, 100)
    out = torch.empty(2, 10, 10)
    with pytest.raises(ValueError):
        fused._fused.stats(t.data_ptr(), "float32", [10000], [4], 1.0, 1, 0, 0, [(out.data_ptr(), 2, 100, 100, 10, 10)])


@needs_c_pass
def test_views_that_share_a_grid_each_draw_the_same_pixels_as_alone():
    """An (H, W) tensor's heatmap and grey image read the same grid: drawing one never changes
    what the other gets, whichever comes first."""
    from tensormagic.engine.tensorinfo.pictures import PictureOptions, tensor_grids, tensor_pictures

    t = torch.rand(600, 700)
    for kinds in (("heatmap", "image"), ("image", "heatmap")):
        opts = PictureOptions(kinds=kinds)
        stats, _, grids = stats_sample_grids(t, BIG, tensor_grids(t, opts))
        assert len(grids) == 1
        with_grid = tensor_pictures(t, stats, BIG, opts, None, grids)
        alone = tensor_pictures(t, stats, BIG, opts, None, None)
        assert _rasters(with_grid.heatmap) == _rasters(alone.heatmap) and _rasters(with_grid.image) == _rasters(alone.image)
