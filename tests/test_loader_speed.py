"""The loader benchmark's step-by-step replay measures the loader's own work."""
import json

import cv2
import numpy as np
import pytest
import torch

from benchmarks.speed.loader_speed import breakdown, replay
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import RawframeSource
from two_stream.data.splits import VideoRecord, resolve_records


def _video(root, video_id, n, rng):
    d = root / video_id
    d.mkdir(parents=True)
    for i in range(n + 1):
        cv2.imwrite(str(d / f"img_{i + 1:05d}.jpg"), rng.integers(0, 256, (60, 80, 3), np.uint8))
    for i in range(n):
        for k in "xy":
            cv2.imwrite(str(d / f"flow_{k}_{i + 1:05d}.jpg"),
                        rng.integers(0, 256, (60, 80), np.uint8))
    (d / "meta.json").write_text(json.dumps({"num_frames": n + 1, "num_flows": n}))


@pytest.mark.parametrize("modality,length", [("rgb", 1), ("flow", 5)])
def test_replay_is_the_loaders_sample_and_the_parts_add_up(tmp_path, modality, length):
    rng = np.random.default_rng(0)
    for v in ("A/v1", "B/v2"):
        _video(tmp_path, v, 20, rng)
    src = RawframeSource(tmp_path)
    records = resolve_records([VideoRecord("A/v1", 0), VideoRecord("B/v2", 1)],
                              src.counts(["A/v1", "B/v2"]))
    ds = VideoDataset(records * 4, src, ClipConfig(modality=modality, new_length=length,
                                                   input_size=48), train=True, seed=3)
    for i in range(len(ds)):
        jpegs, _, _ = replay(ds, i)
        assert len(jpegs) == 3 * length * (1 if modality == "rgb" else 2)
        _, decoded, x = replay(ds, i, jpegs, replay(ds, i, jpegs)[1])
        assert torch.equal(x, ds[i][0])
    ms = breakdown(ds, 8, repeats=1)
    assert all(ms[k] > 0 for k in ("read", "decode", "crop_resize", "loader"))
    assert ms["rest"] == pytest.approx(ms["loader"] - ms["read"] - ms["decode"]
                                       - ms["crop_resize"])
