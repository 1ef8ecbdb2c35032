"""Segment consensus: K per-segment class scores -> one video score.

`mean` and `max` are TSN's. `var` (variance-weighted) trusts confident segments more: with
s_k the class scores of segment k (a vector over C classes),

    w_k = Var_c(s_k) / sum_j Var_c(s_j),      consensus = sum_k w_k * s_k

so a segment whose scores are flat (the network is unsure) counts little and a peaked one a
lot. The same rule weights streams per video in late fusion (`two_stream.fusion`).
"""
from __future__ import annotations

import torch

from ..errors import UserError

CONSENSUS = ("mean", "max", "var", "topk")


def variance_weighted(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Weighted mean over `dim` with weights ~ the variance over the last (class) dim.

    x: [..., M, ..., C] -> [..., C] with `dim` removed. Falls back to the plain mean where all
    variances are zero.
    """
    var = x.float().var(dim=-1, unbiased=False, keepdim=True)  # [..., M, ..., 1]
    w = (var + eps) / (var + eps).sum(dim=dim, keepdim=True)
    return (w * x).sum(dim=dim)


def topk_mean(x: torch.Tensor, k: int, dim: int = 1) -> torch.Tensor:
    """Mean of the k largest values along `dim`, per class (k is capped at the size)."""
    k = max(1, min(k, x.shape[dim]))
    return x.topk(k, dim=dim).values.mean(dim=dim)


def segment_consensus(x: torch.Tensor, mode: str, topk: int = 3) -> torch.Tensor:
    """x: [B, K, C] segment scores -> [B, C]. `topk`: mean of each class's `topk` largest
    segment scores (between max, k = 1, and mean, k = K)."""
    if mode == "topk":
        return topk_mean(x, topk)
    if mode == "mean":
        return x.mean(dim=1)
    if mode == "max":
        return x.amax(dim=1)
    if mode == "var":
        return variance_weighted(x, dim=1)
    raise UserError(f"unknown consensus {mode!r}; choose from {CONSENSUS} (or 'lstm' head)")

