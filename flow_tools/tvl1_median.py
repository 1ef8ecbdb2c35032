"""k x k median filter by a min/max selection network over shifted views: no k^2 copy, no sort.

`cv::medianBlur` on float images (what OpenCV's TV-L1 smooths its flow with) is a 3x3 or 5x5
median with replicated borders. Unfolding the k^2 neighbours into a copy and sorting them (the
obvious tensor form) costs k^2 floats per pixel of memory and a sort per pixel: 85 % of the torch
TV-L1's CPU time, and a [B, 2, H, W, 25] copy that runs a GPU out of memory at 1080p. Here the
neighbours are views of one padded tensor, and the median is selected by Paeth's / Devillard's
"forgetful selection": of n values, load the first n // 2 + 2, drop their minimum and their
maximum (neither can be the median of all n, and dropping one value below and one above keeps
the median of the rest the same), load the next value, and repeat until three are left; their
median is the answer. Only compare-exchanges (min, max) are used, so the result is exactly the
sorted median (ties and signed zeros included: min/max return one of their inputs), and under
torch.compile the whole network fuses into one kernel that keeps the values in registers.
Eager, at most n // 2 + 4 tensors of the image's size are alive at once (16 for 5x5).

What inductor makes of the network on a CPU is slow, though (3.4 ms per 340x256 pair on 2
threads, padded outside the graph; 8.9 with the replicate padding inside, whose clamped indices
keep it from vectorising), where `cv::medianBlur`'s hand-vectorised loop takes 0.4 ms on one:
the fast path of a CPU (`median_blur_cpu`) calls OpenCV's median itself, which is what OpenCV's
TV-L1 smooths with, and equal to the network's result.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def _drop_min_max(vals: list[torch.Tensor]) -> list[torch.Tensor]:
    """The multiset `vals` minus one minimum and one maximum (per element), by compare-exchanges.

    Values are taken two at a time as (low, high): the minimum is the least of the lows, the
    maximum the greatest of the highs, and an unpaired value may be either. Every step keeps the
    multiset, so what is left is exactly the values minus those two. Consumes `vals` as it goes
    so no more than len(vals) + 2 tensors are alive."""
    lo = hi = None
    kept: list[torch.Tensor] = []
    while len(vals) >= 2:
        a, b = vals.pop(), vals.pop()
        low, high = torch.minimum(a, b), torch.maximum(a, b)
        del a, b
        if lo is None:
            lo, hi = low, high
            continue
        kept.append(torch.maximum(lo, low))  # the loser of the minimum's tournament stays
        lo = torch.minimum(lo, low)
        kept.append(torch.minimum(hi, high))
        hi = torch.maximum(hi, high)
    if vals:  # unpaired: drop min(lo, x); the other one may still be the maximum
        x = vals.pop()
        other = torch.maximum(lo, x)
        kept.append(torch.minimum(hi, other))
    return kept


def median_of(vals: list[torch.Tensor]) -> torch.Tensor:
    """Element-wise median of an odd number of same-shaped tensors (forgetful selection)."""
    n = len(vals)
    if n % 2 == 0:
        raise ValueError(f"median_of needs an odd number of values, got {n}")
    if n == 1:
        return vals[0]
    work, rest = list(vals[:n // 2 + 2]), list(vals[n // 2 + 2:])
    while len(work) > 3 or rest:
        work = _drop_min_max(work)
        if rest:
            work.append(rest.pop(0))
    a, b, c = work
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def median_filter(u: torch.Tensor, k: int) -> torch.Tensor:
    """[B, C, H, W] k x k median (k odd) with replicated borders, as `cv::medianBlur` does on
    float images; equal, element for element, to the median of the unfolded windows."""
    if k <= 1:
        return u
    return median_of_padded(pad_replicate(u, k), k)


def pad_replicate(u: torch.Tensor, k: int) -> torch.Tensor:
    """u padded by k // 2 on every side with its border values (as medianBlur extends)."""
    r = k // 2
    return F.pad(u, (r, r, r, r), mode="replicate")


def median_of_padded(p: torch.Tensor, k: int) -> torch.Tensor:
    """The k x k median of the image that `pad_replicate(u, k)` padded into p: only shifted
    views of p, so a compiled graph reads with constant offsets and vectorises."""
    h, w = p.shape[-2] - (k - 1), p.shape[-1] - (k - 1)
    return median_of([p[..., dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)])


def median_blur_cpu(u: torch.Tensor, run: torch.Tensor, k: int) -> torch.Tensor:
    """u [B, C, H, W] (a CPU tensor) with its first two (flow) channels replaced by their
    k x k median (k = 3 or 5) where run [B] is true: `cv::medianBlur` on each channel."""
    if k not in (3, 5):
        raise ValueError(f"cv::medianBlur takes float images only at sizes 3 and 5, got {k}")
    src = u.contiguous()
    out = src.clone()
    dst = out.numpy()
    src = src.numpy()
    for b in np.flatnonzero(run.numpy()):
        for c in range(2):
            dst[b, c] = cv2.medianBlur(src[b, c], k)
    return out
