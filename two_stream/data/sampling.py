"""TSN segment sampling: pure functions of (length, K, L, rng) returning 0-based indices.

A video of `num_items` items (frames for RGB, flow fields for flow) is cut into K equal
segments over the `num_items - L + 1` valid snippet starts. Training draws one start uniformly
inside each segment; testing takes each segment's centre. A snippet is the L consecutive items
from its start. Videos shorter than K or L still give valid indices: starts repeat and the last
item repeats (clamped), so every index lies in [0, num_items).
"""
from __future__ import annotations

import numpy as np


def _check(num_items: int, num_segments: int, length: int) -> None:
    if num_items < 1:
        raise ValueError(f"cannot sample from a video with {num_items} items")
    if num_segments < 1 or length < 1:
        raise ValueError(f"num_segments and length must be >= 1, got {num_segments}, {length}")


def _segment_bounds(num_items: int, num_segments: int, length: int) -> np.ndarray:
    """Segment edges over the valid starts, float [K + 1]."""
    starts = max(num_items - length + 1, 1)
    return np.linspace(0.0, starts, num_segments + 1)


def snippets(starts: np.ndarray, length: int, num_items: int) -> np.ndarray:
    """Starts [K] -> indices [K, L] of L consecutive items, clamped to the last item."""
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length, dtype=np.int64)
    return np.minimum(idx, num_items - 1)


def train_indices(num_items: int, num_segments: int, length: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Random snippet per segment: int64 [K, L]."""
    _check(num_items, num_segments, length)
    edges = _segment_bounds(num_items, num_segments, length)
    # integer starts of segment k: [ceil(e_k), ceil(e_k+1)); the segments partition the valid
    # starts. A segment with none (video shorter than K) takes floor(e_k): starts repeat.
    lo = np.ceil(edges[:-1]).astype(np.int64)
    hi = np.ceil(edges[1:]).astype(np.int64)
    empty = hi <= lo
    lo[empty] = np.floor(edges[:-1][empty]).astype(np.int64)
    hi[empty] = lo[empty] + 1
    starts = rng.integers(lo, hi)
    return snippets(starts, length, num_items)


def test_indices(num_items: int, num_segments: int, length: int) -> np.ndarray:
    """Centre snippet of each segment (deterministic): int64 [K, L].

    With `num_segments` = 25 this is the TSN 25-snippet test protocol.
    """
    _check(num_items, num_segments, length)
    edges = _segment_bounds(num_items, num_segments, length)
    centres = (edges[:-1] + edges[1:]) / 2.0
    starts = np.minimum(np.floor(centres).astype(np.int64), max(num_items - length, 0))
    return snippets(starts, length, num_items)
