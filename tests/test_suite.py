import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from benchmarks import suite
from two_stream import recipes
from two_stream.engine.checkpoint import load_checkpoint
from two_stream.scores import load_scores


def _tiny_argv(root: Path) -> list[str]:
    return ["--work-dir", str(root / "work"), "--results-root", str(root / "results"),
            "--name", "tiny", "--synthetic-groups", "3", "--synthetic-clips-per-group", "1",
            "--synthetic-frames", "12", "--epochs", "1", "--consensus", "mean", "lstm",
            "--input-size", "32", "--resamples", "50", "--quiet"]


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory) -> Path:
    """The tiny suite run in this process on one thread (as the local jobs below run)."""
    root = tmp_path_factory.mktemp("suite")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert suite.main(_tiny_argv(root)) == 0
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.e2e
def test_tiny_suite_end_to_end_and_rerun_skips(tiny_suite):
    tmp_path, argv = tiny_suite, _tiny_argv(tiny_suite)
    out = tmp_path / "results" / "tiny"
    table = pd.read_csv(out / "table.csv")
    assert table["method"].tolist()[:2] == ["spatial", "temporal"]
    assert "validation score file" in set(table["labels_used"])
    grid = pd.read_csv(out / "grid.csv")
    assert {"mean top-1", "lstm top-1"} <= set(grid.columns)
    streams = pd.read_csv(out / "streams.csv")
    assert len(streams) == 4 and {"appearance_classes_top1", "motion_classes_top1"} <= set(
        streams.columns)
    run = json.loads((out / "run.json").read_text())
    assert set(run["step_seconds"]) >= {"data", "frames and flow", "fusion"}
    assert run["run_configs"]["split1/temporal_lstm"]["model"]["freeze_backbone"] is True
    readme = (out / "README.md").read_text()
    assert "python -m benchmarks.suite" in readme and "| method |" in readme
    for png in ["appearance_vs_motion.png", "curves_spatial_mean.png",
                "curves_temporal_lstm.png", *[p.name for p in out.glob("confusion_*.png")]]:
        assert Image.open(out / png).size[0] > 100
    runs = tmp_path / "work" / "runs" / "split1"
    sf = load_scores(runs / "temporal_mean" / "scores_test.npz")
    assert sf.scores.shape[1] == 12 and sf.meta["modality"] == "flow"
    # a rerun resumes: nothing is trained or scored again
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*.pt")} | \
             {p: p.stat().st_mtime_ns for p in runs.rglob("*.npz")}
    assert suite.main(argv) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert load_checkpoint(runs / "spatial_lstm" / "checkpoint_last.pt")["epoch"] == 1


