"""--decode gpu: the bytes path (decoded and transformed by torch, here on the CPU) gives the
tensors of the CPU path (OpenCV) from the same rawframes, for training and test samples."""
import pytest
import torch

from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import RawframeSource
from two_stream.data.jpeg_batch import collate_jpeg, decode_samples, to_device
from two_stream.data.splits import VideoRecord, resolve_records
from two_stream.data.synthetic import SyntheticConfig
from tiny import synthetic_rawframes


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("jb")
    src = RawframeSource(synthetic_rawframes(
        root / "syn", root / "rf", SyntheticConfig(num_groups=2, clips_per_group=1,
                                                   test_groups=1, num_frames=12, width=96,
                                                   height=72)))
    ids = ["Grow/v_Grow_g01_c01", "MoveUp/v_MoveUp_g02_c01", "RedDrift/v_RedDrift_g01_c01"]
    return src, resolve_records([VideoRecord(v, 0) for v in ids], src.counts(ids))


@pytest.mark.parametrize("modality,length", [("rgb", 1), ("flow", 3)])
@pytest.mark.parametrize("train", [True, False])
def test_bytes_path_equals_cpu_path(frames, modality, length, train):
    src, recs = frames
    clip = ClipConfig(modality=modality, new_length=length, num_segments=3, input_size=48,
                      scale_size=56, test_segments=4, test_crops=10)
    cpu = VideoDataset(recs, src, clip, train=train, seed=5)
    gpu = VideoDataset(recs, src, clip, train=train, seed=5, decode="gpu")
    items = [gpu[(2, i)] for i in range(len(recs))]
    samples, labels, ids = collate_jpeg(items)
    x = decode_samples(samples, torch.device("cpu"))
    want = torch.stack([cpu[(2, i)][0] for i in range(len(recs))])
    assert x.dtype == torch.uint8 and x.shape == want.shape
    diff = (x.int() - want.int()).abs()
    # same frames, crops and flips; bilinear weights differ only in OpenCV's fixed-point rounding
    assert diff.float().mean() < 0.25 and diff.max() <= 1, (diff.float().mean(), diff.max())
    if modality == "rgb":  # a wrong flip would differ clearly: the test can fail
        assert (x.int() - want.flip(-1).int()).abs().float().mean() > 5
    else:  # the motion is there (not a flat 128 image compared with another)
        assert (want != 128).float().mean() > 0.05
    assert torch.equal(to_device(samples, torch.device("cpu")), x)
    assert ids == [r.video_id for r in recs]


def test_bytes_path_needs_rawframes(tmp_path):
    from flow_tools.errors import UserError
    from two_stream.data.frames import VideoFileSource
    (tmp_path / "v").mkdir()
    with pytest.raises(UserError, match="--decode gpu reads JPEG rawframes"):
        VideoDataset([], VideoFileSource(tmp_path / "v"), ClipConfig(), True, decode="gpu")
