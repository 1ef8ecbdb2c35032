"""`--mmaction-mean-class`: MMAction2's mean class accuracy beside ours; p-values that
underflow print as `< 1e-300`."""
import numpy as np
import pandas as pd
import pytest

from benchmarks import fuse
from two_stream.fuse import p_text
from two_stream.metrics import class_mean, mmaction_mean_class_accuracy, topk_correct
from two_stream.scores import ScoreFile, save_scores


def test_mmaction_mean_class_counts_predicted_classes_absent_from_the_test_set():
    # true classes 0, 1; class 2 is predicted once but has no test video
    scores = np.array([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    labels = np.array([0, 0, 1, 1])
    # MMAction2: classes {0, 1, 2}: recalls 1, 1/2 and 0 for the predicted-only class 2
    assert mmaction_mean_class_accuracy(scores, labels) == pytest.approx((1 + 0.5 + 0) / 3)
    # ours: the true classes only
    assert class_mean(topk_correct(scores, labels), labels, 3) == pytest.approx(0.75)
    # a tie goes to the first class (numpy argmax), as MMAction2's argmax does
    tie = np.array([[1.0, 1.0], [0.0, 1.0]])
    assert mmaction_mean_class_accuracy(tie, np.array([1, 1])) == pytest.approx((0 + 0.5) / 2)


def test_p_values_below_1e300_are_not_printed_as_zero():
    assert p_text(0.0) == "< 1e-300" and p_text(1e-320) == "< 1e-300"
    assert p_text(0.0123456) == "0.0123" and p_text(None) == "" and p_text(float("nan")) == ""


def test_fuse_adds_the_mmaction_column_and_explains_it(tmp_path):
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d"]
    labels = np.repeat([0, 1, 2], 8)  # class d has no test video
    ids = [f"{classes[lab]}/v_{classes[lab]}_g{i // 2:02d}_c{i % 2:02d}"
           for i, lab in enumerate(labels)]
    argv = []
    for s in ("rgb", "flow"):
        x = rng.normal(0, 1, (24, 4)).astype(np.float32)
        x[np.arange(24), labels] += 1.0
        save_scores(tmp_path / f"{s}.npz", ScoreFile(x, labels, ids, classes))
        argv += ["--stream", f"{s}={tmp_path / f'{s}.npz'}"]
    out = tmp_path / "out"
    assert fuse.main(argv + ["--methods", "average", "max", "--norm", "none",
                             "--resamples", "10", "--mmaction-mean-class",
                             "--out", str(out)]) == 0
    df = pd.read_csv(out / "table.csv")
    cols = list(df.columns)
    assert cols.index("mean_class_acc_mmaction") == cols.index("mean_class_acc") + 1
    x = np.load(tmp_path / "rgb.npz")["scores"]
    assert df.mean_class_acc_mmaction[0] == round(100 * mmaction_mean_class_accuracy(
        x, labels), 2)
    md = (out / "table.md").read_text()
    assert "mean class acc % (MMAction2)" in md and "predicted or true" in md
    # without the flag, no column
    assert fuse.main(argv + ["--methods", "average", "--norm", "none", "--resamples", "10",
                             "--out", str(tmp_path / "plain")]) == 0
    assert "mean_class_acc_mmaction" not in pd.read_csv(tmp_path / "plain" / "table.csv")
