import numpy as np
import pytest

from two_stream.metrics import (
    bootstrap_ci,
    class_mean,
    confusion_matrix,
    mcnemar_p,
    topk_accuracy,
    topk_correct,
)


def test_topk_and_class_accuracy_by_hand():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    labels = np.array([0, 2, 2, 1])
    assert topk_accuracy(scores, labels, 1) == 0.5
    assert topk_accuracy(scores, labels, 2) == 1.0
    pred = scores.argmax(1)
    # per-class recall 1, 0, 1/2
    assert class_mean(topk_correct(scores, labels), labels, 3) == pytest.approx(0.5)
    # class-balanced differs from video share when classes are unbalanced
    labels2 = np.array([0, 0, 0, 1])
    assert class_mean(np.array([1.0, 1.0, 1.0, 0.0]), labels2, 2) == 0.5
    assert confusion_matrix(pred, labels, 3).tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]


def test_bootstrap_ci_brackets_and_is_seeded():
    correct = np.r_[np.ones(70, bool), np.zeros(30, bool)]
    lo, hi = bootstrap_ci(correct, 1000, seed=1)
    assert lo < 0.7 < hi and 0.55 < lo and hi < 0.85
    assert bootstrap_ci(correct, 1000, seed=1) == (lo, hi)


def test_mcnemar_exact_values():
    a = np.r_[np.ones(10, bool), np.ones(5, bool)]
    b = np.r_[np.zeros(10, bool), np.ones(5, bool)]
    assert mcnemar_p(a, b) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_p(a, a) == 1.0


def test_ties_count_as_the_expected_accuracy_of_a_random_tie_break():
    from two_stream.metrics import strict_correct, tied_top
    scores = np.array([[1.0, 1.0, 0.0, 0.0],    # label 0 ties with one class: 1/2
                       [2.0, 2.0, 2.0, 0.0],    # three-way tie at the top: 1/3
                       [3.0, 1.0, 1.0, 1.0],    # label 1 below the top, tied with 2 others
                       [0.0, 5.0, 1.0, 1.0]])   # clean hit
    labels = np.array([0, 2, 1, 1])
    np.testing.assert_allclose(topk_correct(scores, labels, 1), [0.5, 1 / 3, 0.0, 1.0])
    # top-2: row 2 has the top class above and 3 tied for the remaining place: 1/3
    np.testing.assert_allclose(topk_correct(scores, labels, 2), [1.0, 2 / 3, 1 / 3, 1.0])
    assert tied_top(scores).tolist() == [True, True, False, False]
    assert strict_correct(scores, labels).tolist() == [False, False, False, True]
    # neither class order nor the tie's position changes the number
    perm = np.array([3, 2, 1, 0])
    inv = np.argsort(perm)
    np.testing.assert_allclose(topk_correct(scores[:, perm], inv[labels], 1),
                               topk_correct(scores, labels, 1))
    assert class_mean(topk_correct(scores, labels), labels, 4) == \
        pytest.approx(np.mean([0.5, 0.5, 1 / 3]))


def test_mcnemar_binomial_equals_scipy_binomtest_value_for_value():
    from scipy.stats import binomtest

    from two_stream.metrics import binom_test_half
    for n in [*range(1, 60), 101, 999, 1000, 3783]:
        for k in range(0, n + 1, max(1, n // 25)):
            assert binom_test_half(k, n) == binomtest(k, n, 0.5).pvalue, (k, n)
    assert binom_test_half(0, 3000) == 0.0  # underflow: the table prints "< 1e-300"


def test_bootstrap_ci_is_the_percentile_of_the_resampled_means():
    """The counts-times-correctness form gives the CI that averaging the resampled videos
    themselves gives (the same draws of one seed), ties' fractions included."""
    rng = np.random.default_rng(5)
    correct = (rng.random(3001) < 0.6).astype(float)
    correct[:40] = 0.5  # two-way ties at the top
    idx = np.random.default_rng(2).integers(0, len(correct), size=(300, len(correct)))
    means = correct[idx].mean(axis=1)
    want = (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))
    assert bootstrap_ci(correct, 300, seed=2) == pytest.approx(want, abs=1e-12)
