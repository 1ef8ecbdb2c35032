"""Learned late fusion with the shape of late fusion: the `stack` rows' default model.

For streams s, videos n and classes c, with x the normalised scores of a stream (centred per
video and divided by the stream's overall spread, so one strength of L2 suits every stream),

    z[n, c] = sum_s (w[s] + d[s, c]) * x[s, n, c] + b[c],     p(c | n) = softmax_c z[n, c]

w: one weight per stream (not penalised: the weighted average that late fusion is), d: how much
more or less a stream is trusted for class c, b: a class bias. S*C + C parameters (+ S), where
the full model (`--stack full`) has [S*C x C]: 320 k for two streams of 400 classes, which
16 k training videos cannot pin down. The L2 strength on d and b is chosen by an inner
cross-validation over whole groups on the training videos only, so the rows stay out-of-fold.
The solver is L-BFGS on the exact gradient; a fit whose gradient is not small at the end is
reported, never silently used as if it had converged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fusion_folds import group_folds

L2_GRID = (1.0, 1e-1, 1e-2, 1e-3)  # strongest first: each fit warm-starts the next
GTOL = 1e-5  # the solver stops once the largest |gradient| of the mean loss is below this
CONVERGED = 1e-4  # ... and a fit counts as converged below this (else the row says so)


@dataclass
class Fit:
    """One fitted model: parameters, the scale of each stream, how the solver ended."""

    theta: np.ndarray  # [S + S*C + C]: w, d, b
    scale: np.ndarray  # [S]
    l2: float
    grad_max: float  # largest |gradient| at the end
    evals: int

    @property
    def converged(self) -> bool:
        return self.grad_max <= CONVERGED


def _features(stack: np.ndarray, scale: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """[S, N, C] -> (float32: centred per video, divided by each stream's spread; the spread).

    float32 halves the memory the fits stream through; the arithmetic on them is float64, so
    the loss stays a smooth function of the parameters and the solver can converge."""
    x = np.array(stack, dtype=np.float32)  # a copy, then in place: no [S, N, C] float64 temps
    x -= x.mean(axis=2, keepdims=True, dtype=np.float64).astype(np.float32)
    if scale is None:
        scale = np.array([np.sqrt(np.mean(np.square(xs, dtype=np.float64))) for xs in x])
        scale += 1e-12
    x /= scale.astype(np.float32)[:, None, None]
    return x, scale


def _unpack(theta: np.ndarray, s: int, c: int):
    return theta[:s], theta[s: s + s * c].reshape(s, c), theta[s + s * c:]


def _logits(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """float64 [N, C] logits of float32 features [S, N, C]."""
    s, _, c = x.shape
    w, d, b = _unpack(theta, s, c)
    a = w[:, None] + d  # [S, C] float64: the products are float64
    z = x[0] * a[0]
    for k in range(1, s):
        z += x[k] * a[k]
    z += b
    return z


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit(x: np.ndarray, y: np.ndarray, l2: float, scale: np.ndarray,
        theta0: np.ndarray | None = None, maxiter: int = 500) -> Fit:
    """Minimise the mean cross-entropy + l2/2 (|d|^2 + |b|^2) over features x [S, N, C]."""
    from scipy.optimize import minimize  # here: seconds of import a table without it skips
    s, n, c = x.shape
    rows = np.arange(n)
    evals = 0

    def loss_grad(theta):
        nonlocal evals
        evals += 1
        _, d, b = _unpack(theta, s, c)
        z = _logits(x, theta)
        z -= z.max(axis=1, keepdims=True)
        zy = z[rows, y]
        e = np.exp(z, out=z)  # in place: [N, C] is the size that costs
        tot = e.sum(axis=1, keepdims=True)
        loss = (np.log(tot[:, 0]).sum() - zy.sum()) / n + 0.5 * l2 * ((d * d).sum() + b @ b)
        e /= tot
        e[rows, y] -= 1.0
        e /= n  # dloss/dz [N, C]
        gd = np.stack([np.einsum("nc,nc->c", x[k], e) for k in range(s)])
        gb = e.sum(axis=0)
        grad = np.concatenate([gd.sum(axis=1), (gd + l2 * d).ravel(), gb + l2 * b])
        return loss, grad

    if theta0 is None:
        theta0 = np.concatenate([np.full(s, 1.0 / s), np.zeros(s * c + c)])
    res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "gtol": GTOL, "ftol": 1e-12})
    _, g = loss_grad(res.x)
    return Fit(res.x, scale, l2, float(np.abs(g).max()), evals)


def predict(fitted: Fit, stack: np.ndarray) -> np.ndarray:
    """Class log-probabilities [N, C] of normalised scores [S, N, C]."""
    x, _ = _features(stack, fitted.scale)
    return _log_softmax(_logits(x, fitted.theta))


def _nll(fitted: Fit, x: np.ndarray, y: np.ndarray) -> float:
    logp = _log_softmax(_logits(x, fitted.theta))
    return float(-logp[np.arange(len(y)), y].sum())


def choose_l2(x: np.ndarray, y: np.ndarray, inner: np.ndarray, scale: np.ndarray,
              grid: tuple[float, ...] = L2_GRID) -> tuple[float, dict[float, Fit]]:
    """The L2 strength with the lowest held-out cross-entropy over the inner folds `inner`
    (int [N], whole groups per fold), each fitted on the other inner folds; ties go to the
    stronger. Returns (strength, the last inner fit at each strength, to warm-start from)."""
    folds = np.unique(inner)
    loss = dict.fromkeys(grid, 0.0)
    last: dict[float, Fit] = {}
    for g in folds:
        tr, te = inner != g, inner == g
        theta = None
        for l2 in grid:
            f = fit(x[:, tr], y[tr], l2, scale, theta)
            theta, last[l2] = f.theta, f
            loss[l2] += _nll(f, x[:, te], y[te])
    best = min(grid, key=lambda l2: (loss[l2], -l2))
    return best, last


def _first_rise(h: dict[float, float]) -> int:
    """Index of the first strength whose held-out loss is above the previous one's (the
    last index when none is)."""
    v = list(h.values())
    return next((i for i in range(1, len(v)) if v[i] > v[i - 1]), len(v) - 1)


def _rose(h: dict[float, float]) -> bool:
    v = list(h.values())
    return any(v[i] > v[i - 1] for i in range(1, len(v)))


@dataclass
class Stacked:
    """Out-of-fold (or validation-fitted) scores of the structured model and how it went."""

    scores: np.ndarray  # [N, C] log-probabilities
    l2: list[float]  # chosen per outer fold (one with a validation file)
    not_converged: list[str]  # "fold k: max |gradient| g" of the fits that did not converge

    def detail(self, what: str) -> str:
        text = (f"structured model (S*C+C: per-stream per-class weights, class bias), L2 by "
                f"inner group CV {what}: " + ", ".join(f"{v:g}" for v in self.l2))
        if self.not_converged:
            text += "; DID NOT CONVERGE: " + ", ".join(self.not_converged)
        return text


def inner_folds(labels: np.ndarray, groups: list[str], k: int, seed: int) -> np.ndarray:
    """Group folds of the training videos for choosing L2 (at least 2, at most k)."""
    k = max(2, min(k, len(set(groups))))
    return group_folds(labels, groups, k, seed)


def stack_out_of_fold(stack: np.ndarray, labels: np.ndarray, groups: list[str],
                      folds: np.ndarray, *, seed: int = 0) -> Stacked:
    """Scores of fold f from a model fitted on the other folds, its L2 chosen on those other
    folds only.

    With K >= 3 folds the inner CV reuses the outer folds: the model fitted without folds f
    and f+1 (cyclically) is scored on f+1 to choose L2 for fold f, and on f for fold f+1, so
    each outer fold's L2 comes from two held-out folds of its own training videos at the cost
    of one fit per fold and strength (K pair fits instead of K x inner-k). Fewer folds: an
    inner group CV inside the training folds.
    """
    ks = np.unique(folds)
    out = np.zeros(stack.shape[1:], dtype=np.float64)
    chosen, bad = [], []
    if len(ks) < 3:
        for f in ks:
            tr = folds != f
            g_tr = [g for g, t in zip(groups, tr) if t]
            res = stack_on_validation(stack[:, folds == f], stack[:, tr], labels[tr], g_tr,
                                      seed=seed)
            out[folds == f] = res.scores
            chosen += res.l2
            bad += [f"fold {int(f) + 1}: {b}" for b in res.not_converged]
        return Stacked(out, chosen, bad)
    k = len(ks)
    heldout = {int(f): {} for f in ks}  # inner held-out loss per outer fold and strength
    warm: dict[tuple[int, float], np.ndarray] = {}
    for i, l2 in enumerate(L2_GRID):
        for f in ks:  # the pair (f, f+1)
            g = ks[(np.searchsorted(ks, f) + 1) % k]
            tr = (folds != f) & (folds != g)
            x, scale = _features(stack[:, tr])
            # warm start from the same pair's fit at the stronger strength only: a chain
            # through other pairs would carry the labels of the fold being chosen for
            prev = warm.get((int(f), L2_GRID[i - 1])) if i else None
            fitted = fit(x, labels[tr], l2, scale, prev)
            warm[(int(f), l2)] = fitted.theta
            for inner, outer in ((g, f), (f, g)):
                te = folds == inner
                h = heldout[int(outer)]
                h[l2] = h.get(l2, 0.0) + _nll(fitted, _features(stack[:, te], scale)[0],
                                              labels[te])
        # held-out loss is unimodal in the strength: a fold whose loss rose is done (its
        # choice is among the strengths tried so far); once every fold is, weaker strengths
        # (the slowest fits) are not tried
        if i and all(_rose(h) for h in heldout.values()):
            break
    for f in ks:
        tr, te = folds != f, folds == f
        h = heldout[int(f)]
        tried = list(h)[: _first_rise(h) + 1]
        l2 = min(tried, key=lambda v: (h[v], -v))
        x, scale = _features(stack[:, tr])
        final = fit(x, labels[tr], l2, scale, warm[(int(f), l2)])
        if not final.converged:
            bad.append(f"fold {int(f) + 1}: max |gradient| {final.grad_max:.1e}")
        out[te] = predict(final, stack[:, te])
        chosen.append(l2)
    return Stacked(out, chosen, bad)


def stack_on_validation(stack: np.ndarray, val_stack: np.ndarray, val_labels: np.ndarray,
                        val_groups: list[str], *, inner_k: int = 3, seed: int = 0) -> Stacked:
    """Scores of `stack` from a model fitted on the validation scores (L2 by inner group CV
    on them)."""
    x, scale = _features(val_stack)
    l2, warm = choose_l2(x, val_labels, inner_folds(val_labels, val_groups, inner_k, seed), scale)
    final = fit(x, val_labels, l2, scale, warm[l2].theta)
    bad = [] if final.converged else [f"max |gradient| {final.grad_max:.1e}"]
    return Stacked(predict(final, stack), [l2], bad)
