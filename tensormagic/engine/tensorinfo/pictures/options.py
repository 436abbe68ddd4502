"""Which pictures a tensor gets: the user's choice (flags) or the defaults for its shape and dtype.

Defaults: an image view when the shape reads as an image and the values as intensities (float
in [0, 1], uint8); a channel view of other (C, H, W) / (N, C, H, W) feature maps; a heatmap of
2-D tensors and of the last two dims of other N-D ones; a histogram of every numeric tensor of
more than one element.  Asking for a picture explicitly (``image=True``...) shows only the ones
asked for.  :class:`PictureError` (one line) when a picture cannot be made as asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

#: ImageNet's per-channel mean and std (RGB): what ``--denorm imagenet`` undoes.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

#: The most pixels (width x height) all of one view's pictures hold together.
MAX_PIXELS = 512 * 512
#: The longest side of one picture.
MAX_SIDE = 512
#: Images of a batch, channels of a feature map, slices of an N-D tensor drawn at most.
MAX_IMAGES = 8
MAX_CHANNELS = 16
MAX_SLICES = 4
#: Smallest height and width an image (or channel) must have to be drawn as one by default.
MIN_IMAGE_SIDE = 8

Kind = Literal["image", "channels", "heatmap", "histogram"]
KINDS: tuple[Kind, ...] = ("image", "channels", "heatmap", "histogram")


class PictureError(ValueError):
    """A picture asked for that this tensor cannot give (the message is one line)."""


@dataclass(frozen=True, kw_only=True)
class Denorm:
    """Undo a normalisation: ``x * std + mean`` per channel (one value: every channel)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str

    def for_channels(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The mean and std of each of ``channels`` channels (PictureError when they do not fit)."""
        if len(self.mean) == 1:
            return self.mean * channels, self.std * channels
        if len(self.mean) != channels:
            raise PictureError(f"--denorm {self.name} gives {len(self.mean)} means and stds, but the image has {channels} channel{'s' if channels != 1 else ''}; give MEAN,STD or {channels} means then {channels} stds")
        return self.mean, self.std


def parse_denorm(text: str) -> Denorm:
    """``imagenet``, ``MEAN,STD`` or ``M1,M2,M3,S1,S2,S3`` (PictureError when it is none)."""
    word = text.strip()
    if word.lower() == "imagenet":
        return Denorm(mean=IMAGENET[0], std=IMAGENET[1], name="imagenet")
    parts = [p.strip() for p in word.replace(" ", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise PictureError(f"--denorm takes imagenet, MEAN,STD or one mean per channel then one std per channel (e.g. 0.5,0.5 or 0.485,0.456,0.406,0.229,0.224,0.225), not {text!r}") from None
    if len(values) < 2 or len(values) % 2:
        raise PictureError(f"--denorm needs as many means as stds: MEAN,STD (2 numbers) or one of each per channel (6 for RGB), got {len(values)} number{'s' if len(values) != 1 else ''}")
    if not all(math.isfinite(v) for v in values) or any(v == 0 for v in values[len(values) // 2 :]):
        raise PictureError(f"--denorm needs finite numbers and stds other than 0, got {text!r}")
    half = len(values) // 2
    return Denorm(mean=tuple(values[:half]), std=tuple(values[half:]), name=word)


@dataclass(frozen=True, kw_only=True)
class PictureOptions:
    """What to draw: ``kinds`` None means the defaults for the shape; an empty tuple, nothing."""

    kinds: tuple[Kind, ...] | None = None
    denorm: Denorm | None = None

    @property
    def explicit(self) -> bool:
        return self.kinds is not None


NO_PICTURES = PictureOptions(kinds=())


def options(*, image: bool = False, channels: bool = False, heatmap: bool = False, hist: bool = False, pictures: bool = True, denorm: str | None = None) -> PictureOptions:
    """The options from the magic's flags (PictureError when they conflict)."""
    asked = tuple(k for k, on in zip(KINDS, (image, channels, heatmap, hist)) if on)
    if not pictures:
        if asked or denorm:
            flag = "--denorm" if denorm and not asked else "--" + ("hist" if asked[0] == "histogram" else asked[0])
            raise PictureError(f"--no-pictures and {flag} conflict: give one")
        return NO_PICTURES
    parsed = parse_denorm(denorm) if denorm is not None else None
    if parsed is not None and asked and "image" not in asked:
        raise PictureError("--denorm applies to the image view: add --image, or leave out the other picture flags")
    return PictureOptions(kinds=asked or None, denorm=parsed)


@dataclass(frozen=True, kw_only=True)
class Layout:
    """How a shape reads as images: ``channel_dim`` (None: grey, no channel dim), the height and
    width dims, and the batch dim (None: one image)."""

    name: str
    channels: int
    channel_dim: int | None
    batch_dim: int | None
    height: int
    width: int


def image_layout(shape: tuple[int, ...]) -> Layout | None:
    """How ``shape`` reads as one image or a batch of them, or None.  (3, H, W), (H, W, 3),
    (N, 3, H, W), (1, H, W), (N, 1, H, W), (H, W)."""
    if len(shape) == 3 and shape[0] in (1, 3):
        return Layout(name=f"({shape[0]}, H, W)", channels=shape[0], channel_dim=0, batch_dim=None, height=shape[1], width=shape[2])
    if len(shape) == 3 and shape[2] == 3:
        return Layout(name="(H, W, 3)", channels=3, channel_dim=2, batch_dim=None, height=shape[0], width=shape[1])
    if len(shape) == 4 and shape[1] in (1, 3):
        return Layout(name=f"(N, {shape[1]}, H, W)", channels=shape[1], channel_dim=1, batch_dim=0, height=shape[2], width=shape[3])
    if len(shape) == 2:
        return Layout(name="(H, W)", channels=1, channel_dim=None, batch_dim=None, height=shape[0], width=shape[1])
    return None


def channel_layout(shape: tuple[int, ...]) -> Layout | None:
    """How ``shape`` reads as channels of one feature map: (C, H, W), (N, C, H, W) (the first
    item), (H, W, 3); None for other shapes."""
    if len(shape) == 3 and shape[2] == 3 and shape[0] > 3:
        return Layout(name="(H, W, 3)", channels=3, channel_dim=2, batch_dim=None, height=shape[0], width=shape[1])
    if len(shape) == 3:
        return Layout(name="(C, H, W)", channels=shape[0], channel_dim=0, batch_dim=None, height=shape[1], width=shape[2])
    if len(shape) == 4:
        return Layout(name="(N, C, H, W)", channels=shape[1], channel_dim=1, batch_dim=0, height=shape[2], width=shape[3])
    return None


def looks_like_image(shape: tuple[int, ...], intensity: bool) -> bool:
    """The default: an image view for (3, H, W), (H, W, 3), (N, 3, H, W), (1, H, W) and (N, 1, H, W)
    with sides of at least MIN_IMAGE_SIDE whose values read as intensities (``intensity``); a
    plain (H, W) gets a heatmap instead."""
    layout = image_layout(shape)
    return layout is not None and len(shape) > 2 and intensity and min(layout.height, layout.width) >= MIN_IMAGE_SIDE


def default_kinds(shape: tuple[int, ...], numel: int, intensity: bool, numeric: bool) -> tuple[Kind, ...]:
    """The pictures a tensor of this shape gets when none are asked for (see the module docstring)."""
    kinds: list[Kind] = []
    if numel <= 1 or not numeric:
        return ()
    if looks_like_image(shape, intensity):
        kinds.append("image")
    else:
        layout = channel_layout(shape)
        if layout is not None and layout.channels >= 2 and min(layout.height, layout.width) >= MIN_IMAGE_SIDE // 2:
            kinds.append("channels")
        elif len(shape) >= 2 and min(shape[-2:]) >= 2:
            kinds.append("heatmap")
    kinds.append("histogram")
    return tuple(kinds)


__all__ = [
    "IMAGENET",
    "KINDS",
    "MAX_CHANNELS",
    "MAX_IMAGES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MAX_SLICES",
    "NO_PICTURES",
    "Denorm",
    "Kind",
    "Layout",
    "PictureError",
    "PictureOptions",
    "channel_layout",
    "default_kinds",
    "image_layout",
    "looks_like_image",
    "options",
    "parse_denorm",
]
