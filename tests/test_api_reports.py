"""tensormagic.tensorinfo(...) and tensormagic.todevice(...): the magics' reports from plain Python."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tensormagic


def test_tensorinfo_names_the_object_and_finds_what_shares_its_memory():
    x = np.array([[1, 2], [3, 4]])
    y = torch.from_numpy(x)
    report = tensormagic.tensorinfo(x)
    d = report.to_dict()
    assert d["name"] == "x" and d["dtype"] == "int64" and d["equivalent_dtype"] == "torch.int64"
    assert any(a["name"] == "y" for a in d["aliases"])
    assert y.dtype == torch.int64


def test_tensorinfo_of_a_model_layer_by_layer_and_of_the_namespace():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    batch = torch.randn(2, 4)
    report = tensormagic.tensorinfo(model, input=batch)
    assert [row["name"] for row in report.to_dict()["layers"]][:2] == ["model", "0"] and report.to_dict()["totals"]["macs"] == 2 * 4 * 3
    overview = tensormagic.tensorinfo(namespace={"model": model, "batch": batch})
    assert {"model", "batch"} <= {e["name"] for e in overview.to_dict()["entries"]}


def test_todevice_placement_and_an_all_or_nothing_move():
    x = torch.ones(2)
    m = torch.nn.Linear(2, 2)
    placement = tensormagic.todevice()
    assert {"x", "m"} <= {row["name"] for row in placement.to_dict()["placement"]}
    moved, report = tensormagic.todevice("meta", {"x": x, "m": m})
    assert moved["x"].is_meta and moved["m"] is m and m.weight.is_meta and not x.is_meta
    assert report.to_dict()["action"] == "move"
    with pytest.raises(ValueError):
        tensormagic.todevice("cpu")
