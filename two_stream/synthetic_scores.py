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


# Real UCF101 split-1 test logits of two ResNet-101 streams (3,783 videos x 101 classes),
# measured in issue 21: what `ucf101_like` reproduces (`score_stats` computes the same)
UCF101_STATS = {
    "spatial": {"logit_sd": 16.6, "top1_median": 69.7, "margin_median": 21.4,
                "margin_p90": 48.9, "top1_acc": 0.813},
    "temporal": {"logit_sd": 59.6, "top1_median": 202.5, "margin_median": 51.0,
                 "margin_p90": 130.3, "top1_acc": 0.797},
}
UCF101_AVERAGE_TOP1 = 0.881  # average of the raw logits

# per stream: background sd, label boost (mean, sd) in background sds, offset of all logits;
# and the share of the boosts' variation the streams have in common (how alike they find a
# video hard). Fitted to UCF101_STATS by hand.
_UCF_PARAMS = {"spatial": (15.2, 3.85, 1.05, 11.0), "temporal": (56.5, 3.5, 0.45, 6.0)}
_UCF_SHARED = 0.75
_UCF_SHARED_BACKGROUND = 0.3  # share of the background both streams see (common confusions)


def score_stats(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The statistics of `UCF101_STATS` for logits [N, C]: sd of all logits, median top-1
    logit, median and 90th percentile of top-1 minus top-2, top-1 accuracy."""
    s = np.asarray(scores, np.float64)
    top2 = np.sort(s, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    return {"logit_sd": float(s.std()), "top1_median": float(np.median(top2[:, 1])),
            "margin_median": float(np.median(margin)),
            "margin_p90": float(np.percentile(margin, 90)),
            "top1_acc": float((s.argmax(axis=1) == labels).mean())}


def ucf101_like(videos: int = 3783, classes: int = 101, *, seed: int = 0, per_group: int = 5
                ) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """(labels, video ids, {"spatial", "temporal": float32 logits [N, C]}) with the statistics
    of `UCF101_STATS`: background logits N(0, sd) per stream, the label's logit raised by a
    per-video boost whose variation is partly shared by the streams, so they fail on partly
    different videos and average fusion gains what it gains on real scores."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, classes, -(-videos // per_group)), per_group)[:videos]
    shared = rng.normal(0, 1, videos)
    background = rng.normal(0, 1, (videos, classes))
    out = {}
    for name, (sd, boost, spread, offset) in _UCF_PARAMS.items():
        own = rng.normal(0, 1, videos)
        b = boost + spread * (np.sqrt(_UCF_SHARED) * shared + np.sqrt(1 - _UCF_SHARED) * own)
        x = (np.sqrt(_UCF_SHARED_BACKGROUND) * background
             + np.sqrt(1 - _UCF_SHARED_BACKGROUND) * rng.normal(0, 1, (videos, classes)))
        x[np.arange(videos), labels] += b
        out[name] = (sd * x + offset).astype(np.float32)
    return labels.astype(np.int64), _ids(labels, per_group), out
