import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax

from flow_tools.errors import UserError
from two_stream.fusion import fuse_fixed, fusion_rows, learn, normalize, weight_grid
from two_stream.fusion_folds import group_folds
from two_stream.models.consensus import segment_consensus
from two_stream.score_consensus import consensus_from_snippets
from two_stream.scores import align, load_any


def test_normalisations():
    s = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    assert np.allclose(normalize(s, "softmax").sum(1), 1)
    assert np.allclose(np.exp(normalize(s, "log_softmax")), normalize(s, "softmax"))
    z = normalize(s, "zscore")
    assert np.allclose(z.mean(1), 0) and np.allclose(z.std(1), 1)
    assert np.allclose(np.linalg.norm(normalize(s, "l2"), axis=1), 1)
    assert np.array_equal(normalize(s, "none"), s)
    with pytest.raises(UserError, match="unknown normalisation"):
        normalize(s, "minmax")


# two streams, three videos, two classes; stream a is confident on video 0, b on video 1
A = np.array([[4.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
B = np.array([[0.0, 1.0], [6.0, 0.0], [0.0, 3.0]])
STACK = np.stack([A, B])


@pytest.mark.parametrize("method,expected", [
    ("average", [[2.0, 0.5], [3.0, 0.5], [0.5, 1.5]]),
    ("max", [[4.0, 1.0], [6.0, 1.0], [1.0, 3.0]]),
])
def test_fixed_rules_by_hand(method, expected):
    assert np.allclose(fuse_fixed(STACK, method), expected)


def test_weighted_and_product():
    assert np.allclose(fuse_fixed(STACK, "weighted", np.array([1.0, 1.5])), A + 1.5 * B)
    assert np.allclose(fuse_fixed(STACK, "product"), log_softmax(A, 1) + log_softmax(B, 1))
    with pytest.raises(UserError, match="needs 2 weights"):
        fuse_fixed(STACK, "weighted", np.array([1.0]))


def test_var_fusion_by_hand():
    # per video: weight of a stream ~ variance of its two class scores = (d/2)^2
    va, vb = ((A[:, 0] - A[:, 1]) / 2) ** 2, ((B[:, 0] - B[:, 1]) / 2) ** 2
    wa = va / (va + vb)
    expected = wa[:, None] * A + (1 - wa[:, None]) * B
    assert np.allclose(fuse_fixed(STACK, "var"), expected, atol=1e-6)
    # with k = all classes var_topk is the same rule
    assert np.allclose(fuse_fixed(STACK, "var_topk", topk=2), expected, atol=1e-6)
    # the confident stream wins each video, where the average gets video 1 wrong
    assert fuse_fixed(STACK, "var").argmax(1).tolist() == [0, 0, 1]


def test_var_topk_ignores_the_tail():
    # stream a: top-2 nearly equal (unsure) but a huge spread in the tail -> low top-k variance
    a = np.array([[5.0, 4.9, -50.0]])
    b = np.array([[0.0, 3.0, 0.0]])
    st = np.stack([a, b])
    assert fuse_fixed(st, "var").argmax(1)[0] == 0  # full variance trusts a
    assert fuse_fixed(st, "var_topk", topk=2).argmax(1)[0] == 1  # top-2 variance trusts b


def test_variance_consensus_by_hand():
    x = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [0.0, 8.0]]])  # [B=1, K=3, C=2]
    var = torch.tensor([1.0, 0.0, 16.0])
    w = (var + 1e-8) / (var + 1e-8).sum()
    expected = (w[:, None] * x[0]).sum(0)
    assert torch.allclose(segment_consensus(x, "var")[0], expected)
    assert torch.allclose(segment_consensus(x, "max")[0], torch.tensor([2.0, 8.0]))
    snip = x.numpy().astype(np.float16)
    assert np.allclose(consensus_from_snippets(snip, "mean")[0], [1.0, 13 / 3])


def test_weight_grid():
    g = weight_grid(2)
    assert g.shape == (21, 2) and np.allclose(g.sum(1), 1) and (g >= 0).all()
    assert weight_grid(3).shape == (231, 3)


def _grouped_problem(seed=0, n_groups=20, per_group=3, num_classes=4):
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, num_classes, n_groups), per_group)
    ids = [f"C{l}/v_C{l}_g{i // per_group:02d}_c{i % per_group:02d}"
           for i, l in enumerate(labels)]
    good = np.eye(num_classes)[labels] * 2 + rng.normal(0, 1, (len(labels), num_classes))
    noise = rng.normal(0, 1, (len(labels), num_classes))
    return np.stack([good, noise]), labels, ids


