import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flow_tools.errors import UserError
from flow_tools.extract import main
from flow_tools.extraction import extract_all
from flow_tools.params import ExtractConfig, FlowParams
from flow_tools.rawframes import video_id
from flow_tools.videos import list_videos, shard
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import RawframeSource
from two_stream.data.splits import resolve_records, ucf101_split
from two_stream.data.synthetic import SyntheticConfig, generate, write_video

TINY = SyntheticConfig(num_groups=2, clips_per_group=2, test_groups=1, num_frames=10,
                       width=64, height=48)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate(root, TINY, quiet=True)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_extract_loads_through_data_layer_with_step(videos, tmp_path):
    cfg = ExtractConfig(flow=FlowParams("dis"), step=2)
    s = extract_all(videos / "videos", tmp_path, cfg, quiet=True)
    assert (s.done, s.failed, s.frames, s.pairs) == (48, 0, 480, 48 * 8)
    split = ucf101_split(videos / "splits", 1)
    src = RawframeSource(tmp_path)
    recs = resolve_records(split.test, src.counts([r.video_id for r in split.test]))
    assert all((r.num_frames, r.num_flows) == (10, 8) for r in recs)
    meta = json.loads((tmp_path / recs[0].video_id / "meta.json").read_text())
    assert meta["params"]["flow"] == {"algorithm": "dis", "preset": "medium"}
    assert meta["params"]["step"] == 2 and meta["bound"] == 20 and meta["fps"] == 25
    ds = VideoDataset(recs, src, ClipConfig(modality="flow", new_length=3, input_size=32,
                                            scale_size=48, test_segments=2), train=False)
    assert ds[0][0].shape == (1, 2, 6, 32, 32)
    # a rerun skips everything
    again = extract_all(videos / "videos", tmp_path, cfg, quiet=True)
    assert (again.done, again.skipped) == (0, 48)


def test_other_parameters_need_overwrite(videos, tmp_path):
    rels = list_videos(videos / "videos")[:2]
    extract_all(videos / "videos", tmp_path, ExtractConfig(flow=FlowParams("dis")), rels,
                quiet=True)
    other = ExtractConfig(flow=FlowParams("farneback"))
    with pytest.raises(UserError, match=r"already extracted with other parameters \(flow "
                                         r"differ\); use --overwrite"):
        extract_all(videos / "videos", tmp_path, other, rels, quiet=True)
    s = extract_all(videos / "videos", tmp_path, other, rels, overwrite=True, quiet=True)
    assert s.done == 2
    meta = json.loads((tmp_path / rels[0][:-4] / "meta.json").read_text())
    assert meta["params"]["flow"]["algorithm"] == "farneback"


def test_bad_videos_go_to_failures_csv(videos, tmp_path):
    root = tmp_path / "in"
    (root / "C").mkdir(parents=True)
    good = videos / "videos" / "Grow" / "v_Grow_g01_c01.avi"
    (root / "C" / "good.avi").write_bytes(good.read_bytes())
    (root / "C" / "empty.avi").write_bytes(b"")
    (root / "C" / "corrupt.avi").write_bytes(os.urandom(5000))
    rng = np.random.default_rng(0)
    write_video(tmp_path / "long.avi", rng.integers(0, 255, (30, 48, 64, 3), np.uint8), 25)
    data = (tmp_path / "long.avi").read_bytes()
    (root / "C" / "truncated.avi").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    rc = main([str(root), str(out), "--algorithm", "dis", "--workers", "2", "--quiet"])
    assert rc == 1
    with open(out / "failures.csv") as f:
        rows = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    assert set(rows) == {"C/empty.avi", "C/corrupt.avi", "C/truncated.avi"}
    assert "declared frames" in rows["C/truncated.avi"]
    assert (out / "C" / "good" / "meta.json").exists()
    assert not (out / "C" / "empty").exists()
    assert not list(out.rglob(".*tmp*"))


