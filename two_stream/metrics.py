"""Accuracy metrics with uncertainty: top-k, mean class accuracy, bootstrap CI, McNemar.

TSN's papers report mean class accuracy; most two-stream code reports top-1 over videos. We
report both and label them. All functions take scores [N, C] (or predictions) and labels [N]
and ignore nothing: videos with unknown labels (-1) must be filtered before.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import binomtest


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """bool [N]: is the label among the k highest scores (ties broken by class order)."""
    k = min(k, scores.shape[1])
    if k == 1:
        return scores.argmax(axis=1) == labels
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    return float(topk_correct(scores, labels, k).mean())


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float [C]: recall of each class (NaN for a class with no video)."""
    total = np.bincount(labels, minlength=num_classes).astype(float)
    hit = np.bincount(labels[pred == labels], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hit / total


def mean_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean of per-class recall over the classes present (TSN's reported metric)."""
    return float(np.nanmean(per_class_accuracy(pred, labels, num_classes)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C]: rows true class, columns predicted class."""
    return np.bincount(labels * num_classes + pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def bootstrap_ci(correct: np.ndarray, num_resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy `correct.mean()` (videos resampled)."""
    rng = np.random.default_rng(seed)
    n = len(correct)
    idx = rng.integers(0, n, size=(num_resamples, n))
    means = correct[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact (binomial) McNemar test on paired predictions: two-sided p-value that A and B
    have the same accuracy, from the videos exactly one of them gets right."""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5).pvalue)
