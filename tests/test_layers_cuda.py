"""The layers probe and automatic display on a CUDA device (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tensormagic.engine.layers import inspect_layers
from tensormagic.engine.preview import tensor_preview

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_probe_on_cuda_restores_buffers_and_the_cuda_generator():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Dropout(0.5), nn.Flatten(), nn.Linear(8 * 8 * 8, 4)).cuda().train()
    x = torch.randn(4, 3, 8, 8, device="cuda")
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    cuda_rng = torch.cuda.get_rng_state_all()
    r = inspect_layers("m", model, (x,))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    assert all(torch.equal(a, b) for a, b in zip(cuda_rng, torch.cuda.get_rng_state_all()))
    conv = next(row for row in r.layers if row.type == "Conv2d")
    assert conv.macs == 4 * 8 * 8 * 8 * 27 and conv.device == "cuda:0"
    assert r.totals.saved_bytes == sum(row.saved_bytes for row in r.layers) > 0


def test_preview_of_a_cuda_tensor_reads_a_small_view():
    t = torch.rand(3, 512, 512, device="cuda")
    p = tensor_preview(t)
    assert p.kind == "image" and len(p.values) <= 48
