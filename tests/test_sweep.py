"""benchmarks/sweep.py on a tiny synthetic set: two cells x two seeds, resumable by identity."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import sweep
from two_stream.engine.checkpoint import load_checkpoint

TINY = ["--synthetic-groups", "3", "--synthetic-clips-per-group", "2", "--synthetic-frames",
        "12", "--epochs", "1", "--input-size", "32", "--quiet"]


def _argv(root: Path) -> list[str]:
    return ["--name", "s", "--work-dir", str(root / "work"), "--results-root",
            str(root / "results"), *TINY, "--grid", "model.consensus=mean,lstm",
            "--set", "model.lstm_hidden=16", "--seeds", "0", "1"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The sweep in this process, on one thread (as the local jobs below run), and a copy of
    its first tables (later tests rerun it with other settings)."""
    root = tmp_path_factory.mktemp("sweep")
    argv = _argv(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert sweep.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    shutil.copytree(root / "results" / "s", root / "first")
    return root, argv


@pytest.mark.e2e
def test_a_two_cell_two_seed_sweep_writes_its_table(swept):
    root, _ = swept
    out = root / "results" / "s"
    runs = pd.read_csv(out / "runs.csv")
    table = pd.read_csv(out / "table.csv")
    assert sorted(zip(runs["model.consensus"], runs.seed)) == [
        ("lstm", 0), ("lstm", 1), ("mean", 0), ("mean", 1)]
    assert runs.trained_now.all()
    for _, row in table.iterrows():
        top1 = runs[runs["model.consensus"] == row["model.consensus"]].top1
        assert row.seeds == 2
        assert row.top1_mean == pytest.approx(top1.mean(), abs=0.01)
        assert row.top1_sd == pytest.approx(top1.std(ddof=1), abs=0.01)
        assert (row.top1_min, row.top1_max) == (round(top1.min(), 2), round(top1.max(), 2))
    assert (out / "top1_by_consensus.png").stat().st_size > 1000
    assert len(pd.read_csv(out / "pairs.csv")) == 1
    info = json.loads((out / "run.json").read_text())
    assert info["grid"] == {"model.consensus": ["mean", "lstm"]} and info["trained_now"] == 4


@pytest.mark.e2e
def test_the_table_reads_back_as_tensorboard_hparams(swept):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    root, _ = swept
    table = pd.read_csv(root / "first" / "table.csv")
    trials = sorted((root / "work" / "sweeps" / "s" / sweep.HPARAMS_DIR).iterdir())
    assert len(trials) == len(table) == 2
    for trial, (_, row) in zip(trials, table.iterrows()):
        acc = accumulator.EventAccumulator(str(trial))
        acc.Reload()
        assert [e.value for e in acc.Scalars("hparam/top1_mean")] == pytest.approx(
            [row.top1_mean])
        from tensorboard.plugins.hparams import plugin_data_pb2
        start = next(plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info
                     for t, c in acc.PluginTagToContent("hparams").items()
                     if t.endswith("session_start_info"))
        assert start.hparams["model.consensus"].string_value == row["model.consensus"]
        assert start.hparams["seeds"].number_value == 2


@pytest.mark.e2e
def test_each_seed_is_its_own_run_on_one_split(swept):
    root, _ = swept
    base = root / "work" / "sweeps" / "s"
    cks = {s: load_checkpoint(base / "model.consensus=mean" / f"seed{s}" / "checkpoint_last.pt")
           for s in (0, 1)}
    assert [cks[s]["config"]["run"]["seed"] for s in (0, 1)] == [0, 1]
    assert cks[0]["config"]["data"]["val_seed"] == cks[1]["config"]["data"]["val_seed"] == 0
    w0, w1 = (cks[s]["model"]["backbone.conv1.weight"] for s in (0, 1))
    assert not np.allclose(w0.numpy(), w1.numpy())  # another initialisation
    # the LSTM cell freezes the same seed's mean cell, named by its digest
    lstm = load_checkpoint(base / "model.consensus=lstm" / "seed1" / "checkpoint_last.pt")
    assert lstm["config"]["model"]["weights"].endswith("model.consensus=mean/seed1/"
                                                       "checkpoint_best.pt")
    assert lstm["config"]["model"]["freeze_backbone"] and lstm["weights_sha256"]


@pytest.mark.e2e
def test_rerun_trains_nothing_and_a_changed_setting_trains_again(swept, capsys):
    root, argv = swept
    assert sweep.main(argv) == 0
    runs = pd.read_csv(root / "results" / "s" / "runs.csv")
    assert not runs.trained_now.any()
    # another lstm size: the lstm cells train again, the mean cells (their CNN) do not
    argv2 = [a if a != "model.lstm_hidden=16" else "model.lstm_hidden=8" for a in argv]
    assert sweep.main(argv2) == 0
    runs = pd.read_csv(root / "results" / "s" / "runs.csv")
    assert dict(zip(runs["model.consensus"] + runs.seed.astype(str), runs.trained_now)) == {
        "mean0": False, "mean1": False, "lstm0": True, "lstm1": True}


@pytest.mark.e2e
def test_local_jobs_equal_the_in_process_sweep_and_a_rerun_submits_nothing(
        swept, tmp_path, monkeypatch, capsys):
    """--executor local: every cell x seed a real subprocess (submitit's LocalExecutor, the
    jobs Slurm would run), the LSTM cells in a second wave; same numbers as in-process."""
    root, _ = swept
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs' torch threads, as in-process
    argv = [*_argv(tmp_path), "--executor", "local"]
    assert sweep.main(argv) == 0
    assert "4 of 4 runs trained as local jobs" in capsys.readouterr().out
    for name in ("table.csv", "pairs.csv"):
        assert (tmp_path / "results" / "s" / name).read_text() == (
            root / "first" / name).read_text(), name
    runs = pd.read_csv(tmp_path / "results" / "s" / "runs.csv")
    ref = pd.read_csv(root / "first" / "runs.csv")
    cols = ["model.consensus", "seed", "top1", "top5", "mean_class_acc", "val_top1"]
    pd.testing.assert_frame_equal(runs[cols], ref[cols])
    assert runs.trained_now.all()
    logs = tmp_path / "work" / "submitit" / "s"
    jobs = sorted(p.name for p in logs.iterdir())
    assert len([p for p in logs.glob("*_log.out")]) == 4  # one job per cell x seed
    # a rerun finds every run done: nothing is submitted
    assert sweep.main(argv) == 0
    assert "0 of 4 runs trained as local jobs" in capsys.readouterr().out
    assert sorted(p.name for p in logs.iterdir()) == jobs
    assert not pd.read_csv(tmp_path / "results" / "s" / "runs.csv").trained_now.any()


@pytest.mark.e2e
def test_dry_run_prints_the_sbatch_script_of_what_is_not_done(swept, capsys):
    root, argv = swept
    seeds = argv.index("--seeds")
    argv = [*argv[:seeds], "--seeds", "0", "1", "2", "3", "--executor", "slurm",
            "--partition", "gpu", "--gpus-per-job", "2", "--time", "30", "--dry-run"]
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    lines = set(out.splitlines())
    for want in ("#SBATCH --array=0-1%2", "#SBATCH --partition=gpu",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --time=30"):
        assert want in lines, want
    assert "wave 1 would submit 2 of 4 runs" in out  # seeds 0 and 1 of the mean cell are done
    assert not (root / "work" / "sweeps" / "s" / "model.consensus=mean" / "seed2").exists()


@pytest.mark.parametrize("grid, message", [
    (["optim.lrr=0.1,0.2"], "unknown key 'optim.lrr': optim has"),
    (["model.consensus=mean,mean"], "a value is repeated"),
    (["optim.lr=fast"], "optim.lr='fast': not a float"),
    (["flow.algorithm=raft"], "choose from"),
    (["run.seed=1,2"], "run.seed is set by the stream"),
    (["clip.num_segments"], "expected KEY=V1,V2"),
])
def test_bad_grid_is_a_one_line_error(tmp_path, capsys, grid, message):
    rc = sweep.main(["--name", "x", "--work-dir", str(tmp_path), "--results-root",
                     str(tmp_path), *TINY, "--grid", *grid])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and "\n" not in err
    assert not (tmp_path / "x").exists()
