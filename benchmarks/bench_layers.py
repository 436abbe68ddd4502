"""``%tensorinfo model --input x`` beside torchinfo 1.8, on a ResNet-50 and a 12-layer
TransformerEncoder built from torch.nn, side by side in one run.

For each model it prints the best of N wall times of:
  forward     one plain ``model(x)`` under ``torch.no_grad()`` (the least any tool must do), and
              with grad (a training forward, which the probe runs to measure what backward keeps)
  tensorinfo  ``%tensorinfo model --input x`` in a real InteractiveShell (report built, not rendered)
  render      that report as text + HTML (separately)
  torchinfo   ``torchinfo.summary(model, input_data=x, verbose=0)``
and the totals each tool reports: parameters, MACs (and torch's own FlopCounterMode total as the
reference), and the memory figures (tensormagic: peak activation memory and bytes saved for
backward, measured; torchinfo: its "forward/backward pass size" estimate).  Both tools see the
model in eval mode, torchinfo's default.

Run: .venv/bin/python benchmarks/bench_layers.py [--repeat 3] [--batch 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
from timing import best  # benchmarks/timing.py (run as a script, its folder is on the path)
from torch import nn


class Bottleneck(nn.Module):
    """ResNet's bottleneck block (1x1, 3x3, 1x1 convolutions and a shortcut), as in torchvision."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision's resnet50 architecture (25,557,032 parameters), built from torch.nn."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._layer(64, 3)
        self.layer2 = self._layer(128, 4, stride=2)
        self.layer3 = self._layer(256, 6, stride=2)
        self.layer4 = self._layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, classes)

    def _layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def transformer_encoder() -> nn.Module:
    """12 layers of d_model 512, 8 heads, feed-forward 2048 (BERT-base-like widths halved)."""
    layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
    return nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """torch's FlopCounterMode over a plain forward, with grad (as training runs it) and without."""
    from torch.utils.flop_counter import FlopCounterMode

    out = []
    for grad in (True, False):
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
            model(x)
        out.append(counter.get_total_flops() // 2)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torchinfo
    from IPython.core.interactiveshell import InteractiveShell

    from tensormagic.render.display import render_html, render_text

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tensormagic")
    torch.manual_seed(0)
    models = {
        "ResNet-50": (ResNet50(), torch.randn(args.batch, 3, 224, 224)),
        "TransformerEncoder x12": (transformer_encoder(), torch.randn(args.batch, 128, 512)),
    }
    print(f"torch {torch.__version__}, torchinfo {torchinfo.__version__ if hasattr(torchinfo, '__version__') else '1.8'}, {torch.get_num_threads()} threads, batch {args.batch}, eval mode")
    results = []
    for label, (model, x) in models.items():
        model.eval()
        ip.user_ns.update(model=model, x=x)
        with torch.no_grad():
            model(x)  # warm up kernels and caches for every tool alike
        def plain() -> None:
            with torch.no_grad():
                model(x)

        forward = best(plain, args.repeat)
        forward_grad = best(lambda: model(x), args.repeat)  # what a training forward costs (the probe runs one)
        report = ip.run_line_magic("tensorinfo", "model --input x")
        ours = best(lambda: ip.run_line_magic("tensorinfo", "model --input x"), args.repeat)
        render = best(lambda: (render_text(report), render_html(report)), args.repeat)
        stats = torchinfo.summary(model, input_data=x, verbose=0)
        theirs = best(lambda: torchinfo.summary(model, input_data=x, verbose=0), args.repeat)
        grad_macs, nograd_macs = flop_counter_macs(model, x)
        t = report.totals
        row = {
            "model": label,
            "forward_s": forward,
            "forward_grad_s": forward_grad,
            "tensorinfo_s": ours,
            "render_s": render,
            "torchinfo_s": theirs,
            "tensorinfo_parameters": t.parameters,
            "torchinfo_parameters": stats.total_params,
            "tensorinfo_macs": t.macs,
            "torchinfo_macs": stats.total_mult_adds,
            "flop_counter_macs": grad_macs,
            "flop_counter_macs_no_grad": nograd_macs,
            "tensorinfo_peak_activation_bytes": t.peak_activation_bytes,
            "tensorinfo_saved_bytes": t.saved_bytes,
            "torchinfo_forward_backward_bytes": stats.total_output_bytes,
            "rows": len(report.layers),
            "torchinfo_rows": len(stats.summary_list),
        }
        results.append(row)
        print(f"\n{label}: input {tuple(x.shape)}")
        print(f"  time      forward {forward:.3f} s (with grad {forward_grad:.3f} s) | tensorinfo {ours:.3f} s ({ours / forward:.1f}x forward; render {render:.3f} s) | torchinfo {theirs:.3f} s ({theirs / forward:.1f}x) | tensorinfo/torchinfo {ours / theirs:.2f}")
        print(f"  rows      tensorinfo {row['rows']} module calls | torchinfo {row['torchinfo_rows']} layers")
        print(f"  params    tensorinfo {t.parameters:,} | torchinfo {stats.total_params:,}")
        print(f"  MACs      tensorinfo {t.macs:,} | torchinfo {stats.total_mult_adds:,} | FlopCounterMode {grad_macs:,} (with grad), {nograd_macs:,} (no grad, torchinfo's setting)")
        print(f"  memory    tensorinfo: peak activations {t.peak_activation_bytes / 2**20:,.1f} MiB, saved for backward {t.saved_bytes / 2**20:,.1f} MiB (measured) | torchinfo: forward/backward pass size {stats.total_output_bytes / 2**20:,.1f} MiB (estimate)")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
