"""Segment consensus over stored snippet scores, in numpy: what the models' consensus modules
compute in torch, value for value, so fusion tables can try another consensus without torch
(seconds of start-up for a table that takes less) and without running a network again."""
from __future__ import annotations

import numpy as np

from .errors import UserError


def variance_weighted(x: np.ndarray, axis: int = 1, eps: float = 1e-8) -> np.ndarray:
    """`two_stream.models.consensus.variance_weighted` in numpy, value for value: weights
    ~ the variance over the last (class) axis, in float32 as the model's version computes
    them; x: [..., M, ..., C] -> [..., C] with `axis` removed. Fusion must not import torch
    (seconds of start-up for a table that takes less)."""
    var = np.asarray(x, np.float32).astype(np.float64).var(axis=-1, keepdims=True)
    v = var.astype(np.float32) + np.float32(eps)  # torch: double accumulation, float32 result
    w = v / v.sum(axis=axis, keepdims=True)
    return (w * x).sum(axis=axis)


def consensus_from_snippets(snippet_scores: np.ndarray, mode: str, topk: int = 3
                            ) -> np.ndarray:
    """Recompute video scores [N, C] from per-segment scores [N, K, C] under another
    consensus, without running the network again: `segment_consensus` of the models, in
    numpy (float32, like the tensors the models compute on)."""
    x = np.asarray(snippet_scores, dtype=np.float32)
    if mode == "mean":
        return x.mean(axis=1)
    if mode == "max":
        return x.max(axis=1)
    if mode == "var":
        return variance_weighted(x, axis=1).astype(np.float32)
    if mode == "topk":
        k = max(1, min(topk, x.shape[1]))
        return -np.sort(-x, axis=1)[:, :k].mean(axis=1)
    raise UserError(f"unknown consensus {mode!r}; choose from mean, max, var, topk")
