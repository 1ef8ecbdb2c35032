"""The generated score files have the statistics of the real ones they stand in for."""
import numpy as np
import pytest

from two_stream.synthetic_scores import (
    UCF101_AVERAGE_TOP1,
    UCF101_STATS,
    kinetics_like,
    score_stats,
    ucf101_like,
)


def test_ucf101_like_matches_the_real_ucf101_statistics():
    labels, ids, streams = ucf101_like()
    assert len(ids) == 3783 and streams["spatial"].shape == (3783, 101)
    for name, real in UCF101_STATS.items():
        ours = score_stats(streams[name], labels)
        for key in ("logit_sd", "top1_median", "margin_median", "margin_p90"):
            assert ours[key] == pytest.approx(real[key], rel=0.12), (name, key, ours[key])
        assert abs(ours["top1_acc"] - real["top1_acc"]) < 0.015, (name, ours["top1_acc"])
    avg = ((streams["spatial"].astype(float) + streams["temporal"]).argmax(1) == labels).mean()
    assert abs(avg - UCF101_AVERAGE_TOP1) < 0.02  # strongly complementary streams
    assert ids[0].startswith(f"C{labels[0]}/v_C{labels[0]}_g00_c00")


def test_kinetics_like_has_the_issue_s_accuracies():
    labels, ids, streams = kinetics_like(6000, 400)
    acc = [(x.argmax(1) == labels).mean() for x in streams.values()]
    assert abs(acc[0] - 0.256) < 0.02 and abs(acc[1] - 0.198) < 0.02
    avg = ((streams["stream0"] + streams["stream1"]).argmax(1) == labels).mean()
    assert abs(avg - 0.412) < 0.025
    assert np.array_equal(kinetics_like(50, 10, seed=3)[0], kinetics_like(50, 10, seed=3)[0])


def test_score_stats_by_hand():
    s = np.array([[3.0, 1.0, 0.0], [0.0, 5.0, 1.0]])
    st = score_stats(s, np.array([0, 2]))
    assert st["top1_median"] == 4.0 and st["margin_median"] == 3.0 and st["top1_acc"] == 0.5
