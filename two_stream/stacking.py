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
reported, never silently used as if it had converged. With `full`, the same inner CV also
fits the full model (`two_stream.stack_full`) and keeps whichever of the two predicts the
held-out videos better (lower summed cross-entropy).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_softmax

from .fusion_folds import group_folds
from .stack_full import fit_full, full_path

L2_GRID = (1.0, 1e-1, 1e-2, 1e-3)  # strongest first: each fit warm-starts the next
GTOL = 1e-5  # the solver stops once the largest |gradient| of the mean loss is below this
CONVERGED = 1e-4  # ... and a fit counts as converged below this (else the row says so)
MAXCOR = 30  # L-BFGS memory: 30 pairs take about a third fewer evaluations than 10 here
CHUNK = 2048  # videos per pass of the loss: [S + 2, CHUNK, C] float32, a few MB


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


def _logits(x: np.ndarray, theta: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """float64 [N, C] logits of float32 features [S, N, C] (centred only, when `scale`
    gives the stream spreads to divide by: folded into the coefficients)."""
    s, _, c = x.shape
    w, d, b = _unpack(theta, s, c)
    a = w[:, None] + d  # [S, C] float64: the products are float64
    if scale is not None:
        a = a / scale[:, None]
    z = x[0] * a[0]
    for k in range(1, s):
        z += x[k] * a[k]
    z += b
    return z


def _blocks(x, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features [S, m, C], labels [m]) chunks of `CHUNK` videos: views, no copies. x: one
    [S, N, C] array or a list of them (the parts of one training set), y: their labels."""
    parts = [x] if isinstance(x, np.ndarray) else list(x)
    out, at = [], 0
    for p in parts:
        for i in range(0, p.shape[1], CHUNK):
            m = min(CHUNK, p.shape[1] - i)
            out.append((p[:, i: i + m], y[at + i: at + i + m]))
        at += p.shape[1]
    return out


def _pass(chunks: list, a: np.ndarray, b: np.ndarray, bufs: np.ndarray, grad: bool):
    """Sum of the cross-entropy over `chunks` of z = sum_s a[s] * x[s] + b (float32 passes
    over one chunk at a time, which stays in cache; float64 sums), and with `grad` its
    gradient by a [S, C] and b [C]."""
    s, c = a.shape
    loss, ga, gb = 0.0, np.zeros((s, c)), np.zeros(c)
    ones = np.ones(max(c, bufs.shape[1]), np.float32)
    for xc, yc in chunks:
        m = len(yc)
        z, t = bufs[0, :m], bufs[1, :m]
        np.multiply(xc[0], a[0], out=z)
        for k in range(1, s):
            z += np.multiply(xc[k], a[k], out=t)
        z += b
        z -= z.max(axis=1, keepdims=True)
        r = np.arange(m)
        zy = z[r, yc].sum(dtype=np.float64)
        np.exp(z, out=z)
        tot = (z @ ones[:c])[:, None]  # BLAS sums: a few times faster than .sum(axis)
        loss += np.log(tot, dtype=np.float64).sum() - zy
        if grad:
            z /= tot
            z[r, yc] -= 1.0  # dloss/dz [m, C]
            for k in range(s):  # float32 within a chunk, float64 across chunks
                ga[k] += np.einsum("nc,nc->c", xc[k], z)
            gb += ones[:m] @ z
    return loss, ga, gb


def fit(x, y: np.ndarray, l2: float, scale: np.ndarray, theta0: np.ndarray | None = None,
        maxiter: int = 500, *, centred_only: bool = False) -> Fit:
    """Minimise the mean cross-entropy + l2/2 (|d|^2 + |b|^2) over features x [S, N, C]
    (`_features`; or a list of [S, n, C] parts; with `centred_only`, centred per video but
    not yet divided by `scale`: the division is folded into the coefficients, so one
    centred copy of the scores serves every training set)."""
    from scipy.optimize import minimize  # here: seconds of import a table without it skips
    parts = [x] if isinstance(x, np.ndarray) else list(x)
    s, c = parts[0].shape[0], parts[0].shape[2]
    n = sum(p.shape[1] for p in parts)
    chunks = _blocks(parts, y)
    inv = 1.0 / scale if centred_only else np.ones(s)
    bufs = np.empty((2, min(CHUNK, n), c), np.float32)
    evals = 0

    def loss_grad(theta):
        nonlocal evals
        evals += 1
        w, d, b = _unpack(theta, s, c)
        a = (w[:, None] + d) * inv[:, None]
        loss, ga, gb = _pass(chunks, a.astype(np.float32), b.astype(np.float32), bufs, True)
        gd = ga * (inv[:, None] / n)
        loss = loss / n + 0.5 * l2 * ((d * d).sum() + b @ b)
        grad = np.concatenate([gd.sum(axis=1), (gd + l2 * d).ravel(), gb / n + l2 * b])
        return loss, grad

    if theta0 is None:
        theta0 = np.concatenate([np.full(s, 1.0 / s), np.zeros(s * c + c)])
    res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "gtol": GTOL, "ftol": 1e-12, "maxcor": MAXCOR})
    _, g = loss_grad(res.x)
    return Fit(res.x, scale, l2, float(np.abs(g).max()), evals)


def _heldout_nll(fitted: Fit, x: np.ndarray, y: np.ndarray) -> float:
    """Summed cross-entropy of centred (not yet scaled) features x [S, m, C]."""
    s, _, c = x.shape
    w, d, b = _unpack(fitted.theta, s, c)
    a = ((w[:, None] + d) / fitted.scale[:, None]).astype(np.float32)
    bufs = np.empty((2, min(CHUNK, x.shape[1]), c), np.float32)
    return float(_pass(_blocks(x, y), a, b.astype(np.float32), bufs, False)[0])


def predict(fitted: Fit, stack: np.ndarray) -> np.ndarray:
    """Class log-probabilities [N, C] of normalised scores [S, N, C]."""
    x, _ = _features(stack, fitted.scale)
    return log_softmax(_logits(x, fitted.theta), axis=1)


def _nll(fitted: Fit, x: np.ndarray, y: np.ndarray) -> float:
    logp = log_softmax(_logits(x, fitted.theta), axis=1)
    return float(-logp[np.arange(len(y)), y].sum())


def choose_l2(x: np.ndarray, y: np.ndarray, inner: np.ndarray, scale: np.ndarray,
              grid: tuple[float, ...] = L2_GRID
              ) -> tuple[float, dict[float, Fit], dict[float, float]]:
    """The L2 strength with the lowest held-out cross-entropy over the inner folds `inner`
    (int [N], whole groups per fold), each fitted on the other inner folds; ties go to the
    stronger. Returns (strength, the last inner fit at each strength, to warm-start from,
    the summed held-out cross-entropy at each strength)."""
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
    return _best(loss), last, loss


def full_inner_loss(x: np.ndarray, y: np.ndarray, inner: np.ndarray) -> dict[float, float]:
    """The full model's summed held-out cross-entropy over the inner folds `inner` (as
    `choose_l2` sums the structured model's), at each strength of its grid."""
    loss: dict[float, float] = {}
    for g in np.unique(inner):
        tr, te = inner != g, inner == g
        for l2, (nll,) in full_path(x[:, tr], y[tr], [(x[:, te], y[te])]).items():
            loss[l2] = loss.get(l2, 0.0) + nll
    return loss


def _best(loss: dict[float, float]) -> float:
    """The strength of least held-out loss; ties go to the stronger."""
    return min(loss, key=lambda l2: (loss[l2], -l2))


def _full_wins(full_loss: dict[float, float], structured_loss: float) -> float | None:
    """The full model's strength when its best summed held-out loss is below the structured
    model's, else None (also when the full model did not compete)."""
    if not full_loss:
        return None
    l2 = _best(full_loss)
    return l2 if full_loss[l2] < structured_loss else None


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
    models: list[str] = field(default_factory=list)  # per fold, when the full one competed
    note: str = ""

    def detail(self, what: str) -> str:
        if self.models:
            text = (f"model and L2 by inner group CV {what} (structured: S*C+C per-stream "
                    f"per-class weights and class bias; full: [S*C x C] on centred scores): "
                    + ", ".join(f"{m} {v:g}" for m, v in zip(self.models, self.l2)))
        else:
            text = (f"structured model (S*C+C: per-stream per-class weights, class bias), L2 "
                    f"by inner group CV {what}: " + ", ".join(f"{v:g}" for v in self.l2))
        if self.note:
            text += "; " + self.note
        if self.not_converged:
            text += "; DID NOT CONVERGE: " + ", ".join(self.not_converged)
        return text


def inner_folds(labels: np.ndarray, groups: list[str], k: int, seed: int) -> np.ndarray:
    """Group folds of the training videos for choosing L2 (at least 2, at most k)."""
    k = max(2, min(k, len(set(groups))))
    return group_folds(labels, groups, k, seed)


def stack_out_of_fold(stack: np.ndarray, labels: np.ndarray, groups: list[str],
                      folds: np.ndarray, *, seed: int = 0, full: bool = False) -> Stacked:
    """Scores of fold f from a model fitted on the other folds, its L2 chosen on those other
    folds only.

    With K >= 3 folds the inner CV reuses the outer folds: the model fitted without folds f
    and f+1 (cyclically) is scored on f+1 to choose L2 for fold f, and on f for fold f+1, so
    each outer fold's L2 comes from two held-out folds of its own training videos at the cost
    of one fit per fold and strength (K pair fits instead of K x inner-k). Fewer folds: an
    inner group CV inside the training folds. `full`: the full model competes in the same
    inner CV, fold by fold.
    """
    ks = np.unique(folds)
    out = np.zeros(stack.shape[1:], dtype=np.float64)
    chosen, bad, models = [], [], []
    if len(ks) < 3:
        for f in ks:
            tr = folds != f
            g_tr = [g for g, t in zip(groups, tr) if t]
            res = stack_on_validation(stack[:, folds == f], stack[:, tr], labels[tr], g_tr,
                                      seed=seed, full=full)
            out[folds == f] = res.scores
            chosen += res.l2
            models += res.models
            bad += [f"fold {int(f) + 1}: {b}" for b in res.not_converged]
        return Stacked(out, chosen, bad, models)
    # one centred float32 copy of all videos, sorted by fold: every training set (all folds
    # but one or two, cyclically adjacent) is then two slices of it, never a copy
    order = np.argsort(folds, kind="stable")
    x = np.empty((stack.shape[0], *stack.shape[1:]), np.float32)
    for i, xs in enumerate(stack):
        x[i] = xs[order]
        x[i] -= x[i].mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    sq = np.stack([np.einsum("nc,nc->n", xs, xs, dtype=np.float64) for xs in x])  # [S, N]
    y = labels[order]
    lo = np.searchsorted(folds[order], ks, side="left")
    hi = np.searchsorted(folds[order], ks, side="right")
    k = len(ks)

    def train(excluded: set[int]):
        """The parts of x and the labels of the folds not in `excluded`, and their scale."""
        keep = [(lo[j], hi[j]) for j in range(k) if j not in excluded]
        runs: list[list[int]] = []
        for a, b in keep:  # merge adjacent folds into one slice
            if runs and runs[-1][1] == a:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        parts = [x[:, a:b] for a, b in runs]
        count = sum(b - a for a, b in runs) * x.shape[2]
        scale = np.sqrt(sum(sq[:, a:b].sum(axis=1) for a, b in runs) / count) + 1e-12
        return parts, np.concatenate([y[a:b] for a, b in runs]), scale

    heldout = {int(f): {} for f in ks}  # inner held-out loss per outer fold and strength
    warm: dict[tuple[int, float], np.ndarray] = {}
    for i, l2 in enumerate(L2_GRID):
        for j, f in enumerate(ks):  # the pair (f, f+1)
            jg = (j + 1) % k
            parts, ytr, scale = train({j, jg})
            # warm start from the same pair's fit at the stronger strength only: a chain
            # through other pairs would carry the labels of the fold being chosen for
            prev = warm.get((int(f), L2_GRID[i - 1])) if i else None
            fitted = fit(parts, ytr, l2, scale, prev, centred_only=True)
            warm[(int(f), l2)] = fitted.theta
            for inner, outer in ((jg, j), (j, jg)):
                h = heldout[int(ks[outer])]
                h[l2] = h.get(l2, 0.0) + _heldout_nll(
                    fitted, x[:, lo[inner]:hi[inner]], y[lo[inner]:hi[inner]])
        # held-out loss is unimodal in the strength: a fold whose loss rose is done (its
        # choice is among the strengths tried so far); once every fold is, weaker strengths
        # (the slowest fits) are not tried
        if i and all(_rose(h) for h in heldout.values()):
            break
    full_loss = {int(f): {} for f in ks}  # the same held-out folds, for the full model
    for j in range(k) if full else ():
        jg = (j + 1) % k
        parts, ytr, _ = train({j, jg})
        held = [(x[:, lo[i]:hi[i]], y[lo[i]:hi[i]]) for i in (jg, j)]
        path = full_path(np.concatenate(parts, axis=1), ytr, held)
        for l2, (on_jg, on_j) in path.items():
            for outer, v in ((j, on_jg), (jg, on_j)):
                h = full_loss[int(ks[outer])]
                h[l2] = h.get(l2, 0.0) + v
    for j, f in enumerate(ks):
        h = heldout[int(f)]
        l2 = _best({v: h[v] for v in list(h)[: _first_rise(h) + 1]})
        full_l2 = _full_wins(full_loss[int(f)], h[l2])
        if full_l2 is not None:
            parts, ytr, _ = train({j})
            l2 = full_l2
            out[order[lo[j]:hi[j]]] = fit_full(np.concatenate(parts, axis=1), ytr, l2)(
                x[:, lo[j]:hi[j]])
            chosen.append(l2)
            models.append("full")
            continue
        parts, ytr, scale = train({j})
        final = fit(parts, ytr, l2, scale, warm[(int(f), l2)], centred_only=True)
        if not final.converged:
            bad.append(f"fold {int(f) + 1}: max |gradient| {final.grad_max:.1e}")
        out[order[lo[j]:hi[j]]] = log_softmax(_logits(x[:, lo[j]:hi[j]], final.theta, scale),
                                              axis=1)
        chosen.append(l2)
        models += ["structured"] if full else []
    return Stacked(out, chosen, bad, models)


def stack_on_validation(stack: np.ndarray, val_stack: np.ndarray, val_labels: np.ndarray,
                        val_groups: list[str], *, inner_k: int = 3, seed: int = 0,
                        full: bool = False) -> Stacked:
    """Scores of `stack` from a model fitted on the validation scores (L2, and with `full`
    the model, by inner group CV on them)."""
    x, scale = _features(val_stack)
    inner = inner_folds(val_labels, val_groups, inner_k, seed)
    l2, warm, loss = choose_l2(x, val_labels, inner, scale)
    if full:
        full_l2 = _full_wins(full_inner_loss(x, val_labels, inner), loss[l2])
        if full_l2 is not None:
            xt, _ = _features(stack, scale)
            return Stacked(fit_full(x, val_labels, full_l2)(xt), [full_l2], [], ["full"])
    final = fit(x, val_labels, l2, scale, warm[l2].theta)
    bad = [] if final.converged else [f"max |gradient| {final.grad_max:.1e}"]
    return Stacked(predict(final, stack), [l2], bad, ["structured"] if full else [])
