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


def test_a_frame_of_another_size_is_named(tmp_path):
    """Planes are decoded one at a time as they are placed: a frame whose size differs from
    the sample's first is reported by its file, in training and in test mode."""
    _flow_video(tmp_path, "C/v1", 12)
    cv2.imwrite(str(tmp_path / "C/v1/flow_y_00007.jpg"), np.zeros((20, 32), np.uint8))
    src = RawframeSource(tmp_path)
    rec = resolve_records([VideoRecord("C/v1", 0)], src.counts(["C/v1"]))[0]
    clip = ClipConfig(modality="flow", new_length=12, num_segments=1, input_size=16,
                      scale_size=24, test_segments=1)
    for train in (True, False):
        with pytest.raises(FrameReadError, match=r"C/v1/flow_y_00007.jpg: frames of different "
                                                 r"sizes in one sample \(32x24 and 32x20\)"):
            VideoDataset([rec], src, clip, train=train)[0]


def test_lazy_planes_give_the_samples_of_decoded_frames(tmp_path):
    """The loader decodes each JPEG as it places it; the transforms given the same frames
    decoded beforehand produce the very same training and test samples."""
    from two_stream.data.transforms import eval_sample, flow_snippets, train_sample
    rng = np.random.default_rng(0)
    d = tmp_path / "C/v1"
    d.mkdir(parents=True)
    for i in range(9):
        cv2.imwrite(str(d / f"img_{i + 1:05d}.jpg"), rng.integers(0, 256, (30, 40, 3), np.uint8))
        for k in "xy":
            cv2.imwrite(str(d / f"flow_{k}_{i + 1:05d}.jpg"),
                        rng.integers(0, 256, (30, 40), np.uint8))
    src = RawframeSource(tmp_path)
    rec = resolve_records([VideoRecord("C/v1", 0)], src.counts(["C/v1"]))[0]

    def decoded(modality, idx):  # the snippets at idx, every frame decoded beforehand
        if modality == "rgb":
            return [[im] for im in src.rgb_list("C/v1", idx[:, 0], bgr=True)]
        return flow_snippets(src.flow_list("C/v1", idx.reshape(-1)), 3)

    for modality, length in (("rgb", 1), ("flow", 2)):
        clip = ClipConfig(modality=modality, new_length=length, input_size=24, scale_size=28,
                          test_segments=3, test_crops=10)
        train = VideoDataset([rec], src, clip, train=True, seed=5)
        g = np.random.default_rng([5, 0, 0])
        want = train_sample(decoded(modality, train.indices(rec, g)), modality, 24, g, bgr=True)
        assert torch.equal(train[0][0], want)
        test = VideoDataset([rec], src, clip, train=False)
        want = eval_sample(decoded(modality, test.indices(rec, None)), modality, 24, 28, 10,
                           bgr=True)
        assert torch.equal(test[0][0], want)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_are_written_in_place_and_equal_stacked_samples(tmp_path, workers):
    """`__getitems__` writes each training sample into its row of one batch tensor (shared
    memory in a worker) and `collate_samples` passes it on: the batches equal torch's default
    stacking of the single items, labels and ids included, with and without workers."""
    from torch.utils.data import DataLoader, default_collate

    from two_stream.data.datasets import SampleBatch, collate_samples
    for i, v in enumerate(("A/v1", "B/v2", "C/v3")):
        _flow_video(tmp_path, v, 10 + 3 * i)
    src = RawframeSource(tmp_path)
    ids = ["A/v1", "B/v2", "C/v3"]
    records = resolve_records([VideoRecord(v, i) for i, v in enumerate(ids)], src.counts(ids))
    ds = VideoDataset(records * 3, src, ClipConfig(modality="flow", new_length=3,
                                                   input_size=16), train=True, seed=2)
    items = [(1, i) for i in (4, 0, 7, 2)]
    batch = ds.__getitems__(items)
    assert isinstance(batch, SampleBatch) and batch.x.shape == (4, 3, 6, 16, 16)
    x, labels, vids = collate_samples(batch)
    assert x is batch.x
    want = default_collate([ds[i] for i in items])
    assert torch.equal(x, want[0]) and torch.equal(labels, want[1]) and vids == want[2]
    loader = DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate_samples)
    got = list(loader)
    ds.set_epoch(0)
    stacked = list(DataLoader(ds, batch_size=4, num_workers=0))
    assert len(got) == len(stacked) == 3
    for (a, la, ia), (b, lb, ib) in zip(got, stacked):
        assert torch.equal(a, b) and torch.equal(la, lb) and ia == ib
    # test mode keeps one item per video (shapes may differ): torch's stacking
    test = VideoDataset(records, src, ClipConfig(modality="flow", new_length=3, input_size=16,
                                                 scale_size=16, test_segments=2), train=False)
    assert not isinstance(test.__getitems__([0, 1]), SampleBatch)
    assert collate_samples(test.__getitems__([0, 1]))[0].shape == (2, 1, 2, 6, 16, 16)


def test_place_refuses_an_output_of_another_shape():
    from two_stream.data.transforms import train_sample
    planes = [[np.zeros((20, 30), np.uint8)] * 2]
    with pytest.raises(ValueError, match=r"out has shape \(1, 2, 8, 8\), the sample \(1, 2, 16"):
        train_sample(planes, "flow", 16, np.random.default_rng(0), out=np.empty((1, 2, 8, 8),
                                                                                np.uint8))


def test_an_error_from_a_loader_worker_is_one_plain_line():
    """torch re-raises a worker's error with the traceback as its message; the last line is
    `two_stream.data.frames.FrameReadError: <message>` (old code printed that)."""
    from torch._utils import ExceptionWrapper

    from two_stream.errors import one_line
    try:
        try:
            raise FrameReadError("C/v1/img_00003.jpg: frame missing")
        except FrameReadError:
            ExceptionWrapper(where="in DataLoader worker process 0").reraise()
    except FrameReadError as e:
        assert "Traceback" in str(e)
        assert one_line(e) == "C/v1/img_00003.jpg: frame missing"
    assert one_line(UserError("a: b: c")) == "a: b: c"


def test_a_missing_frame_read_by_a_worker_gives_the_line_without_workers(tmp_path, capsys):
    from helpers.data import synthetic_rawframes

    from two_stream import cli
    syn = tmp_path / "syn"
    synthetic_rawframes(syn, syn / "frames", SyntheticConfig(
        num_groups=2, clips_per_group=1, test_groups=1, num_frames=6, width=32, height=24))
    for f in (syn / "frames").glob("*/*/img_*.jpg"):
        f.unlink()
    lines = []
    for workers in ("0", "1"):
        argv = ["train", "--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
                "--run-dir", str(tmp_path / f"run{workers}"), "--input-size", "16",
                "--num-segments", "1", "--batch-size", "2", "--workers", workers,
                "--epochs", "1", "--val-ratio", "0", "--device", "cpu", "--quiet"]
        assert cli.main(argv, stream="spatial", modality="rgb") == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines.append([ln for ln in err.splitlines() if ln.startswith("error:")])
    assert len(lines[0]) == 1 and lines[0] == lines[1], lines
    assert lines[0][0].startswith(f"error: {syn / 'frames'}/")
    assert lines[0][0].endswith(".jpg: frame missing")
