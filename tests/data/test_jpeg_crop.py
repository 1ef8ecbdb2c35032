"""Cropped decoding of grey JPEGs with libturbojpeg: the same pixels, errors that name the file."""
import json

import cv2
import numpy as np
import pytest
import torch

from two_stream.data import jpeg_crop
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import FrameReadError, Jpeg, RawframeSource
from two_stream.data.splits import VideoRecord, resolve_records

DECODER = jpeg_crop.crop_decoder()
pytestmark = pytest.mark.skipif(DECODER is None, reason="no libturbojpeg >= 3.0 (pip install "
                                "-e '.[turbojpeg]', as make test does)")


def _grey(rng, h=60, w=85):
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w), np.uint8), (5, 5), 1.5)


def test_crops_equal_the_whole_images_pixels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        img = _grey(rng)
        data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        whole = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        h, w = int(rng.integers(1, 61)), int(rng.integers(1, 86))
        top, left = int(rng.integers(0, 61 - h)), int(rng.integers(0, 86 - w))
        crop = DECODER.crop(Jpeg(data, "x.jpg", True), (60, 85), (top, left, h, w))
        assert crop.shape == (h, w)
        np.testing.assert_array_equal(crop, whole[top:top + h, left:left + w])


def test_errors_name_the_file_and_colour_falls_back(tmp_path):
    rng = np.random.default_rng(1)
    data = cv2.imencode(".jpg", _grey(rng), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    with pytest.raises(FrameReadError, match=r"a.jpg: frames of different sizes in one sample "
                                             r"\(80x50 and 85x60\)"):
        DECODER.crop(Jpeg(data, "a.jpg", True), (50, 80), (0, 0, 10, 10))
    no_scan = data.tobytes()[:data.tobytes().index(b"\xff\xda")]  # headers, then nothing
    for bad in (b"\xff\xd8 not a jpeg", data[:40].tobytes(), b"GIF89a" + bytes(40), no_scan):
        with pytest.raises(FrameReadError, match=r"b.jpg: frame unreadable"):
            DECODER.crop(Jpeg(np.frombuffer(bad, np.uint8), "b.jpg", True), (60, 85),
                         (0, 0, 10, 10))
    with pytest.raises(FrameReadError, match=r"c.jpg: frame missing"):
        DECODER.crop(Jpeg(str(tmp_path / "c.jpg"), str(tmp_path / "c.jpg"), True), (60, 85),
                     (0, 0, 10, 10))
    colour = cv2.imencode(".jpg", rng.integers(0, 256, (60, 85, 3), np.uint8))[1]
    assert DECODER.crop(Jpeg(colour, "d.jpg", False), (60, 85), (0, 0, 10, 10)) is None


def test_flow_samples_are_the_same_with_and_without_cropped_decoding(tmp_path):
    """Training samples (crops smaller than the frame, flips) and test samples of a flow video
    come out identical whether the planes after the first are decoded cropped or whole."""
    rng = np.random.default_rng(2)
    d = tmp_path / "C/v1"
    d.mkdir(parents=True)
    for i in range(12):
        for k in "xy":
            cv2.imwrite(str(d / f"flow_{k}_{i + 1:05d}.jpg"), _grey(rng, 48, 70))
        cv2.imwrite(str(d / f"img_{i + 1:05d}.jpg"), rng.integers(0, 256, (48, 70, 3), np.uint8))
    (d / "meta.json").write_text(json.dumps({"num_frames": 12, "num_flows": 12}))
    src = RawframeSource(tmp_path)
    rec = resolve_records([VideoRecord("C/v1", 0)], src.counts(["C/v1"]))[0]
    clip = ClipConfig(modality="flow", new_length=3, input_size=32, scale_size=40,
                      test_segments=2)
    samples = {}
    for cropped in (True, False):
        previous = jpeg_crop.set_crop_decoding(cropped)
        try:
            train = VideoDataset([rec] * 12, src, clip, train=True, seed=4)
            samples[cropped] = ([train[i][0] for i in range(12)],
                                VideoDataset([rec], src, clip, train=False)[0][0])
        finally:
            jpeg_crop.set_crop_decoding(previous)
    for a, b in zip(samples[True][0], samples[False][0]):
        assert torch.equal(a, b)
    assert torch.equal(samples[True][1], samples[False][1])


def test_library_search_order(monkeypatch):
    monkeypatch.setenv("TWO_STREAM_TURBOJPEG", "off")
    assert jpeg_crop.library_candidates() == []
    monkeypatch.setenv("TWO_STREAM_TURBOJPEG", "/opt/lib/libturbojpeg.so.0")
    assert jpeg_crop.library_candidates() == ["/opt/lib/libturbojpeg.so.0"]
    monkeypatch.delenv("TWO_STREAM_TURBOJPEG")
    assert DECODER.path in jpeg_crop.library_candidates()
