"""The default `stack` model (per-stream per-class weights + class bias, L2 by inner group CV)
learns at the shape of a large problem, stays out-of-fold, and `--stack full` is today's
[S*C x C] model."""
import numpy as np
import pytest

from two_stream import stack_full, stacking
from two_stream.data.splits import group_of
from two_stream.errors import UserError
from two_stream.fusion import fusion_rows, learn, normalize
from two_stream.fusion_folds import group_folds
from two_stream.scores import align, load_any
from two_stream.synthetic_scores import kinetics_like

FIXED = ("average", "max", "var", "var_topk")


@pytest.fixture(scope="module")
def kinetics_2000():
    return kinetics_like(2000, 200, seed=1)


def test_default_stack_is_within_a_point_of_the_best_fixed_rule(kinetics_2000):
    """Kinetics-shaped (N(0, 1.5) logits, label +3 +- 1.5, groups of 4), 2,000 x 200: the full
    model overfits this far below the streams it combines; the structured one may not."""
    labels, ids, streams = kinetics_2000
    rows = fusion_rows(streams, labels, ids, methods=(*FIXED, "stack"),
                       norms=("none", "softmax"), resamples=10)
    for norm in ("none", "softmax"):
        best_fixed = max(r.top1 for r in rows if r.method in FIXED and r.norm == norm)
        stack = next(r for r in rows if r.method == "stack" and r.norm == norm)
        assert stack.top1 >= best_fixed - 0.01, (norm, stack.top1, best_fixed)
        assert "structured model" in stack.detail and "NOT CONVERGE" not in stack.detail
    singles = [r.top1 for r in rows[:2]]
    assert all(r.top1 > max(singles) for r in rows if r.method == "stack")


def test_full_model_is_still_there_and_is_the_old_one():
    labels, ids, streams = kinetics_like(400, 20, seed=2)  # the old model is slow: small
    sub = np.arange(400)
    stack = np.stack([streams[k].astype(np.float64) for k in streams])
    groups = [group_of(ids[i]) for i in sub]
    full = learn("stack", stack, labels[sub], groups, stack_model="full")
    # today's code path: fit_logistic on the [N, S*C] features, fold after fold, warm-started
    folds = group_folds(labels[sub], groups, 5, 0)
    out, warm = np.zeros(stack.shape[1:]), None
    for f in range(5):
        tr, te = folds != f, folds == f
        model, warm = stack_full.fit_logistic(stack_full.full_features(stack[:, tr]),
                                              labels[sub][tr], stack.shape[2], theta0=warm)
        out[te] = model(stack_full.full_features(stack[:, te]))
    assert np.array_equal(full.scores, out) and full.detail == ""
    with pytest.raises(UserError, match="unknown stacking model"):
        learn("stack", stack, labels[sub], groups, stack_model="huge")


def test_structured_stack_never_reads_the_labels_of_the_fold_it_scores(kinetics_2000):
    labels, ids, streams = kinetics_2000
    sub = np.arange(800)
    stack = np.stack([normalize(streams[k][sub], "none") for k in streams])
    groups = [group_of(ids[i]) for i in sub]
    folds = group_folds(labels[sub], groups, 5, 0)
    base = stacking.stack_out_of_fold(stack, labels[sub], groups, folds)
    flipped = labels[sub].copy()
    f0 = folds == 0
    flipped[f0] = stack[1, f0].argmin(1)  # labels no rule could learn from
    leaked = stacking.stack_out_of_fold(stack, flipped, groups, folds)
    assert np.array_equal(leaked.scores[f0], base.scores[f0])
    assert leaked.l2[0] == base.l2[0]
    assert not np.array_equal(leaked.scores[~f0], base.scores[~f0])  # the labels do matter


def test_a_fit_that_does_not_converge_says_so(kinetics_2000, monkeypatch):
    labels, ids, streams = kinetics_2000
    stack = np.stack([streams[k][:400].astype(np.float64) for k in streams])
    real_fit = stacking.fit
    monkeypatch.setattr(stacking, "fit", lambda *a, **k: real_fit(*a, **{**k, "maxiter": 2}))
    res = learn("stack", stack, labels[:400], [group_of(v) for v in ids[:400]])
    assert "DID NOT CONVERGE: fold 1: max |gradient|" in res.detail


def test_converged_fit_has_a_small_gradient(kinetics_2000):
    labels, _, streams = kinetics_2000
    x, scale = stacking._features(np.stack([streams[k].astype(np.float64) for k in streams]))
    f = stacking.fit(x, labels, 1e-2, scale)
    assert f.converged and f.grad_max < 1e-4
    # the stream weights are learned (the first stream carries more signal)
    assert f.theta[0] > f.theta[1] > 0


def test_validation_mode_fits_on_the_validation_videos(kinetics_2000):
    labels, ids, streams = kinetics_2000
    stack = np.stack([streams[k].astype(np.float64) for k in streams])
    groups = [group_of(v) for v in ids]
    res = learn("stack", stack[:, 1000:], labels[1000:], groups[1000:], val_stack=stack[:, :1000],
                val_labels=labels[:1000], val_groups=groups[:1000])
    assert res.labels_used == "validation score file" and "validation videos" in res.detail
    avg = (stack[:, 1000:].mean(0).argmax(1) == labels[1000:]).mean()
    assert (res.scores.argmax(1) == labels[1000:]).mean() >= avg - 0.02


