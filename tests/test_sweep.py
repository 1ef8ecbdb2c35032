"""benchmarks/sweep.py on a tiny synthetic set: two cells x two seeds, resumable by identity."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import sweep
from two_stream.engine.checkpoint import load_checkpoint

TINY = ["--synthetic-groups", "3", "--synthetic-clips-per-group", "2", "--synthetic-frames",
        "12", "--epochs", "1", "--input-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    argv = ["--name", "s", "--work-dir", str(root / "work"), "--results-root",
            str(root / "results"), *TINY, "--grid", "model.consensus=mean,lstm",
            "--set", "model.lstm_hidden=16", "--seeds", "0", "1"]
    assert sweep.main(argv) == 0
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
