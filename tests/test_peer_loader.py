"""The pure parts of `benchmarks/speed/peer_loader` (the MMAction2 comparison): the flip
check's plane classifier and the two claims it holds each loader to, the annotation lines,
the parsing of report_accuracy.py's printout, and the peer environment's cache and error
message. The benchmark itself (a 6 GB environment) is `make peers`, not a test."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.speed.peer_env import explain_pip_failure, is_ready
from benchmarks.speed.peer_flip import (
    INVERTED,
    MIRROR,
    OTHER,
    classify_planes,
    correct_flip,
    describe,
    mmaction2_flip,
)
from benchmarks.speed.peer_fusion import agree, mmaction_mean_class_column, parse_report
from benchmarks.speed.peer_loader import ann_lines
from two_stream.data.splits import VideoRecord
from two_stream.data.transforms import train_sample

K, L, H, W = 3, 5, 6, 8


def flow_sample(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (K, 2 * L, H, W), dtype=np.uint8)


def test_classify_planes_tells_mirror_invert_and_other():
    plain = flow_sample()
    flipped = plain[..., ::-1].copy()
    flipped[0, 0] = 255 - flipped[0, 0]
    flipped[1, 3] = plain[1, 3]  # not mirrored at all
    labels = classify_planes(plain, flipped)
    assert labels.shape == (K, 2 * L)
    assert labels[0, 0] == INVERTED and labels[1, 3] == OTHER
    assert (labels == MIRROR).sum() == K * 2 * L - 2


def test_classify_planes_refuses_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        classify_planes(flow_sample(), flow_sample()[:2])


def test_correct_flow_flip_inverts_x_planes_only():
    want = correct_flip("flow", K, L)
    assert (want[:, 0::2] == INVERTED).all() and (want[:, 1::2] == MIRROR).all()
    assert (correct_flip("rgb", K, 1) == MIRROR).all()


def mmaction2_1x_flip(sample: np.ndarray) -> np.ndarray:
    """MMAction2 1.x's steps in numpy: RawFrameDecode stacks x, y per frame ([H, W, 2]),
    Flip mirrors every image and inverts imgs[0::2], FormatShape('NCHW') reshapes to
    [K, 2L, H, W]."""
    frames = [np.stack([sample[k, 2 * t], sample[k, 2 * t + 1]], axis=-1)
              for k in range(K) for t in range(L)]
    frames = [f[:, ::-1] for f in frames]
    for i in range(0, len(frames), 2):
        frames[i] = 255 - frames[i]
    return np.transpose(np.array(frames), (0, 3, 1, 2)).reshape(K, 2 * L, H, W)


def test_mmaction2_claim_matches_its_flip_steps():
    plain = flow_sample(1)
    labels = classify_planes(plain, mmaction2_1x_flip(plain))
    assert (labels == mmaction2_flip("flow", K, L)).all()
    assert not (labels == correct_flip("flow", K, L)).all()
    rows = describe(labels, "flow")
    assert rows[0]["x planes inverted at frames"] == "0, 2, 4"
    assert rows[0]["y planes inverted at frames"] == "0, 2, 4"
    assert rows[1]["x planes inverted at frames"] == "1, 3"  # counted across the clips


def test_our_training_flip_meets_the_correct_claim():
    """Our train transform, flip off and on with the same crop draws: the planes come out
    as `correct_flip` says (what the benchmark checks on real rawframes)."""
    planes = np.random.default_rng(2).integers(0, 256, (K, 2 * L, 40, 50), dtype=np.uint8)
    snippets = [list(p) for p in planes]
    for seed in range(32):
        plain = train_sample(snippets, "flow", 32, np.random.default_rng(seed), flip=False)
        flipped = train_sample(snippets, "flow", 32, np.random.default_rng(seed), flip=True)
        if not np.array_equal(plain.numpy(), flipped.numpy()):
            break
    labels = classify_planes(plain.numpy(), flipped.numpy())
    assert (labels == correct_flip("flow", K, L)).all()
    assert describe(labels, "flow")[2]["y planes inverted at frames"] == "none"


def test_ann_lines_count_frames_or_flows_and_repeat():
    recs = [VideoRecord("A/v_a", 3, num_frames=10, num_flows=9)]
    assert ann_lines(recs, "rgb") == ["A/v_a 10 3"]
    assert ann_lines(recs, "flow", repeat=2) == ["A/v_a 9 3", "A/v_a 9 3"]


def test_parse_report_reads_the_three_accuracies():
    text = ("Mean Class Accuracy: 0.7670\nTop 1 Accuracy: 0.7818\nTop 5 Accuracy: 0.9655\n")
    assert parse_report(text) == {"mean_class_acc": 0.767, "top1": 0.7818, "top5": 0.9655}
    with pytest.raises(RuntimeError, match="no accuracies"):
        parse_report("Traceback ...\n")


def test_agree_at_printed_precision():
    assert agree(0.7964, 79.64)
    assert not agree(0.7964, 79.82)  # one video of 550 apart


def test_mmaction_column_found_when_present():
    import pandas as pd
    assert mmaction_mean_class_column(pd.DataFrame(columns=["top1", "mean_class_acc"])) is None
    df = pd.DataFrame(columns=["top1", "mean_class_acc_mmaction"])
    assert mmaction_mean_class_column(df) == "mean_class_acc_mmaction"


def test_pip_failure_message_names_the_registry_when_unreachable():
    out = ("WARNING: Retrying (Retry(total=4)) after connection broken by "
           "'NewConnectionError(...: Failed to establish a new connection')\n"
           "ERROR: Could not find a version that satisfies the requirement mmaction2==1.2.0\n"
           "ERROR: No matching distribution found for mmaction2==1.2.0\n")
    msg = explain_pip_failure(out, ("mmaction2==1.2.0",))
    assert "registry is not reachable" in msg and "No matching distribution" in msg
    other = explain_pip_failure("ERROR: Failed building wheel for x\n", ("x",))
    assert "registry" not in other and "Failed building wheel" in other


def test_peer_env_ready_only_with_marker_pins_and_python(tmp_path):
    venv = tmp_path / "env"
    assert not is_ready(venv, ("a==1",))
    (venv / "bin").mkdir(parents=True)
    (venv / "peer-env.json").write_text(json.dumps({"pins": ["a==1"]}))
    assert not is_ready(venv, ("a==1",))  # no interpreter
    (venv / "bin" / "python").write_text("")
    assert is_ready(venv, ("a==1",))
    assert not is_ready(venv, ("a==2",))


def test_keep_best_keeps_each_clock_maximum_apart():
    from benchmarks.speed.peer_loader import keep_best
    best: dict = {}
    keep_best(best, ("ours", "loader"), (10.0, 30.0))
    keep_best(best, ("ours", "loader"), (12.0, 25.0))  # a faster wall pass, a slower CPU one
    assert best["ours", "loader"].tolist() == [12.0, 30.0]


def test_ensure_peer_env_leaves_a_foreign_folder_alone(tmp_path):
    from benchmarks.speed.peer_env import ensure_peer_env
    from two_stream.errors import UserError
    other = tmp_path / "someone_elses_venv"
    (other / "bin").mkdir(parents=True)
    (other / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with pytest.raises(UserError, match="not built by this benchmark"):
        ensure_peer_env(other, ("a==1",), quiet=True)
    assert (other / "pyvenv.cfg").exists()