@pytest.mark.e2e
def test_local_jobs_give_the_in_process_tables_and_a_rerun_submits_nothing(
        tiny_suite, tmp_path, monkeypatch, capsys):
    """--executor local: the four training runs as real subprocesses (submitit's
    LocalExecutor: the lstm runs in a second wave), fusion here: the same tables byte for
    byte as the in-process suite."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs' torch threads, as in-process
    argv = [*_tiny_argv(tmp_path), "--executor", "local"]
    assert suite.main(argv) == 0
    assert "4 runs trained as local jobs" in capsys.readouterr().out
    for name in ("table.csv", "grid.csv", "streams.csv", "table.md"):
        assert (tmp_path / "results" / "tiny" / name).read_text() == (
            tiny_suite / "results" / "tiny" / name).read_text(), name
    logs = tmp_path / "work" / "submitit" / "tiny"
    assert len(list(logs.glob("*_log.out"))) == 4
    assert suite.main(argv) == 0
    assert "0 runs trained as local jobs" in capsys.readouterr().out
    assert len(list(logs.glob("*_log.out"))) == 4


@pytest.mark.e2e
def test_same_seed_same_table(tmp_path):
    """Two runs from scratch with one seed give the same numbers (data-loader workers too)."""
    tables = []
    for name in ("a", "b"):
        argv = ["--work-dir", str(tmp_path / name), "--results-root", str(tmp_path / "res"),
                "--name", name, "--synthetic-groups", "3", "--synthetic-clips-per-group", "1",
                "--synthetic-frames", "10", "--epochs", "1", "--consensus", "mean",
                "--input-size", "32", "--resamples", "50", "--quiet"]
        assert suite.main(argv) == 0
        tables.append(pd.read_csv(tmp_path / "res" / name / "table.csv"))
    pd.testing.assert_frame_equal(tables[0], tables[1])


@pytest.mark.e2e
def test_three_synthetic_splits_and_their_mean(tmp_path):
    argv = ["--work-dir", str(tmp_path / "work"), "--results-root", str(tmp_path / "results"),
            "--name", "three", "--synthetic-groups", "3", "--synthetic-clips-per-group", "1",
            "--synthetic-frames", "10", "--epochs", "1", "--consensus", "mean",
            "--input-size", "32", "--resamples", "50", "--quiet", "--split", "all"]
    assert suite.main(argv) == 0
    out = tmp_path / "results" / "three"
    tests = {}
    per_split = {}
    for n in (1, 2, 3):
        per_split[n] = pd.read_csv(out / f"split{n}" / "table.csv")
        sf = load_scores(tmp_path / "work" / "runs" / f"split{n}" / "temporal_mean" /
                         "scores_test.npz")
        assert sf.meta["split"] == f"ucf101 split {n} test"
        tests[n] = {v.rsplit("_g", 1)[1][:2] for v in sf.video_ids}  # the test groups
    assert tests == {1: {"01"}, 2: {"02"}, 3: {"03"}}  # group-disjoint test sets
    summary = pd.read_csv(out / "table.csv")
    assert summary.method.tolist() == per_split[1].method.tolist()
    for i, row in summary.iterrows():
        top1 = [per_split[n].top1[i] for n in (1, 2, 3)]
        assert [row[f"split{n} top1"] for n in (1, 2, 3)] == top1
        assert abs(row.top1_mean - sum(top1) / 3) < 0.01
    streams = pd.read_csv(out / "streams.csv")
    assert streams[["stream", "consensus"]].values.tolist() == [["spatial", "mean"],
                                                                 ["temporal", "mean"]]
    readme = (out / "README.md").read_text()
    assert "over the splits" in readme and "[split3](split3/README.md)" in readme


def test_hmdb51_tsn_preset_on_the_official_splits(fixtures, tmp_path):
    """--preset tsn --dataset hmdb51: MMAction2 0.x's HMDB51 TSN values for the RGB stream, the
    TSN flow recipe for the temporal one, on each official split."""
    from two_stream.data.build import load_split
    from two_stream.data.splits import group_of, holdout_split
    split_dir = fixtures / "hmdb51_splits"
    args = suite.get_args_parser().parse_args(
        ["--dataset", "hmdb51", "--preset", "tsn", "--split-dir", str(split_dir),
         "--frames", str(tmp_path), "--split", "all"])
    preset = recipes.preset_for(args.preset, args.dataset)

    def configs(stream: str, split: int, preset: dict = preset):
        return recipes.stream_configs(stream, "mean", preset=preset, dataset=args.dataset,
                                      split=split, split_dir=split_dir, frames=tmp_path,
                                      work=tmp_path, seed=0, data_seed=args.data_seed)
    rgb = configs("spatial", 2)
    assert (rgb.model.arch, rgb.model.weights, rgb.model.partial_bn,
            rgb.model.dropout) == ("resnet50", "imagenet", False, 0.4)
    assert (rgb.clip.num_segments, rgb.clip.test_segments, rgb.clip.test_crops) == (
        8, 8, 1)
    o = rgb.optim
    assert (o.lr, o.momentum, o.weight_decay, o.epochs, tuple(o.milestones), o.clip_grad) == (
        0.025, 0.9, 1e-4, 50, (20, 40), 20.0)
    flow = configs("temporal", 2)
    assert (flow.model.arch, flow.optim.lr, flow.clip.new_length,
            flow.clip.num_segments) == ("resnet50", 0.005, 5, 3)
    # UCF101's preset is untouched
    ucf = configs("spatial", 1, recipes.preset_for("tsn", "ucf101"))
    assert (ucf.model.arch, ucf.clip.num_segments) == ("resnet101", 3)
    for n in recipes.parse_splits(args.split):
        d = configs("spatial", n).data
        assert (d.dataset, d.split, d.val_ratio) == ("hmdb51", n, 0.1)
        split = load_split(d)
        assert (len(split.train), len(split.test), len(split.classes)) == (3570, 1530, 51)
        train, val = holdout_split(split.train, d.val_ratio, d.val_seed)
        assert 0.05 < len(val) / len(split.train) < 0.2
        assert not {group_of(r.video_id) for r in train} & {group_of(r.video_id) for r in val}