def test_group_folds_keep_groups_whole():
    _, labels, ids = _grouped_problem()
    from two_stream.data.splits import group_of
    groups = [group_of(v) for v in ids]
    folds = group_folds(labels, groups, 5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    for g in set(groups):
        assert len({folds[i] for i, x in enumerate(groups) if x == g}) == 1


def test_cv_search_never_reads_the_labels_of_the_fold_it_scores():
    stack, labels, ids = _grouped_problem()
    from two_stream.data.splits import group_of
    groups = [group_of(v) for v in ids]
    base = learn("search", stack, labels, groups, num_folds=5, seed=0)
    # weights learned on the other folds favour the informative stream
    assert all(w[0] > w[1] for w in base.weights)
    # relabel fold 0 so that only the noise stream would be right there: a rule that peeked
    # at fold 0's labels would move its weight to the noise stream
    fold = group_folds(labels, groups, 5, seed=0)
    flipped = labels.copy()
    f0 = fold == 0
    flipped[f0] = stack[1, f0].argmax(1)
    # keep the groups' folds identical: folds depend on labels only through class balance,
    # so pass the same fold assignment by reusing the original labels' folds
    from two_stream import fusion
    orig = fusion.group_folds
    try:
        fusion.group_folds = lambda *a, **k: fold
        leaked = learn("search", stack, flipped, groups, num_folds=5, seed=0)
    finally:
        fusion.group_folds = orig
    assert leaked.weights[0] == base.weights[0]
    assert np.array_equal(leaked.scores[f0], base.scores[f0])
    # and the relabelled fold really would have chosen the other stream
    from two_stream.fusion import select_weights
    w_peek = select_weights(stack[:, f0], flipped[f0], weight_grid(2))
    assert w_peek[1] > w_peek[0]


def test_stack_learns_out_of_fold():
    stack, labels, ids = _grouped_problem(n_groups=40)
    from two_stream.data.splits import group_of
    out = learn("stack", stack, labels, [group_of(v) for v in ids], num_folds=5)
    single = (stack[0].argmax(1) == labels).mean()
    assert (out.scores.argmax(1) == labels).mean() >= single - 0.05 > 0.5
    assert "out-of-fold" in out.labels_used


def test_validation_file_mode():
    stack, labels, ids = _grouped_problem()
    out = learn("search", stack, labels, [], val_stack=stack, val_labels=labels)
    assert out.labels_used == "validation score file" and out.weights[0][0] > 0.5


def test_rows_mark_label_use_and_p_values():
    stack, labels, ids = _grouped_problem()
    rows = fusion_rows({"good": stack[0], "noise": stack[1]}, labels, ids,
                       methods=("average", "search"), norms=("none",), resamples=200)
    assert [r.method for r in rows] == ["good", "noise", "average", "search"]
    assert rows[0].p_vs_best is None and 0 <= rows[2].p_vs_best <= 1
    assert rows[2].labels_used == "none" and "group CV" in rows[3].labels_used
    assert rows[0].top1_lo <= rows[0].top1 <= rows[0].top1_hi


UCF15 = "scores/ucf15_resnet18"


def test_real_ucf15_scores_reproduce_published_accuracies(fixtures):
    d = fixtures / UCF15
    files = {n: load_any(d / f"{f}_video_preds.pickle", d / "classInd15.txt")
             for n, f in (("spatial", "spatial"), ("motion", "motion"), ("pose", "motion_pose"))}
    aligned, dropped = align(files)
    assert dropped == 0 and len(aligned["spatial"]) == 550
    labels = aligned["spatial"].labels
    acc = {n: round(100 * (sf.scores.argmax(1) == labels).mean(), 2) for n, sf in aligned.items()}
    assert acc == {"spatial": 78.18, "motion": 34.18, "pose": 67.09}
    rows = fusion_rows({n: aligned[n].scores for n in ("spatial", "motion")}, labels,
                       aligned["spatial"].video_ids, methods=("weighted",), weights=[1, 1],
                       resamples=10)
    assert round(100 * rows[-1].top1, 2) == 81.82


def test_real_mmaction_demo_scores(fixtures):
    d = fixtures / "scores" / "mmaction2_k400_demo"
    files = {m: load_any(d / f"{m}.pkl", d / "label_map_k400.txt", d / "data_list.txt")
             for m in ("rgb", "flow")}
    aligned, _ = align(files)
    labels = aligned["rgb"].labels
    rows = fusion_rows({m: aligned[m].scores for m in files}, labels, aligned["rgb"].video_ids,
                       methods=("average",), resamples=10)
    assert [round(100 * r.top1) for r in rows] == [71, 68, 79]


def test_saturated_softmax_creates_no_ties_and_rows_report_real_ones():
    """Logits in the hundreds: both streams' softmax is exactly 1.0 for different classes.
    `max [softmax]` compares log-probabilities, so the more confident stream wins instead of
    a tie broken by class order; identical scores still tie and are counted."""
    a = np.array([[50.0, 0.0, 0.0], [300.0, 0.0, 0.0]])
    b = np.array([[0.0, 45.0, 0.0], [0.0, 290.0, 0.0]])
    labels = np.array([0, 1])
    ids = ["A/v_A_g01_c01", "B/v_B_g02_c01"]
    assert (softmax(a, axis=1).max(1) == 1.0).all() and (softmax(b, axis=1).max(1) == 1.0).all()
    rows = fusion_rows({"a": a, "b": b}, labels, ids, methods=("max",), norms=("softmax",),
                       resamples=10)
    fused = {r.method: r for r in rows}["max"]
    assert fused.tied == 0 and fused.pred.tolist() == [0, 0] and fused.top1 == 0.5
    tie = fusion_rows({"a": a, "b": a[:, [1, 0, 2]]}, labels, ids, methods=("average",),
                      norms=("none",), resamples=10)[-1]
    assert tie.tied == 2 and tie.top1 == 0.5 and "2 videos tie at the top" in tie.detail
    assert not tie.correct.any()  # McNemar counts a tie as wrong
    # float32 scores give the same table as their float64 values
    r32 = fusion_rows({"a": a.astype(np.float32), "b": b.astype(np.float32)}, labels, ids,
                      methods=("average", "max"), norms=("none", "softmax"), resamples=10)
    r64 = fusion_rows({"a": a, "b": b}, labels, ids, methods=("average", "max"),
                      norms=("none", "softmax"), resamples=10)
    assert [r.top1 for r in r32] == [r.top1 for r in r64]


@pytest.mark.parametrize("mode", ["mean", "max", "var", "topk"])
def test_numpy_consensus_equals_the_models_torch_consensus(mode):
    """Fusion recomputes consensus in numpy (no torch import on the fusion path): the same
    numbers the models' `segment_consensus` gives, for float16 snippet scores as stored."""
    rng = np.random.default_rng(3)
    snip = (rng.normal(0, 4, (64, 5, 11)) * rng.gamma(1, 1, (64, 5, 1))).astype(np.float16)
    snip[0, 2] = snip[0, 2, 0]  # a flat segment: zero variance
    ours = consensus_from_snippets(snip, mode)
    theirs = segment_consensus(torch.from_numpy(snip.astype(np.float32)), mode).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_var_fusion_equals_the_torch_variance_weights():
    from two_stream.models.consensus import variance_weighted
    from two_stream.score_consensus import variance_weighted as np_variance_weighted
    rng = np.random.default_rng(4)
    stack = rng.normal(0, 1, (3, 200, 17)) * rng.gamma(1, 20, (3, 200, 1))  # [S, N, C]
    t = variance_weighted(torch.from_numpy(stack.transpose(1, 0, 2).copy()), dim=1).numpy()
    np.testing.assert_allclose(fuse_fixed(stack, "var"), t, rtol=1e-12, atol=1e-12)
    assert (fuse_fixed(stack, "var").argmax(1) == t.argmax(1)).all()
    x = rng.normal(0, 1, (4, 6, 9)).astype(np.float32)
    np.testing.assert_allclose(np_variance_weighted(x, axis=1),
                               variance_weighted(torch.from_numpy(x), dim=1).numpy(), rtol=1e-6,
                               atol=1e-6)


def test_stream_at_a_time_rules_equal_the_stacked_expressions():
    """var, var_topk, product, the log-space softmax rules and the weight search run one
    stream (or chunk) at a time to stay small at Kinetics size: the numbers are those of the
    [S, N, C] expressions, bit for bit (ties included)."""
    from scipy.special import log_softmax, logsumexp

    from two_stream.fusion import (
        fuse_probabilities_in_log_space,
        precise_log_softmax,
        select_weights,
    )
    rng = np.random.default_rng(6)
    raw = rng.normal(0, 40, (3, 300, 23)) * rng.gamma(1, 1, (3, 300, 1))
    raw[1, :7] = raw[0, :7]  # streams that agree exactly: ties in the fused probabilities
    assert np.array_equal(fuse_fixed(raw, "product"), log_softmax(raw, axis=2).sum(axis=0))
    top = -np.sort(-raw, axis=2)[:, :, :5]
    var = top.var(axis=2, keepdims=True) + 1e-12
    assert np.array_equal(fuse_fixed(raw, "var_topk"),
                          (var / var.sum(axis=0, keepdims=True) * raw).sum(axis=0))
    v = raw.transpose(1, 0, 2).astype(np.float32).astype(np.float64).var(axis=-1, keepdims=True)
    v = v.astype(np.float32) + np.float32(1e-8)
    want = (v / v.sum(axis=1, keepdims=True) * raw.transpose(1, 0, 2)).sum(axis=1)
    assert np.array_equal(fuse_fixed(raw, "var"), want)
    logp = precise_log_softmax(raw, axis=2)
    for w in ([1.0, 1.5, 0.0], [0.2, 0.3, 0.5]):
        with np.errstate(divide="ignore"):
            ref = logsumexp(logp + np.log(w)[:, None, None], axis=0)
        assert np.array_equal(fuse_probabilities_in_log_space(raw, "weighted", w), ref)
    assert np.array_equal(fuse_probabilities_in_log_space(raw, "max", None), logp.max(axis=0))
    labels = raw[0].argmax(1)
    labels[::3] = raw[2, ::3].argmax(1)
    grid = weight_grid(3, 0.25)
    acc = (np.einsum("ws,snc->wnc", grid, raw).argmax(axis=2) == labels).mean(axis=1)
    best = np.flatnonzero(acc == acc.max())
    assert np.array_equal(select_weights(raw, labels, grid),
                          grid[best[np.argmin(grid[best].std(axis=1))]])
