"""Group transforms in uint8: one crop and one flip for all snippets of a sample, as TSN does.

A sample arrives as one list of planes per snippet: RGB snippets hold one uint8 [H, W, 3]
image, flow snippets 2L uint8 [H, W] grey images in channel order x_0, y_0, x_1, y_1, ...;
a plane is an array or a `Jpeg`, decoded only when its turn comes. Each plane is cropped (a
view) and resized straight into the output array uint8 [K, C, S, S], so no full-size copy,
float conversion or per-frame tensor op is made, and only one decoded plane is alive at a time:
the loader costs little more than JPEG decoding and bilinear resizing
(`results/loader/breakdown.md`). Float conversion and normalisation happen on
the batch, on the device (`normalize_batch`, called by the model). Flow images store motion as
grey levels around 128, so a horizontal flip must also invert the x channels (v -> 255 - v).
Random choices come from a numpy Generator passed in, so a sample is a pure function of
(seed, epoch, index) whatever the number of loader workers.
"""
from __future__ import annotations

import functools
from typing import Callable, Union

import cv2
import numpy as np
import torch

from ..errors import UserError
from .frames import FrameReadError, Jpeg

Plane = Union[np.ndarray, Jpeg]  # decoded, or decoded when placed
Geometry = Callable[[int, int], tuple[tuple[int, int, int, int], tuple[int, int], bool]]

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
FLOW_MEAN, FLOW_STD = 0.5, 0.226  # TSN's flow normalisation on [0, 1] grey levels
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


def channel_stats(modality: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) [C, 1, 1] of inputs scaled to [0, 1]: ImageNet's for RGB, TSN's for flow."""
    if modality == "rgb":
        return torch.tensor(RGB_MEAN).view(3, 1, 1), torch.tensor(RGB_STD).view(3, 1, 1)
    if modality == "flow":
        return torch.full((channels, 1, 1), FLOW_MEAN), torch.full((channels, 1, 1), FLOW_STD)
    raise UserError(f"unknown modality {modality!r}; use 'rgb' or 'flow'")


def normalize_batch(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [..., C, H, W] -> float32 (x / 255 - mean) / std, wherever x lives."""
    return (x.float().div_(255.0) - mean.to(x.device)) / std.to(x.device)


def _resize(roi: np.ndarray, size: tuple[int, int], dst: np.ndarray | None = None,
            flip: bool = False):
    """cv2.resize to (W, H), mirrored when `flip`: bilinear, or area averaging when shrinking
    by more than 1.5x (where bilinear aliases; area costs 8x bilinear, and TSN's crops shrink
    by at most 256/224 = 1.14x, so training never pays it). A crop already of the output
    size is copied, not resampled."""
    if (roi.shape[1], roi.shape[0]) == tuple(size):
        if flip:
            return cv2.flip(roi, 1, dst=dst)
        if dst is None:
            return roi.copy()
        dst[...] = roi
        return dst
    strong = size[0] * 1.5 < roi.shape[1] and size[1] * 1.5 < roi.shape[0]
    interp = cv2.INTER_AREA if strong else cv2.INTER_LINEAR
    if not flip:
        return cv2.resize(roi, size, dst=dst, interpolation=interp)
    return cv2.flip(cv2.resize(roi, size, interpolation=interp), 1, dst=dst)


def _place(snippets: list[list[Plane]], modality: str, geometry: Geometry, bgr: bool = False,
           what: str = "sample", out: np.ndarray | None = None) -> np.ndarray:
    """Decode the planes one at a time (a `Jpeg` as it comes, so only one decoded plane is held)
    and write each into uint8 [K, C, H', W']: `geometry(h, w)` of the first plane gives the
    crop box (top, left, h, w), the output size (H', W') and whether to mirror. RGB comes out
    in RGB order (`bgr` images are swapped as they are split); mirroring inverts the flow x
    planes (v -> 255 - v). Every plane must have the first one's size. `out`: the array to
    write (a row of a batch), else a new one."""
    h = w = None
    for i, planes in enumerate(snippets):
        for c, p in enumerate(planes):
            img = p.decode() if isinstance(p, Jpeg) else p
            if h is None:
                h, w = img.shape[:2]
                (top, left, bh, bw), (oh, ow), flip = geometry(h, w)
                shape = (len(snippets), 3 if modality == "rgb" else len(planes), oh, ow)
                if out is None:
                    out = np.empty(shape, np.uint8)
                elif out.shape != shape:
                    raise ValueError(f"_place: out has shape {out.shape}, the sample {shape}")
            elif img.shape[:2] != (h, w):
                raise FrameReadError(f"{p.name if isinstance(p, Jpeg) else what}: frames of "
                                     f"different sizes in one sample ({w}x{h} and "
                                     f"{img.shape[1]}x{img.shape[0]})")
            roi = img[top:top + bh, left:left + bw]
            if modality == "rgb":
                small = _resize(roi, (ow, oh), flip=flip)
                # split straight into the output planes: 2x faster than a strided transpose
                cv2.split(small, [out[i, 2], out[i, 1], out[i, 0]] if bgr else list(out[i]))
                continue
            plane = _resize(roi, (ow, oh), dst=out[i, c], flip=flip)
            if flip and c % 2 == 0:  # x displacement changes sign in the mirror
                cv2.bitwise_not(plane, dst=plane)
    if h is None:
        raise FrameReadError(f"{what}: a sample with no frames")
    return out


