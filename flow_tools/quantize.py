"""Flow <-> 8-bit image encoding shared with denseflow and MMAction2.

`q = round(255 * (clip(f, -B, B) + B) / (2B))`, bound B = 20 by default, so 127.5 is no
motion and one grey level is 2B/255 ~ 0.157 px: the round trip is exact to half of that for
flows inside the bound (JPEG compression adds its own error on top).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import torch

DEFAULT_BOUND = 20.0


def quantize(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """float flow (any shape, px) -> uint8 of the same shape."""
    if bound <= 0:
        raise UserError(f"bound must be positive, got {bound}")
    f = np.clip(np.asarray(flow, dtype=np.float32), -bound, bound)
    return np.round(255.0 * (f + bound) / (2.0 * bound)).astype(np.uint8)


def quantize_torch(flow: torch.Tensor, bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """`quantize` on the tensor's device, bit-equal to it: float [...] px -> uint8 [...].

    Same float32 operations in the same order, half-to-even rounding, and a true division:
    the divisor is a tensor on the device, because CUDA computes `x / python_number` as
    `x * (1 / python_number)`, which at some .5 boundaries (e.g. bound 15 or 30) lands on the
    other side and gives one grey level more or less than numpy.
    """
    import torch
    if bound <= 0:
        raise UserError(f"bound must be positive, got {bound}")
    f = flow.float().clamp(-bound, bound)
    span = torch.tensor(2.0 * bound, dtype=torch.float32, device=f.device)
    return torch.round(255.0 * (f + bound) / span).to(torch.uint8)


def dequantize(q: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 (or float grey levels) -> float32 flow in px, the inverse of `quantize`."""
    return (np.asarray(q, dtype=np.float32) * (2.0 * bound / 255.0) - bound).astype(np.float32)