def test_shards_partition_the_list():
    items = [f"v{i}" for i in range(23)]
    parts = [shard(items, f"{i}/4") for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(items)
    assert all(not set(a) & set(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    with pytest.raises(UserError, match="0 <= I < N"):
        shard(items, "4/4")


def test_kill_then_rerun_gives_identical_output(videos, tmp_path):
    subset = tmp_path / "list.txt"
    subset.write_text("\n".join(list_videos(videos / "videos")[:12]))
    cmd = [sys.executable, "-m", "flow_tools.extract", str(videos / "videos"), "OUT",
           "--list", str(subset), "--algorithm", "tvl1", "--tvl1-nscales", "3",
           "--tvl1-outer-iterations", "3", "--quiet"]
    ref = tmp_path / "ref"
    subprocess.run([c.replace("OUT", str(ref)) for c in cmd], check=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([c.replace("OUT", str(out)) for c in cmd],
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.rglob("meta.json"))) < 2:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("meta.json")}
    assert 2 <= len(done_before) < 12, "the run must be killed part-way"
    subprocess.run([c.replace("OUT", str(out)) for c in cmd], check=True)
    assert _tree(out) == _tree(ref)
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())


def test_real_clips_extract_and_load(fixtures, tmp_path):
    """Real UCF101, HMDB51 (one with container metadata errors) and slipping clips."""
    videos = fixtures / "videos"
    rels = ["ucf101/v_BlowDryHair_g07_c02.avi",
            "hmdb51/Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi",
            "hmdb51/RATRACE_wave_f_nm_np1_fr_goo_37.avi", "slipping/6100_2.mp4"]
    s = extract_all(videos, tmp_path, ExtractConfig(flow=FlowParams("dis"), new_short=64),
                    rels, workers=2, quiet=True)
    assert (s.done, s.failed) == (4, 0)
    src = RawframeSource(tmp_path)
    ids = [r[: r.rindex(".")] for r in rels]
    counts = src.counts(ids)
    assert counts[ids[0]] == (73, 72) and counts[ids[1]] == (83, 82)
    assert counts[ids[3]] == (199, 198)
    for vid in ids:
        meta = json.loads((tmp_path / vid / "meta.json").read_text())
        assert min(meta["width"], meta["height"]) == 64
        assert src.rgb(vid, np.array([0])).shape[1:3] == (meta["height"], meta["width"])
    # portrait video: the short side is the width
    assert json.loads((tmp_path / ids[3] / "meta.json").read_text())["width"] == 64


def test_frame_size_change_is_a_failure(tmp_path, monkeypatch):
    """A stream whose frame size changes mid-way ends in failures.csv, not in a crash."""
    import cv2

    class Capture:  # a decoder that switches resolution at frame 3
        def __init__(self, path):
            self.i = 0

        def isOpened(self):
            return True

        def get(self, prop):
            return 6 if prop == cv2.CAP_PROP_FRAME_COUNT else 25.0

        def read(self):
            self.i += 1
            if self.i > 6:
                return False, None
            size = (48, 64) if self.i < 3 else (96, 128)
            return True, np.full((*size, 3), 10 * self.i, np.uint8)

        def release(self):
            pass

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "v.avi").write_bytes(b"x")
    monkeypatch.setattr(cv2, "VideoCapture", Capture)
    s = extract_all(tmp_path / "in", tmp_path / "out", ExtractConfig(flow=FlowParams("dis")),
                    quiet=True)
    assert s.failed == 1
    reason = (tmp_path / "out" / "failures.csv").read_text()
    assert "frame size changed from 64x48 to 128x96 at frame 2" in reason
    assert not (tmp_path / "out" / "v").exists()


def test_stale_tmp_removed_only_when_its_owner_is_gone(tmp_path):
    import socket

    from flow_tools.rawframes import clean_stale_tmp
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    host = socket.gethostname()
    live = tmp_path / "C" / f".v1.tmp-{host}-{os.getpid()}"
    gone = tmp_path / "C" / f".v2.tmp-{host}-{dead.pid}"
    remote = tmp_path / "C" / f".v3.tmp-other-host-{dead.pid}"
    for p in (live, gone, remote):
        p.mkdir(parents=True)
    assert clean_stale_tmp(tmp_path) == 1
    assert live.exists() and remote.exists() and not gone.exists()


def test_concurrent_shards_into_one_folder(videos, tmp_path):
    """Two shards run at the same time into one folder: every video completes, and the
    failure of a broken video in shard 1 survives shard 0 finishing."""
    root = tmp_path / "in"
    shutil.copytree(videos / "videos", root)
    rels = list_videos(root)
    broken = shard(rels, "1/2")[0]
    (root / broken).write_bytes(os.urandom(3000))
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "flow_tools.extract", str(root), str(out),
                               "--algorithm", "dis", "--shard", f"{i}/2", "--quiet"],
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert codes == [0, 1], errs
    assert "Traceback" not in "".join(errs)
    done = {p.parent.relative_to(out).as_posix() for p in out.rglob("meta.json")}
    assert done == {video_id(r) for r in rels if r != broken}
    assert not (out / "failures.csv").exists()
    assert not (out / "failures.shard-0-of-2.csv").exists()
    with open(out / "failures.shard-1-of-2.csv") as f:
        assert [r["path"] for r in csv.DictReader(f)] == [broken]
    assert not list(out.rglob(".*tmp*"))


def test_reextraction_invalidates_the_cached_frame_counts(videos, tmp_path):
    rels = list_videos(videos / "videos")[:2]
    extract_all(videos / "videos", tmp_path, ExtractConfig(flow=FlowParams("dis")), rels,
                quiet=True)
    src = RawframeSource(tmp_path)
    src.counts([video_id(r) for r in rels])
    assert (tmp_path / "frame_index.json").exists()
    # a rerun that extracts something removes the cache; one that skips everything keeps it
    extract_all(videos / "videos", tmp_path, ExtractConfig(flow=FlowParams("dis")), rels,
                quiet=True)
    assert (tmp_path / "frame_index.json").exists()
    extract_all(videos / "videos", tmp_path, ExtractConfig(flow=FlowParams("dis"), step=2),
                rels, overwrite=True, quiet=True)
    assert not (tmp_path / "frame_index.json").exists()
