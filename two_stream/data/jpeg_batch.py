"""Decode and augment on the device (`--decode gpu`): loader workers only read JPEG bytes and
draw the crop and flip; the main process decodes the whole batch with nvJPEG
(`torchvision.io.decode_jpeg(..., device="cuda")`) and crops, resizes and flips there.

Why torchvision's decoder: it ships with the torchvision we already depend on, decodes a list
of images in one batched call on CUDA, and on a CPU gives the same pixels as OpenCV (both are
libjpeg-turbo), so one code path is testable everywhere; torchcodec targets video streams.

The crop box, the flip and the sampled frames are the ones the CPU path (`transforms`) would
use for the same (seed, epoch, index); resizing is bilinear with the same pixel mapping in
both (OpenCV rounds its fixed-point weights), so the two paths agree to one grey level
(tests/data/test_jpeg_batch.py), not bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from .transforms import crop_boxes, short_side_size


@dataclass
class JpegSample:
    """One video's snippets as JPEG bytes, and what to do with them once decoded."""

    data: list[torch.Tensor]  # uint8 [bytes] per image: K snippets x (1 RGB | 2L grey) planes
    num_segments: int
    modality: str
    size: int  # output side S
    box: tuple[int, int, int, int] | None = None  # training crop (top, left, h, w)
    flip: bool = False
    scale_size: int = 0  # test: short side before the crops
    num_crops: int = 1


def collate_jpeg(items: list) -> tuple[list[JpegSample], torch.Tensor, list[str]]:
    """DataLoader collate for `JpegSample` items: the bytes stay a list (decoded later)."""
    samples, labels, ids = zip(*items)
    return list(samples), torch.tensor(labels), list(ids)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, h, w], bilinear (OpenCV's INTER_LINEAR mapping),
    antialiased when shrinking by more than 1.5x (where the CPU path averages areas)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    strong = size[0] * 1.5 < x.shape[-2] and size[1] * 1.5 < x.shape[-1]  # as transforms
    y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False,
                      antialias=strong)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _flip(x: torch.Tensor, modality: str) -> torch.Tensor:
    x = x.flip(-1)
    if modality == "flow":
        x[..., 0::2, :, :] = 255 - x[..., 0::2, :, :]
    return x


def decode_samples(samples: list[JpegSample], device: torch.device) -> torch.Tensor:
    """A batch of `JpegSample` -> uint8 [B, K, C, S, S] (training) or [B, crops, K, C, S, S]
    (test), decoded and transformed on `device`."""
    modality = samples[0].modality
    mode = ImageReadMode.RGB if modality == "rgb" else ImageReadMode.GRAY
    flat = [d for s in samples for d in s.data]
    images = decode_jpeg(flat, mode=mode, device=device)  # one batched call
    out, pos = [], 0
    for s in samples:
        planes = images[pos:pos + len(s.data)]
        pos += len(s.data)
        per = len(planes) // s.num_segments
        x = torch.stack([torch.cat(planes[k * per:(k + 1) * per]) for k in range(s.num_segments)])
        if s.box is not None:  # training: one crop for all snippets, then the flip
            top, left, h, w = s.box
            x = _resize(x[..., top:top + h, left:left + w], (s.size, s.size))
            out.append(_flip(x, modality) if s.flip else x)
            continue
        sh, sw = short_side_size(x.shape[-2], x.shape[-1], s.scale_size)
        x = _resize(x, (sh, sw))
        crops = [x[..., t:t + s.size, l:l + s.size]
                 for t, l in crop_boxes(sh, sw, s.size, s.num_crops)]
        if s.num_crops == 10:
            crops += [_flip(c.clone(), modality) for c in crops]
        out.append(torch.stack(crops))
    return torch.stack(out)


def to_device(x, device: torch.device) -> torch.Tensor:
    """A loader batch on `device`: a uint8 tensor is moved, JPEG samples are decoded there."""
    if isinstance(x, list):
        return decode_samples(x, device)
    return x.to(device, non_blocking=True)

