import json

import cv2
import numpy as np
import pytest
import torch

from flow_tools.errors import UserError

from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import FrameReadError, RawframeSource, VideoFileSource
from two_stream.data.sampling import test_indices as centre_indices
from two_stream.data.splits import VideoRecord, resolve_records
from two_stream.data.synthetic import SyntheticConfig, generate


def _flow_video(root, video_id, num_flows):
    d = root / video_id
    d.mkdir(parents=True)
    for i in range(num_flows + 1):
        cv2.imwrite(str(d / f"img_{i + 1:05d}.jpg"), np.full((24, 32, 3), 5 * i, np.uint8))
    for i in range(num_flows):  # grey level = 4*field (+1 for y): readable after JPEG
        cv2.imwrite(str(d / f"flow_x_{i + 1:05d}.jpg"), np.full((24, 32), 4 * i, np.uint8))
        cv2.imwrite(str(d / f"flow_y_{i + 1:05d}.jpg"), np.full((24, 32), 4 * i + 2, np.uint8))
    (d / "meta.json").write_text(json.dumps({"num_frames": num_flows + 1,
                                             "num_flows": num_flows, "bound": 20}))


def test_flow_stack_from_files_is_x_then_y_in_time_order(tmp_path):
    """End to end from flow JPEGs to the tensor: no off-by-one rotation of the stack."""
    _flow_video(tmp_path, "C/v1", 40)
    src = RawframeSource(tmp_path)
    rec = resolve_records([VideoRecord("C/v1", 0)], src.counts(["C/v1"]))[0]
    assert (rec.num_frames, rec.num_flows) == (41, 40)
    clip = ClipConfig(modality="flow", new_length=5, input_size=16, scale_size=24,
                      test_segments=3)
    x, label, vid = VideoDataset([rec], src, clip, train=False)[0]
    assert x.shape == (1, 3, 10, 16, 16) and vid == "C/v1"
    assert x.dtype == torch.uint8  # normalised later, on the batch
    levels = x[0, :, :, 8, 8].int().numpy()
    idx = centre_indices(40, 3, 5)
    expected = np.stack([4 * idx, 4 * idx + 2], axis=-1).reshape(3, 10)
    assert np.abs(levels - expected).max() <= 1


def test_rgb_training_sample_from_video_file(tmp_path):
    cfg = SyntheticConfig(num_groups=3, clips_per_group=1, test_groups=1, num_frames=12,
                          width=64, height=48)
    split = generate(tmp_path / "syn", cfg, quiet=True)
    src = VideoFileSource(tmp_path / "syn" / "videos")
    train = resolve_records(split.train, src.counts([r.video_id for r in split.train]))
    assert all(r.num_frames == 12 for r in train)
    ds = VideoDataset(train, src, ClipConfig(modality="rgb", num_segments=3, input_size=32),
                      train=True, seed=0)
    x, label, vid = ds[0]
    assert x.shape == (3, 3, 32, 32) and label == train[0].label
    x2, _, _ = ds[0]
    assert np.array_equal(x.numpy(), x2.numpy())  # same (seed, epoch, index), same sample
    ds.set_epoch(1)
    assert not np.array_equal(ds[0][0].numpy(), x.numpy())


def test_flow_from_video_files_needs_extraction(tmp_path):
    cfg = SyntheticConfig(num_groups=2, clips_per_group=1, test_groups=1, num_frames=6,
                          width=32, height=32)
    split = generate(tmp_path, cfg, quiet=True)
    src = VideoFileSource(tmp_path / "videos")
    rec = resolve_records(split.test[:1], src.counts([split.test[0].video_id]))
    ds = VideoDataset(rec, src, ClipConfig(modality="flow", new_length=2, input_size=16,
                                           scale_size=16, test_segments=2), train=False)
    with pytest.raises(FrameReadError, match="flow_tools.extract"):
        ds[0]


def test_unknown_video_in_split(tmp_path):
    with pytest.raises(UserError, match="have no frames"):
        resolve_records([VideoRecord("C/missing", 0)], {})
