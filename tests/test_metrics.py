import numpy as np
import pytest

from two_stream.metrics import (bootstrap_ci, confusion_matrix, mcnemar_p, mean_class_accuracy,
                                per_class_accuracy, topk_accuracy)


def test_topk_and_class_accuracy_by_hand():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    labels = np.array([0, 2, 2, 1])
    assert topk_accuracy(scores, labels, 1) == 0.5
    assert topk_accuracy(scores, labels, 2) == 1.0
    pred = scores.argmax(1)
    assert np.allclose(per_class_accuracy(pred, labels, 3), [1.0, 0.0, 0.5])
    assert mean_class_accuracy(pred, labels, 3) == pytest.approx(0.5)
    # class-balanced differs from video share when classes are unbalanced
    labels2 = np.array([0, 0, 0, 1])
    assert mean_class_accuracy(np.array([0, 0, 0, 0]), labels2, 2) == 0.5
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
