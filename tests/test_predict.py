"""Two-stream prediction: the input rebuilt from a video file equals the evaluation input from
its extracted rawframes; fused output for one video; a folder with a broken video; errors."""
import csv
import logging

import numpy as np
import pytest
import torch

from flow_tools.device import resolve_device
from two_stream import cli, predict
from two_stream.data.build import build_data
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.synthetic import SyntheticConfig
from two_stream.engine.checkpoint import load_checkpoint, save_checkpoint
from two_stream.errors import UserError

TINY = SyntheticConfig(num_groups=3, clips_per_group=2, test_groups=1, num_frames=12,
                       width=72, height=56)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, rawframes_factory):
    root = tmp_path_factory.mktemp("pred")
    # short side 48, not the clips' 56: prediction must resize as the extraction did
    shared = rawframes_factory(TINY, new_short=48)  # read-only: linked, runs written beside
    (root / "syn").symlink_to(shared.root)
    (root / "frames").symlink_to(shared.frames)
    common = ["--split-dir", str(root / "syn" / "splits"), "--frames", str(root / "frames"),
              "--input-size", "32", "--scale-size", "40", "--num-segments", "2",
              "--test-segments", "3", "--epochs", "1", "--batch-size", "8", "--workers", "0",
              "--quiet", "--val-ratio", "0"]
    for stream, modality, extra in (("spatial", "rgb", []), ("temporal", "flow",
                                                             ["--new-length", "3"])):
        assert cli.main(["train", *common, *extra, "--run-dir", str(root / stream)],
                        stream=stream, modality=modality) == 0
    return root


@pytest.mark.parametrize("stream", ["spatial", "temporal"])
def test_input_from_the_video_equals_the_input_from_its_rawframes(runs, stream):
    """Same resize, flow, quantisation and JPEG encoding as the extraction: the views built
    from the video file are those evaluation builds from the rawframes (to the byte)."""
    s = predict.load_stream(stream, runs / stream, torch.device("cpu"))
    assert s.extraction.new_short == 48 and s.extraction.flow.algorithm == "dis"
    ck = load_checkpoint(runs / stream / "checkpoint_best.pt")
    from two_stream.config import DataConfig
    d = DataConfig(**ck["config"]["data"])
    clip = ClipConfig(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in ck["config"]["clip"].items()})
    data = build_data(d, clip)
    record = data.test[0]
    want = VideoDataset([record], data.source, clip, train=False)[0][0]
    video = runs / "syn" / "videos" / f"{record.video_id}.avi"
    got = predict.stream_input(s, video)
    assert got.shape == want.shape and torch.equal(got, want)


