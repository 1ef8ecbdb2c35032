"""Group transforms: one crop and one flip for all snippets of a sample, as TSN does.

Inputs are float tensors in [0, 1] shaped [K, C, H, W] (K snippets; C = 3 for RGB, 2L for flow
with channels x_0, y_0, x_1, y_1, ...). Flow images store motion as grey levels around 0.5, so
a horizontal flip must also invert the x channels (v -> 1 - v): the scene moves the other way.
Random choices come from a numpy Generator passed in, so a sample is a pure function of
(seed, epoch, index) whatever the number of loader workers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from ..errors import UserError

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
FLOW_MEAN, FLOW_STD = 0.5, 0.226  # TSN's flow normalisation on [0, 1] grey levels
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


def to_snippet_tensor(frames: np.ndarray, modality: str, num_segments: int) -> torch.Tensor:
    """Stack decoded images into the model's layout, float [K, C, H, W] in [0, 1].

    rgb: uint8 [K, H, W, 3] -> [K, 3, H, W].
    flow: uint8 [K*L, H, W, 2] (x, y per field, snippets in time order) -> [K, 2L, H, W] with
    channel 2t = x of field t and 2t+1 = y of field t.
    """
    t = torch.from_numpy(np.ascontiguousarray(frames))
    if modality == "rgb":
        out = t.permute(0, 3, 1, 2)
    elif modality == "flow":
        n, h, w, _ = t.shape
        length = n // num_segments
        out = t.reshape(num_segments, length, h, w, 2).permute(0, 1, 4, 2, 3)
        out = out.reshape(num_segments, 2 * length, h, w)
    else:
        raise UserError(f"unknown modality {modality!r}; use 'rgb' or 'flow'")
    return out.float().div_(255.0)


def hflip(x: torch.Tensor, modality: str) -> torch.Tensor:
    """Mirror [..., C, H, W]; for flow also invert the x channels (even indices)."""
    x = TF.horizontal_flip(x)
    if modality == "flow":
        x = x.clone()
        x[..., 0::2, :, :] = 1.0 - x[..., 0::2, :, :]
    return x


def normalize(x: torch.Tensor, modality: str) -> torch.Tensor:
    """ImageNet mean/std for RGB; (v - 0.5) / 0.226 for flow (TSN)."""
    if modality == "rgb":
        mean = torch.tensor(RGB_MEAN).view(3, 1, 1)
        std = torch.tensor(RGB_STD).view(3, 1, 1)
        return (x - mean) / std
    return (x - FLOW_MEAN) / FLOW_STD


def multiscale_crop_box(height: int, width: int, input_size: int, rng: np.random.Generator,
                        scales: tuple[float, ...] = TSN_SCALES, max_distort: int = 1,
                        more_fix_crop: bool = True) -> tuple[int, int, int, int]:
    """TSN's multi-scale crop: (top, left, h, w) of a crop to be resized to input_size.

    Crop sides are scales of the short side (snapped to input_size when within 3 px), height
    and width at most `max_distort` scale steps apart; the box sits at one of 5 (corners and
    centre) or 13 fixed offsets.
    """
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [input_size if abs(s - input_size) < 3 else s for s in sizes]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes)
             if abs(i - j) <= max_distort]
    ch, cw = pairs[rng.integers(len(pairs))]
    hs, ws = (height - ch) / 4.0, (width - cw) / 4.0
    offsets = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    if more_fix_crop:
        offsets += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    oy, ox = offsets[rng.integers(len(offsets))]
    return int(oy * hs), int(ox * ws), ch, cw


@dataclass(frozen=True)
class TrainTransform:
    """Multi-scale crop, resize to input_size, random flip, normalise."""

    modality: str
    input_size: int = 224
    scales: tuple[float, ...] = TSN_SCALES
    flip: bool = True

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        # x: [K, C, H, W] in [0, 1]
        top, left, h, w = multiscale_crop_box(x.shape[-2], x.shape[-1], self.input_size, rng,
                                              self.scales)
        x = TF.resized_crop(x, top, left, h, w, [self.input_size, self.input_size],
                            antialias=True)
        if self.flip and rng.random() < 0.5:
            x = hflip(x, self.modality)
        return normalize(x, self.modality)


def resize_short(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [..., H, W] so the short side is `size` (aspect kept)."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    if h <= w:
        new = [size, max(size, round(w * size / h))]
    else:
        new = [max(size, round(h * size / w)), size]
    return TF.resize(x, new, antialias=True)


def multi_crop(x: torch.Tensor, modality: str, input_size: int, scale_size: int,
               num_crops: int = 1) -> torch.Tensor:
    """[K, C, H, W] -> normalised [num_crops, K, C, input_size, input_size].

    1: centre crop. 3: three crops along the long side (start, centre, end).
    10: four corners and centre, then the same five flipped (flow x inverted).
    """
    x = resize_short(x, scale_size)
    h, w = x.shape[-2:]
    s = input_size
    if s > min(h, w):
        raise UserError(f"input size {s} is larger than the scaled frame {h}x{w}")
    centre = ((h - s) // 2, (w - s) // 2)
    if num_crops == 1:
        boxes = [centre]
    elif num_crops == 3:
        if w >= h:
            boxes = [(centre[0], 0), centre, (centre[0], w - s)]
        else:
            boxes = [(0, centre[1]), centre, (h - s, centre[1])]
    elif num_crops == 10:
        boxes = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), centre]
    else:
        raise UserError(f"test crops must be 1, 3 or 10, got {num_crops}")
    crops = [TF.crop(x, t, l, s, s) for t, l in boxes]
    if num_crops == 10:
        crops += [hflip(c, modality) for c in crops]
    return normalize(torch.stack(crops), modality)
