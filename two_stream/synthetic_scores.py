"""Generated score files with the statistics of real ones, for tests and speed benchmarks.

`kinetics_like`: the shape of a large, hard problem (Kinetics-400 validation: 19,796 videos x
400 classes): N(0, 1.5) logits with the label's logit raised by N(3, 1.5) in the first
stream and a little less in the second, clips in groups (`gNN` in the ids) of 4.
`ucf101_like`: two-stream ResNet logits as real UCF101 split-1 test scores look (the
statistics table in `UCF101_STATS`): a shared per-video latent difficulty, so the streams
agree on easy videos and complement each other on hard ones.
"""
from __future__ import annotations

import numpy as np


def _ids(labels: np.ndarray, per_group: int) -> list[str]:
    return [f"C{lab}/v_C{lab}_g{i // per_group:02d}_c{i % per_group:02d}"
            for i, lab in enumerate(labels)]


def kinetics_like(videos: int = 19796, classes: int = 400, *, seed: int = 0,
                  signal: tuple[float, ...] = (3.0, 2.6), noise: float = 1.5,
                  spread: float = 1.5, per_group: int = 4
                  ) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """(labels int64 [N], video ids, {stream: float32 logits [N, C]}). Groups of `per_group`
    consecutive videos share a label, as clips of one UCF101 group do."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, classes, -(-videos // per_group)), per_group)[:videos]
    streams = {}
    for k, mu in enumerate(signal):
        x = rng.normal(0.0, noise, (videos, classes))
        x[np.arange(videos), labels] += rng.normal(mu, spread, videos)
        streams[f"stream{k}"] = x.astype(np.float32)
    return labels.astype(np.int64), _ids(labels, per_group), streams