def hflip(x: np.ndarray, modality: str) -> np.ndarray:
    """Mirror uint8 [..., C, H, W]; for flow also invert the x channels (even indices)."""
    x = np.ascontiguousarray(x[..., ::-1])
    if modality == "flow":
        x[..., 0::2, :, :] = 255 - x[..., 0::2, :, :]
    return x


@functools.lru_cache(maxsize=64)
def _crop_sizes(base: int, input_size: int, scales: tuple[float, ...], max_distort: int
                ) -> tuple[tuple[int, int], ...]:
    """The (h, w) crop sides multiscale_crop_box draws from (the same for every sample)."""
    sizes = [int(base * s) for s in scales]
    sizes = [input_size if abs(s - input_size) < 3 else s for s in sizes]
    return tuple((h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes)
                 if abs(i - j) <= max_distort)


def multiscale_crop_box(height: int, width: int, input_size: int, rng: np.random.Generator,
                        scales: tuple[float, ...] = TSN_SCALES, max_distort: int = 1,
                        more_fix_crop: bool = True) -> tuple[int, int, int, int]:
    """TSN's multi-scale crop: (top, left, h, w) of a crop to be resized to input_size.

    Crop sides are scales of the short side (snapped to input_size when within 3 px), height
    and width at most `max_distort` scale steps apart; the box sits at one of 5 (corners and
    centre) or 13 fixed offsets.
    """
    pairs = _crop_sizes(min(height, width), input_size, tuple(scales), max_distort)
    ch, cw = pairs[rng.integers(len(pairs))]
    hs, ws = (height - ch) / 4.0, (width - cw) / 4.0
    offsets = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    if more_fix_crop:
        offsets += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    oy, ox = offsets[rng.integers(len(offsets))]
    return int(oy * hs), int(ox * ws), ch, cw


def train_sample(snippets: list[list[Plane]], modality: str, input_size: int,
                 rng: np.random.Generator, scales: tuple[float, ...] = TSN_SCALES,
                 flip: bool = True, what: str = "sample", bgr: bool = False,
                 out: np.ndarray | None = None) -> torch.Tensor:
    """Multi-scale crop, resize to input_size, random flip: uint8 [K, C, S, S] (written into
    `out` when given)."""
    def geometry(h: int, w: int):
        box = multiscale_crop_box(h, w, input_size, rng, scales)
        return box, (input_size, input_size), bool(flip and rng.random() < 0.5)

    return torch.from_numpy(_place(snippets, modality, geometry, bgr, what, out))


def short_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(H, W) with the short side `size`, aspect kept."""
    if h <= w:
        return size, max(size, round(w * size / h))
    return max(size, round(h * size / w)), size


def crop_boxes(h: int, w: int, s: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners of the TSN test crops of side s in an h x w frame.

    1: centre. 3: start, centre and end of the long side. 10: four corners and centre (the
    flipped five are added by `eval_sample`).
    """
    if s > min(h, w):
        raise UserError(f"input size {s} is larger than the scaled frame {h}x{w}")
    centre = ((h - s) // 2, (w - s) // 2)
    if num_crops == 1:
        return [centre]
    if num_crops == 3:
        if w >= h:
            return [(centre[0], 0), centre, (centre[0], w - s)]
        return [(0, centre[1]), centre, (h - s, centre[1])]
    if num_crops == 10:
        return [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), centre]
    raise UserError(f"test crops must be 1, 3 or 10, got {num_crops}")


def eval_sample(snippets: list[list[Plane]], modality: str, input_size: int,
                scale_size: int, num_crops: int = 1, what: str = "sample",
                bgr: bool = False) -> torch.Tensor:
    """Resize the short side to scale_size, then the test crops: uint8 [crops, K, C, S, S]."""
    scaled = _place(snippets, modality,  # [K, C, sh, sw]
                    lambda h, w: ((0, 0, h, w), short_side_size(h, w, scale_size), False),
                    bgr, what)
    sh, sw = scaled.shape[-2:]
    s = input_size
    crops = [scaled[..., t:t + s, l:l + s] for t, l in crop_boxes(sh, sw, s, num_crops)]
    if num_crops == 10:
        crops += [hflip(c, modality) for c in crops]
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops)))


def flow_snippets(fields: list[tuple[Plane, Plane]], num_segments: int
                  ) -> list[list[Plane]]:
    """K*L (x, y) fields in time order -> K snippets of 2L planes x_0, y_0, x_1, y_1, ..."""
    length = len(fields) // num_segments
    return [[p for t in range(length) for p in fields[k * length + t]]
            for k in range(num_segments)]
