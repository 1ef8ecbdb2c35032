"""Accuracy metrics with uncertainty: top-k, mean class accuracy, bootstrap CI, McNemar.

TSN's papers report mean class accuracy; most two-stream code reports top-1 over videos. We
report both and label them. All functions take scores [N, C] (or predictions) and labels [N]
and ignore nothing: videos with unknown labels (-1) must be filtered before.
"""
from __future__ import annotations

import numpy as np


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """float [N]: the chance that the label is among the k highest scores when ties are broken
    uniformly at random (1 or 0 for a video without a tie at the boundary).

    With `a` classes scoring above the label and `e` classes (the label among them) scoring
    exactly as much, the label's rank is uniform over a+1..a+e, so the chance is
    clip((k - a) / e, 0, 1). Neither class order nor float precision changes the number.
    """
    above, equal = label_rank(scores, labels)
    return topk_from_rank(above, equal, k)


def label_rank(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int [N] each: classes scoring above the label, and exactly as much (the label among
    them): what `topk_correct` needs for every k, from one pass over the scores."""
    s = np.asarray(scores)
    v = s[np.arange(len(labels)), labels][:, None]
    return (s > v).sum(axis=1), (s == v).sum(axis=1)


def topk_from_rank(above: np.ndarray, equal: np.ndarray, k: int) -> np.ndarray:
    """`topk_correct` from `label_rank`'s counts."""
    return np.clip((k - above) / equal, 0.0, 1.0)


def strict_correct(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """bool [N]: the label is the unique highest score. A tie counts as wrong: the 0/1 outcome
    McNemar's test needs, decided without looking at class order."""
    return topk_correct(scores, labels, 1) == 1.0  # 1 exactly when no class ties or beats it


def tied_top(scores: np.ndarray) -> np.ndarray:
    """bool [N]: the highest score is shared by more than one class."""
    s = np.asarray(scores)
    return (s == s.max(axis=1, keepdims=True)).sum(axis=1) > 1


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Mean of `topk_correct` (ties scored as the expected accuracy of a random tie-break)."""
    return float(topk_correct(scores, labels, k).mean())


def class_mean(correct: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean over the classes present of the mean (expected) correctness of their videos: mean
    class accuracy from `topk_correct`, so ties count as in top-1."""
    total = np.bincount(labels, minlength=num_classes).astype(float)
    hit = np.bincount(labels, weights=np.asarray(correct, float), minlength=num_classes)
    present = total > 0
    return float((hit[present] / total[present]).mean())


def mmaction_mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """MMAction2's `mean_class_accuracy`, for checking a number against its logs: the
    prediction is `argmax` (a tie goes to the first class), and the mean of per-class recall
    runs over every class that is predicted *or* true, so a predicted class with no test video
    adds a 0. `class_mean` averages over the true classes only and scores ties as the
    expected accuracy of a random tie-break."""
    pred = np.asarray(scores).argmax(axis=1)
    present = np.union1d(pred, labels)
    hit = np.bincount(labels[pred == labels], minlength=present.max() + 1)[present]
    total = np.bincount(labels, minlength=present.max() + 1)[present]
    return float(np.mean(np.where(total > 0, hit / np.maximum(total, 1), 0.0)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C]: rows true class, columns predicted class."""
    return np.bincount(labels * num_classes + pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


_resample_cache: dict[tuple[int, int, int], np.ndarray] = {}
_CHUNK = 100  # resamples drawn and counted at a time: [100, n] temporaries, not [R, n]


def _resample_counts(n: int, num_resamples: int, seed: int) -> np.ndarray:
    """uint8 [R, n]: how often each video is drawn in each bootstrap resample of one seed
    (the draws of `rng.integers(0, n, (R, n))`, counted). Every row of a table resamples the
    same videos (paired CIs), so they are counted once per (n, R, seed) and kept for the next
    row; a resample's mean is then one product with the counts instead of a gather."""
    key = (n, num_resamples, seed)
    if key not in _resample_cache:
        _resample_cache.clear()  # one table at a time: [R, n] is 20 MB at Kinetics size
        rng = np.random.default_rng(seed)
        # a count is at most n, and ~Poisson(1): above 255 has probability ~1/256!
        counts = np.empty((num_resamples, n), np.uint8)
        for i in range(0, num_resamples, _CHUNK):
            m = min(_CHUNK, num_resamples - i)
            idx = rng.integers(0, n, size=(m, n))  # the same stream as one [R, n] draw
            c = np.bincount((idx + n * np.arange(m)[:, None]).ravel(), minlength=m * n)
            counts[i: i + m] = c.reshape(m, n)
        _resample_cache[key] = counts
    return _resample_cache[key]


def bootstrap_ci(correct: np.ndarray, num_resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy `correct.mean()` (videos resampled)."""
    counts = _resample_counts(len(correct), num_resamples, seed)
    # float32: for 0/1 correctness the sums are integers below 2^24, exact; a tie's fraction
    # moves a mean by ~1e-7 at most
    c = np.asarray(correct, np.float32)
    means = np.concatenate([counts[i: i + _CHUNK].astype(np.float32) @ c
                            for i in range(0, len(counts), _CHUNK)]).astype(np.float64) / len(c)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def _binom_half(kind: str, x: float, n: int) -> float:
    """pmf / cdf / sf of Binomial(n, 1/2) at x, as `scipy.stats.binom` computes them (the
    same special functions, the same edge cases), without importing scipy.stats."""
    from scipy.special import _ufuncs
    if kind == "pmf":
        ok = x == int(x) and 0 <= x <= n
        return float(np.clip(_ufuncs._binom_pmf(x, n, 0.5), 0, 1)) if ok else 0.0
    if x >= n:
        return 1.0 if kind == "cdf" else 0.0
    if x < 0:
        return 0.0 if kind == "cdf" else 1.0
    f = _ufuncs._binom_cdf if kind == "cdf" else _ufuncs._binom_sf
    return float(np.clip(f(np.floor(x), n, 0.5), 0, 1))


def _search(a, d: float, lo: float, hi: float) -> float:
    """scipy.stats' binary search for the other tail of a two-sided binomial test."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        midval = a(mid)
        if midval < d:
            lo = mid + 1
        elif midval > d:
            hi = mid - 1
        else:
            return mid
    return lo if a(lo) <= d else lo - 1


def binom_test_half(k: int, n: int) -> float:
    """Two-sided exact binomial test of k successes in n at p = 1/2: the p-value of
    `scipy.stats.binomtest(k, n, 0.5)`, value for value (tested), without the second that
    importing scipy.stats costs a fusion table."""
    d = _binom_half("pmf", k, n)
    rerr = 1 + 1e-7
    if k == 0.5 * n:
        return 1.0
    if k < 0.5 * n:
        ix = _search(lambda x: -_binom_half("pmf", x, n), -d * rerr, np.ceil(0.5 * n), n)
        y = n - ix + int(d * rerr == _binom_half("pmf", ix, n))
        pval = _binom_half("cdf", k, n) + _binom_half("sf", n - y, n)
    else:
        ix = _search(lambda x: _binom_half("pmf", x, n), d * rerr, 0, np.floor(0.5 * n))
        pval = _binom_half("cdf", ix, n) + _binom_half("sf", k - 1, n)
    return min(1.0, pval)


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact (binomial) McNemar test on paired predictions: two-sided p-value that A and B
    have the same accuracy, from the videos exactly one of them gets right."""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    if b + c == 0:
        return 1.0
    return float(binom_test_half(b, b + c))
