"""benchmarks/stack_choice.py reproduces the fusion table's stacking choice on validation
scores, and shows each model's test top-1 beside it."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import stack_choice
from two_stream.errors import UserError
from two_stream.fusion import learn
from two_stream.metrics import topk_accuracy
from two_stream.scores import ScoreFile, save_scores
from two_stream.synthetic_scores import kinetics_like


def _write_runs(root, consensus: str, confused: bool, seed: int) -> None:
    """Validation (first 240) and test (last 240) score files of two streams; `confused`: the
    temporal stream puts each class's evidence on the next class, which only the full model
    can undo."""
    labels, ids, streams = kinetics_like(480, 8, seed=seed, signal=(1.5, 3.0))
    stack = [streams[k] for k in streams]
    if confused:
        stack[1] = np.roll(stack[1], 1, axis=1)
    classes = [f"c{i}" for i in range(8)]
    for s, x in zip(stack_choice.STREAMS, stack):
        for split, part in (("val", slice(0, 240)), ("test", slice(240, 480))):
            sf = ScoreFile(x[part].astype(np.float32), labels[part], ids[part], classes)
            save_scores(root / f"{s}_{consensus}" / f"scores_{split}.npz", sf)


def test_first_row_is_the_tables_choice_and_pick_is_the_lower_loss(tmp_path):
    _write_runs(tmp_path, "mean", confused=True, seed=3)
    _write_runs(tmp_path, "max", confused=False, seed=4)
    scores = {c: stack_choice.load_runs(tmp_path, c) for c in ("mean", "max")}
    df = stack_choice.choice_table(scores, inner=((3, 0), (0, 0)))
    assert list(df.consensus) == ["mean", "mean", "max", "max"]
    assert list(df["inner folds"])[1].endswith("(one per group)")
    lower = np.where(df["full CE"] < df["structured CE"], "full", "structured")
    assert list(df.pick) == list(lower)
    for cons, expect in (("mean", "full"), ("max", "structured")):
        sc = scores[cons]
        auto = learn("stack", sc.test, sc.test_labels, ["x"] * len(sc.test_labels),
                     val_stack=sc.val, val_labels=sc.val_labels, val_groups=sc.val_groups)
        row = df[df.consensus == cons].iloc[0]
        assert row.pick == expect and f"{expect} " in auto.detail, (row.pick, auto.detail)
        assert row["test pick"] == pytest.approx(100 * topk_accuracy(auto.scores,
                                                                     sc.test_labels))
        assert row["test pick"] == row[f"test {expect}"]
    mean = df[df.consensus == "mean"].iloc[0]
    assert mean["test full"] > mean["test structured"] + 10  # the confusion is undone


def test_a_missing_run_names_the_file(tmp_path):
    _write_runs(tmp_path, "mean", confused=False, seed=1)
    with pytest.raises(UserError, match=r"spatial_var/scores_val.npz: no score file"):
        stack_choice.load_runs(tmp_path, "var")
