"""--decode gpu: the bytes path (decoded and transformed by torch, here on the CPU) gives the
tensors of the CPU path (OpenCV) from the same rawframes, for training and test samples."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import synthetic_rawframes
from torch.utils.data import DataLoader

from flow_tools.pack import INDEX, PACK
from flow_tools.pack import main as pack_main
from two_stream.data import jpeg_batch
from two_stream.data.datasets import ClipConfig, VideoDataset, collate_for
from two_stream.data.frames import FrameReadError, RawframeSource
from two_stream.data.jpeg_batch import collate_jpeg, decode_samples, to_device
from two_stream.data.splits import VideoRecord, resolve_records
from two_stream.data.synthetic import SyntheticConfig


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


def _tensors(obj, seen=None) -> int:
    """How many distinct tensors `obj` holds (what crosses a worker's process boundary as
    shared memory: one file descriptor each under torch's file_descriptor strategy)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        seen.add(id(obj))
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors(o, seen)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, seen)
    if hasattr(obj, "__dict__"):
        _tensors(vars(obj), seen)
    return len(seen)


@pytest.mark.parametrize("train", [True, False])
def test_a_worker_batch_crosses_as_two_tensors(frames, train):
    """Old code: one tensor per JPEG (3 videos x 3 segments x 2L=6 planes = 54 here, 960 for
    a 32-video flow batch). Now the bytes buffer and the labels, whatever the batch size."""
    src, recs = frames
    clip = ClipConfig(modality="flow", new_length=3, num_segments=3, input_size=48,
                      scale_size=56, test_segments=4, test_crops=1)
    ds = VideoDataset(recs, src, clip, train=train, seed=5, decode="gpu")
    loader = DataLoader(ds, batch_size=3, num_workers=1, collate_fn=collate_for("gpu"))
    batch = next(iter(loader))  # through a real worker process
    assert _tensors(batch) == 2
    x = to_device(batch[0], torch.device("cpu"))
    want = decode_samples(collate_jpeg([ds[i] for i in range(3)])[0], torch.device("cpu"))
    assert torch.equal(x, want)
    pinned = batch[0].pin_memory() if torch.cuda.is_available() else batch[0]
    assert isinstance(pinned, jpeg_batch.JpegBatch) and len(pinned) == 3


def _flow_dataset(root):
    src = RawframeSource(root)
    ids = ["Grow/v_Grow_g01_c01"]
    recs = resolve_records([VideoRecord(v, 0) for v in ids], src.counts(ids))
    return VideoDataset(recs, src, ClipConfig(modality="flow", new_length=3, num_segments=3,
                                              input_size=32), train=True, decode="gpu")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("damage", ["marker", "body"])
def test_a_corrupt_jpeg_on_the_gpu_path_names_its_file(frames, tmp_path, packed, damage):
    """Old code: torchvision's message without a file ("Failed to decode batch" on nvJPEG,
    "Image is incomplete or truncated" on a CPU), and pack entries with no JPEG start marker
    reached the decoder unchecked."""
    src, _ = frames
    root = tmp_path / "rf"
    shutil.copytree(src.root / "Grow", root / "Grow")
    video = root / "Grow" / "v_Grow_g01_c01"

    def spoil(b: bytearray) -> bytearray:  # no start marker, or cut off after the headers
        return bytearray(b"\0\0") + b[2:] if damage == "marker" else b[:len(b) // 2]
    # flow_y: the sample's first image (flow_x) is read for the crop size before decoding
    if packed:
        assert pack_main([str(root), "--remove-jpegs", "--quiet"]) == 0
        data = bytearray((video / PACK).read_bytes())
        for offset, length in json.loads((video / INDEX).read_text())["flow_y"]:
            data[offset:offset + length] = spoil(data[offset:offset + length]).ljust(length)
        (video / PACK).write_bytes(bytes(data))
        name = rf"{PACK}\[flow_y \d+\]"
    else:
        for f in video.glob("flow_y_*.jpg"):
            f.write_bytes(bytes(spoil(bytearray(f.read_bytes()))))
        name = r"flow_y_\d+\.jpg"
    ds = _flow_dataset(root)
    with pytest.raises(FrameReadError, match=rf"v_Grow_g01_c01.*{name}: frame unreadable"):
        decode_samples(collate_jpeg([ds[0]])[0], torch.device("cpu"))


FD_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from two_stream import cli
sys.exit(cli.main(sys.argv[1:], stream="temporal", modality="flow"))
"""


@pytest.mark.slow  # ~50 s on the loaded 2-core machine (a subprocess, 2 workers)
@pytest.mark.e2e
def test_temporal_training_with_gpu_decode_and_workers_fits_in_256_descriptors(tmp_path):
    """Issue 19: `--decode gpu --device cpu --workers 2` under `ulimit -n 256`. Old code:
    8 x 2 segments x 2L=20 planes = 320 tensors per batch, up to 8 batches in flight ->
    `OSError: [Errno 24] Too many open files`."""
    syn = tmp_path / "syn"
    synthetic_rawframes(syn, syn / "frames", SyntheticConfig(
        num_groups=2, clips_per_group=1, test_groups=1, num_frames=12, width=40, height=32))
    run = tmp_path / "run"
    argv = ["train", "--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--run-dir", str(run), "--input-size", "32", "--num-segments", "2",
            "--new-length", "10", "--batch-size", "8", "--workers", "2", "--epochs", "1",
            "--decode", "gpu", "--device", "cpu", "--val-ratio", "0", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, "-c", FD_SCRIPT, *argv], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Too many open files" not in p.stderr
    assert (run / "checkpoint_last.pt").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("grey", [True, False])
def test_gpu_decode_matches_opencv(grey):
    """nvJPEG against OpenCV (libjpeg-turbo) on grey and RGB 4:2:0 JPEGs (OpenCV's default
    chroma subsampling) of textured images. Tolerance: the IDCTs differ in rounding (grey:
    mean |diff| < 0.5, max 3 levels); chroma upsampling differs too (libjpeg-turbo's
    "fancy" triangle filter, nvJPEG's own), so RGB: mean < 1.5, 99th percentile <= 8."""
    import cv2

    from two_stream.data.jpeg_batch import decode_jpegs
    rng = np.random.default_rng(0)
    shape = (256, 340) if grey else (256, 340, 3)
    img = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (5, 5), 0)
    data = [torch.from_numpy(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
                             .ravel()) for _ in range(3)]
    got = decode_jpegs(data, grey, torch.device("cuda"))
    want = cv2.imdecode(data[0].numpy(), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    want = torch.from_numpy(want[None] if grey else want[..., ::-1].copy().transpose(2, 0, 1))
    for g in got:
        assert g.device.type == "cuda" and g.shape == want.shape
        diff = (g.cpu().int() - want.int()).abs().float()
        if grey:
            assert diff.mean() < 0.5 and diff.max() <= 3, (diff.mean(), diff.max())
        else:
            assert diff.mean() < 1.5 and diff.quantile(0.99) <= 8, (diff.mean(),
                                                                      diff.quantile(0.99))
