"""The full [S*C x C] stacking model: `--stack full` on its own, and a candidate the default
`--stack auto` weighs against the structured model where it is small enough.

`--stack full` is the `stack` rows' model before issue 21, unchanged: a multinomial logistic
regression on every stream's standardised scores. Under `auto` the same regression reads the
scores centred per video (so logits and log-probabilities are one fit, as for the structured
model) and competes on held-out likelihood in the same inner group CV that chooses the
structured model's L2. It is only a candidate up to FULL_CANDIDATE_MAX weights: on small
problems it can learn which classes one stream confuses and the other does not (the demo's
test videos: 93.1 vs 84.7 % top-1 for the structured model, though its 48 validation videos
favour the structured one, so `auto` keeps that); at UCF101 size (2 x 101 x 101 = 20 k
weights) its inner CV alone would take longer than the whole table may, and at Kinetics
size (320 k weights for 16 k videos) it overfits far below the streams.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from .fusion_choices import FULL_CANDIDATE_MAX  # two streams of up to 70 classes (HMDB51: 5.2 k)

FULL_L2_GRID = (1e-1, 1e-2, 1e-3)  # strongest first: each fit warm-starts the next


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float = 1e-2,
                 theta0: np.ndarray | None = None):
    """The full model: multinomial logistic regression (L-BFGS, L2 on weights) on
    standardised features x [N, D].

    Returns (a function features [M, D] -> class log-probabilities [M, C], the fitted
    parameters). `theta0` warm-starts the solver (the folds of a cross-validation fit
    nearly the same model: starting from the previous fold's saves most iterations).
    """
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-8
    z = (x - mu) / sd
    n, d = z.shape
    z32 = z.astype(np.float32)  # the two products dominate: float32 halves their cost
    rows = np.arange(n)

    def loss_grad(theta):
        w, b = theta[: d * num_classes].reshape(d, num_classes), theta[d * num_classes:]
        logits = (z32 @ w.astype(np.float32)).astype(np.float64) + b
        logp = log_softmax(logits, axis=1)
        loss = -logp[rows, y].sum() / n + 0.5 * l2 * (w * w).sum()
        g = np.exp(logp)
        g[rows, y] -= 1.0
        g /= n
        gw = (z32.T @ g.astype(np.float32)).astype(np.float64) + l2 * w
        return loss, np.concatenate([gw.ravel(), g.sum(axis=0)])

    if theta0 is None:
        theta0 = np.zeros(d * num_classes + num_classes)
    # ftol 1e-6: the loss stops improving by more than a millionth; tighter only moves the
    # weights by amounts that change almost no prediction, at a large cost in time
    from scipy.optimize import minimize  # here: seconds of import a table without it skips
    res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 300, "ftol": 1e-6})
    w, b = res.x[: d * num_classes].reshape(d, num_classes), res.x[d * num_classes:]
    return (lambda xt: log_softmax(((xt - mu) / sd) @ w + b, axis=1)), res.x


def full_features(stack: np.ndarray) -> np.ndarray:
    """The full model's features: every stream's scores side by side."""
    return stack.transpose(1, 0, 2).reshape(stack.shape[1], -1)  # [N, S*C]


def candidacy(stack_model: str, streams: int, classes: int) -> tuple[bool, str]:
    """(whether the full model competes, a note for the row when `auto` leaves it out at
    this size: see the module note)."""
    weights = streams * classes * classes
    if stack_model != "auto":
        return False, ""
    if weights <= FULL_CANDIDATE_MAX:
        return True, ""
    return False, (f"the full model ({weights:,} weights > {FULL_CANDIDATE_MAX:,}) is not a "
                   "candidate at this size")


def full_path(x_train: np.ndarray, y_train: np.ndarray, held: list[tuple],
              grid: tuple[float, ...] = FULL_L2_GRID) -> dict[float, list[float]]:
    """Held-out summed cross-entropy of the full model fitted on centred scores x_train
    [S, N, C] at each strength of `grid`: {l2: [loss on each held-out set]} for `held`, a
    list of (centred scores [S, m, C], labels [m])."""
    c = x_train.shape[2]
    feats = full_features(np.asarray(x_train, np.float64))
    held_feats = [(full_features(np.asarray(x, np.float64)), y) for x, y in held]
    out, theta = {}, None
    for l2 in grid:
        model, theta = fit_logistic(feats, y_train, c, l2, theta)
        out[l2] = [float(-model(f)[np.arange(len(y)), y].sum()) for f, y in held_feats]
    return out


def fit_full(x_train: np.ndarray, y_train: np.ndarray, l2: float):
    """The chosen full model on centred scores [S, N, C]: a function centred scores
    [S, M, C] -> log-probabilities [M, C]."""
    model, _ = fit_logistic(full_features(np.asarray(x_train, np.float64)), y_train,
                            x_train.shape[2], l2)
    return lambda x: model(full_features(np.asarray(x, np.float64)))