# top-1 of the learned rows on the UCF101-15 fixture scores at cba3cc9 (the old full model)
UCF15_BEFORE = {("stack", "none"): 77.27, ("stack", "softmax"): 72.91}


def test_ucf15_learned_rows_no_worse_than_before(fixtures):
    d = fixtures / "scores" / "ucf15_resnet18"
    files = {n: load_any(d / f"{f}_video_preds.pickle", d / "classInd15.txt")
             for n, f in (("spatial", "spatial"), ("motion", "motion"))}
    aligned, _ = align(files)
    sp = aligned["spatial"]
    rows = fusion_rows({n: aligned[n].scores for n in aligned}, sp.labels, sp.video_ids,
                       methods=("stack",), norms=("none", "softmax"), resamples=10)
    for r in rows[2:]:
        assert round(100 * r.top1, 2) >= UCF15_BEFORE[(r.method, r.norm)], r


def test_fit_on_centred_slices_is_the_fit_on_scaled_features():
    """The out-of-fold fits read slices of one centred copy and fold the stream scale into
    the coefficients: the same model as fitting `_features` of the training videos."""
    labels, _, streams = kinetics_like(900, 40, seed=5)
    stack = np.stack([streams[k].astype(np.float64) for k in streams])
    x, scale = stacking._features(stack)
    centred = x * scale.astype(np.float32)[:, None, None]
    a = stacking.fit(x, labels, 1e-2, scale)
    b = stacking.fit([centred[:, :300], centred[:, 300:]], labels, 1e-2, scale,
                     centred_only=True)
    assert a.converged and b.converged
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(stacking.predict(b, stack), stacking.predict(a, stack),
                               atol=1e-3)


def _confused(videos: int, classes: int, seed: int):
    """Scores whose second stream puts each class's evidence on the next class (a systematic
    confusion only the full [S*C x C] model can undo): (labels, ids, stack [2, N, C])."""
    labels, ids, streams = kinetics_like(videos, classes, seed=seed, signal=(1.5, 3.0))
    stack = np.stack([streams[k].astype(np.float64) for k in streams])
    stack[1] = np.roll(stack[1], 1, axis=1)  # class c's logit now sits at c + 1
    return labels, ids, stack


def test_auto_chooses_the_full_model_where_it_is_better_and_small():
    labels, ids, stack = _confused(600, 8, seed=3)
    groups = [group_of(v) for v in ids]
    auto = learn("stack", stack, labels, groups)
    structured = learn("stack", stack, labels, groups, stack_model="structured")
    assert auto.detail.count("full ") == 5 and "structured model" in structured.detail
    top1 = {n: (r.scores.argmax(1) == labels).mean() for n, r in
            (("auto", auto), ("structured", structured))}
    assert top1["auto"] > top1["structured"] + 0.1, top1
    # with a validation file, the same choice on the validation videos
    val = learn("stack", stack[:, 300:], labels[300:], groups[300:], val_stack=stack[:, :300],
                val_labels=labels[:300], val_groups=groups[:300])
    assert "on the validation videos" in val.detail and "full " in val.detail
    assert (val.scores.argmax(1) == labels[300:]).mean() > top1["structured"]


def test_auto_keeps_the_structured_model_where_the_full_one_is_not_better():
    """No systematic confusion (Kinetics-shaped, 12 classes): the inner CV keeps the
    structured model on every fold, and the table says the full one is left out at size."""
    labels, ids, streams = kinetics_like(600, 12, seed=4)
    stack = np.stack([streams[k].astype(np.float64) for k in streams])
    auto = learn("stack", stack, labels, [group_of(v) for v in ids])
    assert auto.detail.count("structured ") == 5 and "full 0" not in auto.detail, auto.detail
    labels, ids, streams = kinetics_like(400, 80, seed=5)
    stack = np.stack([streams[k].astype(np.float64) for k in streams])
    res = learn("stack", stack, labels, [group_of(v) for v in ids])
    assert "the full model (12,800 weights > 10,000) is not a candidate" in res.detail


def test_auto_never_reads_the_labels_of_the_fold_it_scores():
    labels, ids, stack = _confused(500, 8, seed=6)
    groups = [group_of(v) for v in ids]
    folds = group_folds(labels, groups, 5, 0)
    base = stacking.stack_out_of_fold(stack, labels, groups, folds, full=True)
    flipped = labels.copy()
    f0 = folds == 0
    flipped[f0] = stack[0, f0].argmin(1)
    leaked = stacking.stack_out_of_fold(stack, flipped, groups, folds, full=True)
    assert np.array_equal(leaked.scores[f0], base.scores[f0])
    assert leaked.models[0] == base.models[0] and leaked.l2[0] == base.l2[0]
    assert not np.array_equal(leaked.scores[~f0], base.scores[~f0])
