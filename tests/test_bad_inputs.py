"""Every entry point x every kind of bad input: exit code 2, one line on stderr that names the
file, no traceback, and nothing already written is damaged. Entry points run in-process
(`main(argv)`); test_subprocess_exit_codes checks the real exit codes of a few."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import fuse, suite
from flow_tools import extract
from two_stream import cli, predict, scores
from two_stream.data import synthetic
from two_stream.scores import ScoreFile, save_scores


class Evil:  # a pickle that would run code on load
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny):
    """A folder for the bad files, with the shared tiny set linked in as syn/ and frames/
    (the tests check that nothing in frames/ changes)."""
    root = tmp_path_factory.mktemp("bad")
    (root / "syn").symlink_to(tiny.root, target_is_directory=True)
    (root / "frames").symlink_to(tiny.frames, target_is_directory=True)
    classes = [f"C{i}" for i in range(3)]
    (root / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    ids = [f"C{i % 3}/v_C{i % 3}_g0{i}_c01" for i in range(6)]
    good = ScoreFile(np.eye(6, 3, dtype=np.float32), np.arange(6) % 3, ids, classes)
    save_scores(root / "good.npz", good)
    return root


def _bytes(root):
    """Every file under root with its content (to prove nothing was damaged)."""
    return {p: p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _make(root: Path, kind: str) -> Path:
    """One bad file of the given kind; returns its path."""
    p = root / f"bad_{kind}"
    if kind == "truncated_pickle":
        p.write_bytes(pickle.dumps({"C0_g01_c01": np.ones(3, np.float32)})[:-9])
    elif kind == "not_a_pickle":
        p.write_bytes(b"\x00\x01garbage" * 10)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "evil_pickle":
        p.write_bytes(pickle.dumps({"C0_g01_c01": Evil()}))
    elif kind == "wrong_type_pickle":
        p.write_bytes(pickle.dumps("a string"))
    elif kind == "wrong_shape_pickle":
        p.write_bytes(pickle.dumps({"C0_g01_c01": np.ones(7, np.float32)}))
    elif kind == "nan_npz":
        np.savez(p.with_suffix(".npz"), scores=np.full((2, 3), np.nan, np.float32),
                 labels=np.zeros(2, np.int64), video_ids=np.array(["a/x", "b/y"]),
                 classes=np.array(["C0", "C1", "C2"]))
        return p.with_suffix(".npz")
    elif kind == "wrong_shape_npz":
        np.savez(p.with_suffix(".npz"), scores=np.zeros(5, np.float32),
                 labels=np.zeros(5, np.int64), video_ids=np.array(["a"] * 5),
                 classes=np.array(["C0"]))
        return p.with_suffix(".npz")
    elif kind == "truncated_npz":
        p = p.with_suffix(".npz")
        good = (root / "good.npz").read_bytes()
        p.write_bytes(good[: len(good) // 2])
    elif kind == "binary_text":
        p.write_bytes(bytes(range(256)) * 4)
    elif kind == "truncated_checkpoint":
        torch.save({"model": {"w": torch.zeros(1000)}, "config": {}, "classes": [], "epoch": 1},
                   p)
        p.write_bytes(p.read_bytes()[:300])
    elif kind == "foreign_checkpoint":
        torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1)}, p)
    elif kind == "bad_json":
        p.write_text("{not json")
    elif kind == "mismatched_set":
        return root / "syn" / "synthetic.json"  # exists, written with other parameters
    elif kind == "corrupt_video":
        p = p.with_suffix(".avi")
        p.write_bytes(b"RIFF" + bytes(2000))
    return p


def _ci(env):  # the class index
    return str(env / "classInd.txt")


# (entry point, bad-file kind, argv builder, expected message part)
FUSE = lambda e, b: ["--stream", f"a={b}", "--stream", f"b={e / 'good.npz'}", "--class-index",
                     _ci(e), "--out", str(e / "fused")]
CONVERT = lambda e, b: ["convert", str(b), "--class-index", _ci(e), str(e / "good.npz")]
CASES = [
    ("fuse", "truncated_pickle", FUSE, "cannot read as a pickle"),
    ("fuse", "not_a_pickle", FUSE, "cannot read as a pickle"),
    ("fuse", "empty", FUSE, "cannot read as a pickle"),
    ("fuse", "evil_pickle", FUSE, "refused to load builtins.print"),
    ("fuse", "wrong_type_pickle", FUSE, "expected a dict {video name: scores} (two-stream) or"),
    ("fuse", "wrong_shape_pickle", FUSE, "has 7 scores but the class index has 3"),
    ("fuse", "nan_npz", FUSE, "NaN or infinite"),
    ("fuse", "wrong_shape_npz", FUSE, "scores must be [N, C]"),
    ("fuse", "truncated_npz", FUSE, "cannot read as a .npz"),
    ("convert", "truncated_pickle", CONVERT, "cannot read as a pickle"),
    ("convert", "evil_pickle", CONVERT, "refused to load"),
    ("convert", "wrong_shape_pickle", CONVERT, "has 7 scores"),
    ("convert", "binary_text", lambda e, b: ["convert", str(e / "bad_wrong_shape_pickle"),
                                             "--class-index", str(b), str(e / "good.npz")],
     "not a text file"),
    ("convert", "empty", lambda e, b: ["convert", str(e / "bad_wrong_shape_pickle"),
                                       "--class-index", str(b), str(e / "good.npz")],
     "empty class index"),
    ("extract", "binary_text", lambda e, b: [str(e / "syn" / "videos"), str(e / "frames"),
                                             "--list", str(b), "--algorithm", "dis"],
     "not a text file"),
    ("extract", "empty", lambda e, b: [str(e / "syn" / "videos"), str(e / "frames"), "--list",
                                       str(b), "--algorithm", "dis"], "empty list file"),
    ("train", "bad_json", lambda e, b: ["train", "--config", str(b)], "cannot read config"),
    ("train", "binary_text", lambda e, b: _train(e, "--split-dir", str(_splits(e, b))),
     "not a text file"),
    ("train", "truncated_checkpoint", lambda e, b: _train(e, "--weights", str(b)),
     "cannot load as a PyTorch state dict"),
    ("evaluate", "truncated_checkpoint", lambda e, b: _train(e, "--checkpoint", str(b),
                                                             cmd="evaluate"),
     "cannot load as a checkpoint"),
    ("evaluate", "foreign_checkpoint", lambda e, b: _train(e, "--checkpoint", str(b),
                                                           cmd="evaluate"),
     "not a two_stream checkpoint"),
    ("predict", "corrupt_video", lambda e, b: ["predict", str(b), "--checkpoint",
                                               str(e / "bad_foreign_checkpoint")],
     "not a two_stream checkpoint"),
    ("predict", "truncated_checkpoint", lambda e, b: ["predict", str(e / "syn" / "videos" /
                                                                 "Grow" / "v_Grow_g01_c01.avi"),
                                                      "--checkpoint", str(b)],
     "cannot load as a checkpoint"),
    ("predict2", "corrupt_video", lambda e, b: [str(b), "--spatial",
                                                str(e / "bad_foreign_checkpoint")],
     "not a two_stream checkpoint"),
    ("predict2", "binary_text", lambda e, b: [str(b), "--spatial", str(e / "nothing.pt")],
     "not a video extension and not a text list file"),
    ("suite", "binary_text", lambda e, b: ["--dataset", "ucf101", "--split-dir",
                                           str(_splits(e, b)), "--frames", str(e / "frames"),
                                           "--work-dir", str(e / "suite"), "--results-root",
                                           str(e / "suite_results"), "--consensus", "mean",
                                           "--streams", "spatial", "--quiet"],
     "not a text file"),
    ("synthetic", "mismatched_set", lambda e, b: [str(e / "syn"), "--num-frames", "9",
                                                  "--quiet"],
     "a synthetic set with another config exists"),
]


def _splits(e: Path, bad: Path) -> Path:
    """A split folder whose classInd.txt is the bad file."""
    d = e / f"splits_{bad.name}"
    d.mkdir(exist_ok=True)
    (d / "classInd.txt").write_bytes(bad.read_bytes())
    return d


def _train(e: Path, *extra: str, cmd: str = "train") -> list[str]:
    base = {"--split-dir": str(e / "syn" / "splits"), "--frames": str(e / "frames"),
            "--run-dir": str(e / "run"), "--input-size": "32", "--scale-size": "40",
            "--epochs": "1", "--workers": "0", "--quiet": None}
    for k, v in zip(extra[::2], extra[1::2]):
        base[k] = v
    return [cmd, *[x for k, v in base.items() for x in ((k,) if v is None else (k, v))]]


MAINS = {"fuse": fuse.main, "convert": scores.main, "extract": extract.main,
         "train": cli.main, "evaluate": cli.main, "predict": cli.main, "suite": suite.main,
         "synthetic": synthetic.main, "predict2": predict.main}


@pytest.mark.parametrize("entry,kind,argv,message", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input(env, entry, kind, argv, message, capsys):
    bad = _make(env, kind)
    before = _bytes(env / "frames"), (env / "good.npz").read_bytes()
    rc = MAINS[entry](argv(env, bad))
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in captured.out + captured.err
    assert message in err, err
    named = {("predict", "corrupt_video"): "bad_foreign_checkpoint",
             ("predict2", "corrupt_video"): "bad_foreign_checkpoint",
             ("train", "binary_text"): f"splits_{bad.name}/classInd.txt",
             ("suite", "binary_text"): f"splits_{bad.name}/classInd.txt"}.get((entry, kind),
                                                                              str(bad))
    assert named in err, err
    assert "pwned" not in captured.out  # the evil pickle never ran
    frames_after = _bytes(env / "frames")  # new caches may appear; nothing may change
    assert all(frames_after.get(f) == data for f, data in before[0].items())
    assert (env / "good.npz").read_bytes() == before[1]


def test_subprocess_exit_codes(env, tmp_path):
    """The real process exit codes: 2 for a user error (one line, no traceback), 1 when some
    videos failed and the rest completed."""
    bad = _make(env, "truncated_pickle")
    r = subprocess.run([sys.executable, "-m", "two_stream.scores", "convert", str(bad),
                        "--class-index", _ci(env), str(tmp_path / "o.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(bad) in r.stderr
    videos = tmp_path / "v" / "C"
    videos.mkdir(parents=True)
    (videos / "bad.avi").write_bytes(b"RIFF" + bytes(100))
    good = env / "syn" / "videos" / "Grow" / "v_Grow_g01_c01.avi"
    (videos / "good.avi").write_bytes(good.read_bytes())
    r = subprocess.run([sys.executable, "-m", "flow_tools.extract", str(tmp_path / "v"),
                        str(tmp_path / "out"), "--algorithm", "dis", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (tmp_path / "out" / "C" / "good" / "meta.json").exists()
    assert "C/bad.avi" in (tmp_path / "out" / "failures.csv").read_text()
