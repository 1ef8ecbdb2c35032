import json

import cv2
import numpy as np
import pytest

from flow_tools.quantize import dequantize, quantize
from two_stream.data.frames import (
    FrameReadError,
    RawframeSource,
    VideoFileSource,
    count_video_frames,
    read_video_frames,
)


def test_quantise_round_trip_within_half_level():
    rng = np.random.default_rng(0)
    f = rng.uniform(-25, 25, size=(50, 60, 2)).astype(np.float32)
    q = quantize(f, 20)
    assert q.dtype == np.uint8
    back = dequantize(q, 20)
    inside = np.abs(f) <= 20
    assert np.abs(back - f)[inside].max() <= 20 / 255 + 1e-5
    assert np.allclose(back[~inside], np.sign(f[~inside]) * 20)
    assert quantize(np.zeros(1), 20)[0] == 128  # round(127.5): denseflow's "no motion"


def test_dequantise_uses_bound_from_meta(tmp_path):
    vid = tmp_path / "C" / "v1"
    vid.mkdir(parents=True)
    flow = np.full((8, 8), 3.0, np.float32)
    for name, value in (("flow_x_00001.jpg", flow), ("flow_y_00001.jpg", -flow)):
        cv2.imwrite(str(vid / name), quantize(value, 5.0))
    cv2.imwrite(str(vid / "img_00001.jpg"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(vid / "img_00002.jpg"), np.zeros((8, 8, 3), np.uint8))
    (vid / "meta.json").write_text(json.dumps({"num_frames": 2, "num_flows": 1, "bound": 5.0}))
    src = RawframeSource(tmp_path)
    out = src.flow("C/v1", np.array([0]))
    assert out.shape == (1, 8, 8, 2)
    assert np.allclose(out[..., 0], 3.0, atol=5 / 127.5 + 0.1)
    assert np.allclose(out[..., 1], -3.0, atol=5 / 127.5 + 0.1)
    assert src.counts(["C/v1"]) == {"C/v1": (2, 1)}


def test_mmaction_rawframes_fixture(fixtures):
    src = RawframeSource(fixtures / "rawframes", "rawframes_xy")
    assert src.count("mmaction2_imgs") == (10, 5)
    rgb = src.rgb("mmaction2_imgs", np.array([0, 9, 9]))
    assert rgb.shape == (3, 240, 320, 3) and rgb.dtype == np.uint8
    fl = src.flow_images("mmaction2_imgs", np.array([0, 4]))
    assert fl.shape[0] == 2 and fl.shape[-1] == 2
    # denseflow encoding: mostly still background around 128
    assert 100 < np.median(fl) < 156


def test_missing_frame_names_the_file(tmp_path):
    (tmp_path / "C" / "v1").mkdir(parents=True)
    src = RawframeSource(tmp_path)
    with pytest.raises(FrameReadError, match=r"C/v1/img_00004.jpg: frame missing"):
        src.rgb("C/v1", np.array([3]))
    (tmp_path / "C" / "v1" / "img_00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FrameReadError, match=r"img_00001.jpg: frame unreadable"):
        src.rgb("C/v1", np.array([0]))


def test_missing_or_corrupt_frame_prints_no_opencv_warning(tmp_path, capfd):
    """One error naming the file, and nothing on stderr: OpenCV's imread printed
    `[ WARN ] ... imread_(...): can't open/read file` before every missing frame."""
    (tmp_path / "C" / "v1").mkdir(parents=True)
    (tmp_path / "C" / "v1" / "img_00001.jpg").write_bytes(b"\xff\xd8 truncated")
    src = RawframeSource(tmp_path)
    for index, what in ((3, "missing"), (0, "unreadable")):
        for read in (lambda i: src.rgb("C/v1", np.array([i])),
                     lambda i: src.rgb_planes("C/v1", np.array([i]))[0].decode()):
            with pytest.raises(FrameReadError, match=f"C/v1/img_0000{index + 1}.jpg: frame "
                                                     f"{what}"):
                read(index)
    err = capfd.readouterr().err
    assert "imread_" not in err and "WARN" not in err, err


def test_rawframe_names_come_from_the_layout_module():
    from flow_tools.rawframes import frame_name
    from two_stream.data.frames import LAYOUTS, _path
    for kind, template in (("img", LAYOUTS["rawframes"].rgb),
                           ("flow_x", LAYOUTS["rawframes"].flow_x),
                           ("flow_y", LAYOUTS["rawframes"].flow_y)):
        assert _path("R", template, "C/v", 6) == f"R/C/v/{frame_name(kind, 7)}"
    assert frame_name("flow_y", 12) == "flow_y_00012.jpg"


def test_feichtenhofer_layout_and_index_cache(tmp_path):
    name = "v_Archery_g01_c01"
    (tmp_path / "jpegs_256" / name).mkdir(parents=True)
    for d in ("u", "v"):
        (tmp_path / "tvl1_flow" / d / name).mkdir(parents=True)
    for i in range(1, 6):
        cv2.imwrite(str(tmp_path / "jpegs_256" / name / f"frame{i:06d}.jpg"),
                    np.full((16, 16, 3), 10 * i, np.uint8))
    for i in range(1, 5):
        for d, v in (("u", 100), ("v", 150)):
            cv2.imwrite(str(tmp_path / "tvl1_flow" / d / name / f"frame{i:06d}.jpg"),
                        np.full((16, 16), v, np.uint8))
    src = RawframeSource(tmp_path, "feichtenhofer")
    vid = f"Archery/{name}"
    assert src.counts([vid]) == {vid: (5, 4)}
    assert (tmp_path / "frame_index.json").exists()
    rgb = src.rgb(vid, np.array([2]))
    assert abs(int(rgb[0, 8, 8, 0]) - 30) <= 2
    fl = src.flow_images(vid, np.array([3]))
    assert abs(int(fl[0, 8, 8, 0]) - 100) <= 2 and abs(int(fl[0, 8, 8, 1]) - 150) <= 2


def test_read_video_frames_from_real_clip(fixtures):
    path = fixtures / "videos" / "ucf101" / "v_ApplyEyeMakeup_g01_c01.avi"
    n = count_video_frames(path)
    assert n > 100
    idx = np.array([n - 1, 0, 5, 5])
    frames = read_video_frames(path, idx)
    assert frames.shape == (4, 240, 320, 3)
    assert np.array_equal(frames[2], frames[3])
    all_frames = read_video_frames(path)
    assert len(all_frames) == n and np.array_equal(all_frames[5], frames[2])
    with pytest.raises(FrameReadError, match=f"frame {n} requested but the video ends"):
        read_video_frames(path, np.array([n]))
    src = VideoFileSource(fixtures / "videos")
    assert src.count("ucf101/v_ApplyEyeMakeup_g01_c01") == (n, n - 1)
    with pytest.raises(FrameReadError, match="flow_tools.extract"):
        src.flow_images("ucf101/v_ApplyEyeMakeup_g01_c01", np.array([0]))


def test_unreadable_video(tmp_path):
    (tmp_path / "bad.avi").write_bytes(b"\x00" * 100)
    with pytest.raises(FrameReadError, match="bad.avi"):
        count_video_frames(tmp_path / "bad.avi")
