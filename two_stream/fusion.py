"""Late fusion of any number of streams, and the rows of a fusion table.

Scores are stacked as [S, N, C] (streams, videos, classes) after per-stream normalisation.
Fixed rules (average, max, weighted with given weights, product, var, var_topk) use no label.
Learned rules never see the label of a video they score: `search` (grid over the weight
simplex) and `stack` (`two_stream.stacking`: the structured model, the full one, or by
default whichever of the two an inner CV prefers where the full one is small) are
fitted either on a separate
validation score file or by k-fold cross-validation, each fold scored by a model fitted on the
other folds only (out-of-fold).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_softmax, softmax

from . import stacking
from .data.splits import group_of
from .errors import UserError
from .fusion_choices import FIXED_METHODS, LEARNED_METHODS, METHODS, NORMS, STACK_MODELS
from .fusion_folds import group_folds
from .metrics import (
    bootstrap_ci,
    class_mean,
    label_rank,
    mcnemar_p,
    mmaction_mean_class_accuracy,
    tied_top,
    topk_from_rank,
)
from .stack_full import candidacy, fit_logistic, full_features

ROWS = 4096  # videos per block where a rule works a block at a time

__all__ = ["FIXED_METHODS", "LEARNED_METHODS", "METHODS", "NORMS", "STACK_MODELS", "fuse_fixed",
           "fusion_rows", "learn", "normalize"]


def normalize(scores: np.ndarray, norm: str) -> np.ndarray:
    """Per-video normalisation of [N, C] scores (rows are videos)."""
    s = np.asarray(scores, dtype=np.float64)
    if norm == "none":
        return s
    if norm == "softmax":
        return softmax(s, axis=1)
    if norm == "log_softmax":
        return log_softmax(s, axis=1)
    if norm == "zscore":
        sd = s.std(axis=1, keepdims=True)
        return (s - s.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    if norm == "l2":
        n = np.linalg.norm(s, axis=1, keepdims=True)
        return s / np.where(n > 0, n, 1.0)
    raise UserError(f"unknown normalisation {norm!r}; choose from {NORMS}")


def fuse_fixed(stack: np.ndarray, method: str, weights: np.ndarray | None = None,
               topk: int = 5) -> np.ndarray:
    """[S, N, C] normalised scores -> fused [N, C] by a rule that uses no label.

    `product` ignores the normalisation given and sums log-softmax scores (the log of the
    product of the streams' probabilities), so pass raw scores for it. Log-softmax only
    subtracts a per-video constant from each stream, so `product` ranks classes exactly like
    the plain sum of raw logits (`average` with norm `none`): a useful check, not a new rule.
    """
    if method == "average":
        return stack.mean(axis=0)
    if method == "max":
        return stack.max(axis=0)
    if method == "weighted":
        if weights is None or len(weights) != stack.shape[0]:
            raise UserError(f"weighted fusion needs {stack.shape[0]} weights, got {weights}")
        return np.tensordot(np.asarray(weights, dtype=np.float64), stack, axes=1)
    # one stream at a time below: the same numbers as the [S, N, C] expressions, without
    # their full-size temporaries (the memory a Kinetics-size table peaks at)
    if method == "product":
        out = np.empty(stack.shape[1:])
        for i in range(0, len(out), ROWS):
            out[i: i + ROWS] = _sum_streams(log_softmax(x[i: i + ROWS], axis=-1) for x in stack)
        return out
    if method == "var":  # per video, stream weight ~ variance of its class scores
        # = score_consensus.variance_weighted(stack.transpose(1, 0, 2), axis=1), exactly
        v = np.stack([np.asarray(x, np.float32).astype(np.float64).var(axis=-1, keepdims=True)
                      .astype(np.float32) for x in stack]) + np.float32(1e-8)  # [S, N, 1]
        w = v / v.sum(axis=0, keepdims=True)
        return _sum_streams(w[k] * x for k, x in enumerate(stack))
    if method == "var_topk":  # the same, with the variance of each stream's top-k scores
        c = stack.shape[2]
        k = min(topk, c)  # each stream's top k, descending as -sort(-x)[:, :k] gives them
        top = np.stack([np.sort(np.partition(x, c - k, axis=-1)[:, c - k:], axis=-1)[:, ::-1]
                        for x in stack])
        var = top.var(axis=2, keepdims=True) + 1e-12  # [S, N, 1]
        w = var / var.sum(axis=0, keepdims=True)
        return _sum_streams(w[j] * x for j, x in enumerate(stack))
    raise UserError(f"unknown fusion method {method!r}; choose from {METHODS}")


def _sum_streams(parts) -> np.ndarray:
    """The sum of [N, C] arrays, added in order (as `.sum(axis=0)` over [S, N, C] adds)."""
    it = iter(parts)
    out = np.array(next(it), dtype=np.float64)
    for p in it:
        out += p
    return out


def weight_grid(num_streams: int, step: float | None = None) -> np.ndarray:
    """Points of the weight simplex [W, S] (weights >= 0 summing to 1) on a regular grid."""
    if step is None:
        step = 0.05 if num_streams <= 3 else 0.1
    n = int(round(1 / step))
    pts = [c for c in itertools.product(range(n + 1), repeat=num_streams - 1) if sum(c) <= n]
    return np.array([[*c, n - sum(c)] for c in pts], dtype=np.float64) / n


def select_weights(stack: np.ndarray, labels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The grid point with the best top-1 on (stack, labels); ties go to the most even
    weights (the smallest spread), then to grid order."""
    # chunks of videos, one grid point at a time: [rows, C] buffers that stay in cache
    # instead of [W, N, C] (21 copies of the scores); the same products and sums
    s, n, c = stack.shape
    rows = max(1, 2 ** 17 // c)
    hits = np.zeros(len(grid), np.int64)
    z, t = np.empty((2, min(rows, n), c))
    for i in range(0, n, rows):
        xs, y = stack[:, i: i + rows], labels[i: i + rows]
        m = len(y)
        for j, w in enumerate(grid):
            zz = np.multiply(xs[0], w[0], out=z[:m])
            for k in range(1, s):
                zz += np.multiply(xs[k], w[k], out=t[:m])
            hits[j] += int((zz.argmax(axis=1) == y).sum())
    acc = hits / n
    best = np.flatnonzero(acc == acc.max())
    return grid[best[np.argmin(grid[best].std(axis=1))]]


@dataclass
class Learned:
    """Scores of a learned rule and how its labels were used."""

    scores: np.ndarray  # [N, C]
    labels_used: str
    weights: list[list[float]] = field(default_factory=list)  # per fold (search)
    detail: str = ""


def learn(method: str, stack: np.ndarray, labels: np.ndarray, groups: list[str], *,
          num_folds: int = 5, seed: int = 0, val_stack: np.ndarray | None = None,
          val_labels: np.ndarray | None = None, val_groups: list[str] | None = None,
          stack_model: str = "auto") -> Learned:
    """Fit `search` or `stack` on validation scores when given, else out-of-fold by k-fold CV.

    In the CV case the scores of the videos in fold f come from a rule fitted on the labels of
    the other folds only; folds hold whole groups (`group_folds`). `stack_model`: the
    structured model of `two_stream.stacking` (L2 by inner group CV; `val_groups` are the
    validation videos' groups for it, each video its own group when not given), `full`,
    the [S*C x C] logistic regression, or `auto`: the structured model or, where it is a
    candidate (`stack_full.candidacy`), the full one on centred scores, whichever
    the same inner CV finds better.
    """
    if stack_model not in STACK_MODELS:
        raise UserError(f"unknown stacking model {stack_model!r}; choose from {STACK_MODELS}")
    if method == "stack" and stack_model != "full":
        full, note = candidacy(stack_model, stack.shape[0], stack.shape[2])
        if val_stack is not None:
            vg = val_groups if val_groups is not None else [str(i) for i in range(len(val_labels))]
            res = stacking.stack_on_validation(stack, val_stack, val_labels, vg, seed=seed,
                                               full=full)
            res.note = note
            return Learned(res.scores, "validation score file", [],
                           res.detail("on the validation videos"))
        res = stacking.stack_out_of_fold(stack, labels, groups,
                                         group_folds(labels, groups, num_folds, seed), seed=seed,
                                         full=full)
        res.note = note
        return Learned(res.scores, f"{num_folds}-fold group CV on these videos (out-of-fold)",
                       [], res.detail("on each fold's training videos"))
    num_classes = stack.shape[2]
    grid = weight_grid(stack.shape[0]) if method == "search" else None
    warm: list[np.ndarray] = []  # the previous fold's parameters

    def fit_apply(tr_stack, tr_labels, te_stack):
        if method == "search":
            w = select_weights(tr_stack, tr_labels, grid)
            return np.tensordot(w, te_stack, axes=1), w.tolist()
        model, theta = fit_logistic(full_features(tr_stack), tr_labels, num_classes,
                                    theta0=warm[-1] if warm else None)
        warm.append(theta)
        return model(full_features(te_stack)), None

    if val_stack is not None:
        scores, w = fit_apply(val_stack, val_labels, stack)
        return Learned(scores, "validation score file", [w] if w else [])
    folds = group_folds(labels, groups, num_folds, seed)
    out = np.zeros(stack.shape[1:], dtype=np.float64)
    weights = []
    for f in range(num_folds):
        tr, te = folds != f, folds == f
        out[te], w = fit_apply(stack[:, tr], labels[tr], stack[:, te])
        if w is not None:
            weights.append(w)
    return Learned(out, f"{num_folds}-fold group CV on these videos (out-of-fold)", weights)


# --- table rows ----------------------------------------------------------------------------

@dataclass
class Row:
    method: str
    norm: str
    top1: float
    top1_lo: float
    top1_hi: float
    top5: float
    mean_class_acc: float
    p_vs_best: float | None
    labels_used: str
    correct: np.ndarray  # bool [N], label is the unique top score: for McNemar
    pred: np.ndarray
    detail: str = ""
    tied: int = 0  # videos whose top score is shared by several classes
    mmaction_mean_class: float | None = None  # with --mmaction-mean-class

    def as_dict(self) -> dict:
        extra = ({} if self.mmaction_mean_class is None
                 else {"mean_class_acc_mmaction": self.mmaction_mean_class})
        return {"method": self.method, "norm": self.norm, "top1": self.top1,
                "top1_ci_lo": self.top1_lo, "top1_ci_hi": self.top1_hi, "top5": self.top5,
                "mean_class_acc": self.mean_class_acc, **extra, "p_vs_best_single": self.p_vs_best,
                "labels_used": self.labels_used, "tied_videos": self.tied,
                "detail": self.detail}


def score_row(method: str, norm: str, scores: np.ndarray, labels: np.ndarray,
              labels_used: str, resamples: int = 1000, seed: int = 0, detail: str = "", *,
              mmaction: bool = False) -> Row:
    """Top-1 (with its bootstrap CI), top-5 and mean class accuracy; a video whose top scores
    tie counts as the expected accuracy of a uniform random tie-break. `mmaction`: also
    MMAction2's mean class accuracy."""
    above, equal = label_rank(scores, labels)  # one pass serves top-1, top-5 and McNemar
    expected = topk_from_rank(above, equal, 1)
    lo, hi = bootstrap_ci(expected, resamples, seed=seed)
    tied = int(tied_top(scores).sum())
    if tied:
        detail = (detail + "; " if detail else "") + (
            f"{tied} videos tie at the top (scored as the expected accuracy of a random "
            "tie-break; wrong for McNemar)")
    return Row(method, norm, float(expected.mean()), lo, hi,
               float(topk_from_rank(above, equal, 5).mean()),
               class_mean(expected, labels, scores.shape[1]), None, labels_used,
               expected == 1.0, scores.argmax(axis=1), detail, tied,
               mmaction_mean_class_accuracy(scores, labels) if mmaction else None)


def precise_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log-softmax that keeps the log-probability of a dominant class: -log1p(sum of the
    others' exp) instead of -log(1 + ...), which rounds to exactly 0 once the others fall
    below 1e-16 (logit gaps above ~37)."""
    t = x - x.max(axis=axis, keepdims=True)
    e = np.exp(t)
    top = np.expand_dims(np.argmax(t, axis=axis), axis)
    np.put_along_axis(e, top, 0.0, axis=axis)  # one maximum contributes the 1 of log1p
    t -= np.log1p(e.sum(axis=axis, keepdims=True))
    return t


def _per_stream(raw: np.ndarray, fn) -> np.ndarray:
    """[S, N, C] of fn(raw[s]) for a per-video fn, filled in place (no copies to stack)."""
    out = np.empty(raw.shape, np.float64)
    for k, x in enumerate(raw):
        for i in range(0, x.shape[0], ROWS):  # rows at a time: small temporaries
            out[k, i: i + ROWS] = fn(x[i: i + ROWS])
    return out


def fuse_probabilities_in_log_space(raw: np.ndarray, method: str,
                                    weights: list[float] | None,
                                    logp: np.ndarray | None = None) -> np.ndarray:
    """`average`, `weighted` and `max` of softmax probabilities, as the log of the fused
    probability: the same class ranking as exact arithmetic, where logits in the hundreds
    saturate the probabilities themselves to 0 and 1 and create ties that are not there.
    `logp`: `precise_log_softmax` of `raw` along the classes, when the caller has it."""
    if logp is None:
        logp = _per_stream(raw, precise_log_softmax)  # [S, N, C]
    if method == "max":
        return logp.max(axis=0)
    w = np.full(len(raw), 1.0 / len(raw)) if method == "average" else np.asarray(weights, float)
    if (w < 0).any():
        raise UserError(f"weights must be >= 0 to fuse probabilities, got {list(w)}")
    out = np.empty(logp.shape[1:])
    with np.errstate(divide="ignore"):
        lw = np.log(w)
    for i in range(0, out.shape[0], ROWS):  # rows at a time: [ROWS, C] temporaries
        out[i: i + ROWS] = _logsumexp_streams(logp[:, i: i + ROWS], lw)
    return out


def _logsumexp_streams(logp: np.ndarray, lw: np.ndarray) -> np.ndarray:
    """scipy's logsumexp of logp + lw over the streams (the maxima counted apart, log1p of
    the rest), value for value, one stream at a time."""
    with np.errstate(divide="ignore", invalid="ignore"):
        top = logp[0] + lw[0]
        for k in range(1, len(lw)):
            np.maximum(top, logp[k] + lw[k], out=top)
        m, s = np.zeros(top.shape, np.uint8), np.zeros_like(top)  # m: streams at the max
        for k in range(len(lw)):
            t = logp[k] + lw[k]
            eq = t == top
            m += eq
            t -= top
            np.exp(t, out=t)
            t[eq] = 0.0
            s += t
        np.divide(s, m, out=s, where=s != 0)
        out = np.log1p(s, out=s)
        tie = m > 1  # log(m) = 0 elsewhere: adding it there changes nothing
        out[tie] += np.log(m[tie].astype(np.float64))
        out += top
        return out


def fusion_rows(streams: dict[str, np.ndarray], labels: np.ndarray, video_ids: list[str], *,
                methods: tuple[str, ...] = METHODS, norms: tuple[str, ...] = ("none",),
                weights: list[float] | None = None, topk: int = 5, num_folds: int = 5,
                seed: int = 0, resamples: int = 1000,
                val: tuple | None = None, stack_model: str = "auto",
                mmaction_mean_class: bool = False) -> list[Row]:
    """One row per single stream, then one per (method, norm); each fused row carries the
    exact McNemar p-value against the best single stream. `video_ids` give the groups of the
    cross-validation folds. `val`: (scores per stream, labels[, video ids]) of validation
    videos the learned rows fit on. `mmaction_mean_class`: also MMAction2's mean class
    accuracy (`mmaction_mean_class_accuracy`)."""
    groups = [group_of(v) for v in video_ids]
    names = list(streams)
    rows = [score_row(n, "-", streams[n], labels, "none", resamples, seed,
                      mmaction=mmaction_mean_class) for n in names]
    best = max(rows, key=lambda r: r.top1)
    raw = np.stack([np.asarray(streams[n], np.float64) for n in names])
    # our stacking models (not `full`) centre each video's scores: logits and log-probabilities
    # are one fit for them, kept here by their features
    centred = stack_model != "full"
    centred_fits: dict[str, Learned] = {}
    cache: dict[str, np.ndarray] = {"none": raw, "-": raw}  # [S, N, C] per norm, made once

    def normed(norm: str) -> np.ndarray:
        if norm not in cache:
            cache[norm] = _per_stream(raw, lambda s: normalize(s, norm))
        return cache[norm]

    def logp() -> np.ndarray:  # precise log-softmax of each stream
        if "logp" not in cache:
            cache["logp"] = _per_stream(raw, precise_log_softmax)
        return cache["logp"]

    def needs(method: str, norm: str) -> str:  # the cache entry a row reads
        if method == "product":
            return "-"
        if norm == "softmax" and (method in ("average", "weighted", "max") or (
                method == "stack" and centred)):
            return "logp"  # (the centred [softmax] is the [none] fit when there is one)
        return norm

    for i_method, method in enumerate(methods):
        later = {needs(m, n) for m in methods[i_method:] for n in norms}
        for key in set(cache) - later - {"none", "-"}:
            del cache[key]  # no later row reads it: a full-size array less at the peak
        if method == "weighted" and weights is None:
            continue
        for norm in (["-"] if method == "product" else norms):
            stack = normed(norm)
            detail, used = "", "none"
            if method in FIXED_METHODS and norm == "softmax" and method in (
                    "average", "weighted", "max"):
                fused = fuse_probabilities_in_log_space(raw, method, weights, logp())
                if method == "weighted":
                    detail = "weights " + ":".join(f"{w:g}" for w in weights)
                    used = "none (weights fixed in advance)"
            elif method in FIXED_METHODS:
                fused = fuse_fixed(stack, method, weights, topk)
                if method == "weighted":
                    detail = "weights " + ":".join(f"{w:g}" for w in weights)
                    used = "none (weights fixed in advance)"
            else:
                # the centred models weigh softmax scores as log-probabilities, as the
                # fixed [softmax] rules compare them: probabilities of logits in the hundreds
                # are 0 and 1 and keep nothing of how sure a stream was
                own = method == "stack" and centred
                as_log = own and norm == "softmax"
                prep = ((lambda x: precise_log_softmax(np.asarray(x, np.float64), axis=-1))
                        if as_log else (lambda x, norm=norm: normalize(x, norm)))
                # the model centres each video's scores: log-probabilities and logits differ
                # by a constant per video, so [softmax] and [none] are one fit
                key = "logits" if norm in ("none", "softmax") else norm
                if own and key in centred_fits:
                    learned = centred_fits[key]
                else:
                    if as_log:
                        stack = logp()
                    v = None
                    if val is not None:
                        v = np.stack([prep(val[0][n]) for n in names])
                    vg = ([group_of(x) for x in val[2]] if val is not None and len(val) > 2
                          else None)
                    learned = learn(method, stack, labels, groups, num_folds=num_folds,
                                    seed=seed, val_stack=v,
                                    val_labels=None if val is None else val[1],
                                    val_groups=vg, stack_model=stack_model)
                    if own:
                        centred_fits[key] = learned
                fused, used, detail = learned.scores, learned.labels_used, learned.detail
                if as_log:
                    detail = ("softmax scores as log-probabilities (centred per video: the "
                              "[none] logits, one fit); " + detail)
                if learned.weights:
                    detail = ("weights " if val is not None else "weights per fold ") + "; ".join(
                        ":".join(f"{x:.2f}" for x in w) for w in learned.weights)
            row = score_row(method, norm, fused, labels, used, resamples, seed, detail,
                            mmaction=mmaction_mean_class)
            row.p_vs_best = mcnemar_p(row.correct, best.correct)
            rows.append(row)
    return rows