def test_fused_prediction_of_one_video(runs, capsys):
    video = runs / "syn" / "videos" / "Grow" / "v_Grow_g01_c01.avi"
    assert predict.main([str(video), "--spatial", str(runs / "spatial"), "--temporal",
                         str(runs / "temporal"), "--topk", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "spatial:" and out[4] == "temporal:" and out[8].startswith(
        "fused (weighted 1:1.5, norm none):")
    probs = [float(line.split("%")[0]) for line in out[9:12]]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 100 for p in probs)
    # the fused scores are the weighted sum of the streams' logits (TSN's rule)
    streams = predict.load_streams(predict.get_args_parser().parse_args(
        [str(video), "--spatial", str(runs / "spatial"), "--temporal", str(runs / "temporal"),
         "--device", "cpu"]))
    a = predict.stream_scores(streams[0], video)
    b = predict.stream_scores(streams[1], video)
    fused = predict.fuse({"spatial": a, "temporal": b}, "weighted", "none", [1.0, 1.5])
    np.testing.assert_allclose(fused, a + 1.5 * b, rtol=1e-6)


def test_folder_goes_on_past_a_broken_video(runs, tmp_path, capsys):
    folder = tmp_path / "videos" / "C"
    folder.mkdir(parents=True)
    good = runs / "syn" / "videos" / "MoveUp" / "v_MoveUp_g01_c01.avi"
    (folder / "good.avi").write_bytes(good.read_bytes())
    (folder / "broken.avi").write_bytes(b"RIFF" + bytes(500))
    out = tmp_path / "preds.csv"
    rc = predict.main([str(tmp_path / "videos"), "--temporal", str(runs / "temporal"),
                       "--out", str(out), "--quiet", "--device", "cpu"])
    assert rc == 1
    rows = {r["video_id"]: r for r in csv.DictReader(open(out))}
    assert rows["C/good"]["error"] == "" and rows["C/good"]["top1"]
    assert "cannot open" in rows["C/broken"]["error"] and rows["C/broken"]["top1"] == ""
    assert "1 unreadable" in capsys.readouterr().out


def test_errors_and_old_checkpoints(runs, tmp_path, capsys, caplog):
    video = runs / "syn" / "videos" / "Grow" / "v_Grow_g01_c01.avi"
    ck = load_checkpoint(runs / "spatial" / "checkpoint_best.pt")
    ck["classes"] = ck["classes"][::-1]
    save_checkpoint(tmp_path / "other.pt", ck)
    assert predict.main([str(video), "--spatial", str(tmp_path / "other.pt"), "--temporal",
                         str(runs / "temporal"), "--device", "cpu"]) == 2
    assert "must be trained on one class list" in capsys.readouterr().err
    old = load_checkpoint(runs / "spatial" / "checkpoint_best.pt")
    del old["input"]
    save_checkpoint(tmp_path / "old.pt", old)
    with caplog.at_level(logging.WARNING, logger="two_stream.predict"):
        assert predict.main([str(video), "--spatial", str(tmp_path / "old.pt"),
                             "--device", "cpu"]) == 0
    assert "checkpoint without the extraction parameters" in caplog.text
    assert predict.main([str(tmp_path / "missing.avi"), "--spatial",
                         str(runs / "spatial"), "--device", "cpu"]) == 2
    assert "missing.avi: video not found" in capsys.readouterr().err


def _live_video(runs, tmp_path, n=60):
    """A longer clip: the synthetic MoveUp clip played 5 times."""
    import cv2
    src = cv2.VideoCapture(str(runs / "syn" / "videos" / "MoveUp" / "v_MoveUp_g01_c01.avi"))
    frames = []
    while True:
        ok, f = src.read()
        if not ok:
            break
        frames.append(f)
    from two_stream.data.synthetic import write_video
    clip = np.stack([frames[i % len(frames)][..., ::-1] for i in range(n)])  # RGB for writer
    write_video(tmp_path / "long.avi", clip, 25)
    return tmp_path / "long.avi"


def test_live_scores_a_file_and_writes_the_annotated_video(runs, tmp_path, capsys):
    from two_stream import live
    video = _live_video(runs, tmp_path)
    out = tmp_path / "annotated.mp4"
    assert live.main(["--spatial", str(runs / "spatial"), "--temporal", str(runs / "temporal"),
                      "--source", str(video), "--every", "10", "--window", "16",
                      "--segments", "3", "--out", str(out), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and lines[-1].startswith("6 updates")  # frames 10, 20, ..., 60
    assert all(line.count("%") == 3 and "latency" in line for line in lines[:-1])
    import cv2
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60


def test_live_realtime_never_lags_and_never_spans_a_dropped_frame(runs, tmp_path, monkeypatch):
    """Played with --realtime while processing is slowed to ~3x the frame period: frames are
    dropped, no flow pair spans a drop, the rings stay bounded, updates never fall behind."""
    import argparse

    from two_stream import live
    video = _live_video(runs, tmp_path, n=100)
    streams = predict.load_streams(argparse.Namespace(spatial=str(runs / "spatial"),
                                                      temporal=str(runs / "temporal"),
                                                      device="cpu"))
    lv = live.Live(streams, window=12, segments=3, fusion="weighted", norm="none",
                   weights=[1.0, 1.5])
    slow_push = lv.push

    def push(index, frame, contiguous):
        import time
        time.sleep(0.12)  # 3 frame periods at 25 fps
        slow_push(index, frame, contiguous)
        assert len(lv.state.frames) <= 12 and len(lv.state.fields) <= 11
    monkeypatch.setattr(lv, "push", push)
    cap, fps, camera = live.open_source(str(video))
    updates = live.run_live(lv, cap, fps, every=4, realtime=True, quiet=True)
    pairs = lv.state.flow_pairs
    assert pairs and all(b == a + 1 for a, b in pairs)  # consecutive source frames only
    seen = {i for i, _ in lv.state.frames}
    assert len(seen) < 100  # frames were dropped to keep up
    # no lag that grows with the source: dropping keeps the late updates as fresh as the early
    # ones (relative, so a loaded machine that is slow throughout does not fail it)
    lat = [u.latency for u in updates]
    half = len(lat) // 2
    assert half >= 2
    assert sum(lat[half:]) / (len(lat) - half) <= 1.5 * sum(lat[:half]) / half + 0.25


def test_show_without_a_gui_is_a_clear_error(runs, capsys):
    from two_stream import live
    rc = live.main(["--spatial", str(runs / "spatial"), "--source", "nothing.avi", "--show",
                    "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "--show needs a display" in err


def test_real_clip_predict_and_live(runs, fixtures, tmp_path, capsys):
    """A real UCF101 clip (320x240 Xvid): fused prediction and a --realtime live pass run
    through the checkpoints' own extraction settings."""
    from two_stream import live
    clip = fixtures / "videos" / "ucf101" / "v_TennisSwing_g14_c03.avi"
    assert predict.main([str(clip), "--spatial", str(runs / "spatial"), "--temporal",
                         str(runs / "temporal"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "spatial:" and any(line.startswith("fused (") for line in out)
    s = predict.load_stream("temporal", runs / "temporal", torch.device("cpu"))
    views = predict.stream_input(s, clip)
    assert views.shape == (1, 3, 6, 32, 32) and views.dtype == torch.uint8
    assert live.main(["--spatial", str(runs / "spatial"), "--temporal", str(runs / "temporal"),
                      "--source", str(clip), "--every", "16", "--window", "24", "--segments",
                      "3", "--realtime", "--quiet", "--device", "cpu"]) == 0
    assert "updates, median latency" in capsys.readouterr().out


def test_device_is_parsed_strictly(runs, monkeypatch, capsys):
    """An unknown string is a one-line error (it used to land on cuda:0); cuda:N names that
    GPU (it used to follow LOCAL_RANK, so GPU 0)."""
    video = runs / "syn" / "videos" / "Grow" / "v_Grow_g01_c01.avi"
    assert predict.main([str(video), "--device", "gpu", "--spatial", str(runs / "spatial")]) == 2
    assert capsys.readouterr().err.startswith("error: --device 'gpu': expected ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UserError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_torch_flow_of_a_stream_is_the_tvl1_of_its_parameters():
    from flow_tools.flow import pair_flows
    from flow_tools.params import LIGHT_TVL1, ExtractConfig, FlowParams
    rng = np.random.default_rng(0)
    prev = rng.integers(0, 255, (3, 24, 32), dtype=np.uint8)
    nxt = np.roll(prev, 1, axis=2)
    cfg = ExtractConfig(flow=FlowParams("tvl1", LIGHT_TVL1, backend="torch"))
    got = predict.stream_flows(prev, nxt, cfg, torch.device("cpu"), batch_pairs=2)
    np.testing.assert_array_equal(got, pair_flows(prev, nxt, cfg.flow, "cpu", batch_pairs=3))
