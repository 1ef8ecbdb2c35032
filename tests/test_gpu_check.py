"""benchmarks/speed/gpu_check.py: without CUDA it refuses (exit 2, no rows); with --device cpu
--quick the whole script runs end to end, as on a lent GPU machine (no fixtures: clips are
generated), and leaves at most 8 files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.speed.gpu_check import device_kind, main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_says_so_and_makes_no_rows(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_kind_names_the_results_folder():
    assert device_kind(torch.device("cpu")) == "cpu"


@pytest.mark.slow  # 9-11 minutes on the loaded 2-core machine (the budget is generous:
# this checks that every stage runs, not how fast)
def test_cpu_quick_runs_every_stage_end_to_end(tmp_path):
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    p = subprocess.run([sys.executable, "-m", "benchmarks.speed.gpu_check", "--device", "cpu",
                        "--quick", "--budget-s", "1800", "--out", str(out), "--workers", "1",
                        "--fixtures", str(tmp_path / "no_fixtures"),
                        "--work", str(tmp_path / "work")],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=2400)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = sorted(f.name for f in out.iterdir())
    assert len(files) <= 8, files
    assert {"table.md", "run.json", "tests.txt", "tvl1.csv", "train_speed.csv",
            "eval_speed.csv"} <= set(files)
    run = json.loads((out / "run.json").read_text())
    status = {s["stage"]: s["status"] for s in run["stages"]}
    assert status.pop("data").startswith("ok (8 generated clips")
    assert status == {"tests": "ok", "tvl1": "ok", "train_speed": "ok", "eval_speed": "ok",
                      "flow_speed": "skipped: --quick (the tvl1 stage times the torch path)",
                      "train_precisions": "skipped: --quick (train_speed ran the same code)"}
    tests = next(s for s in run["stages"] if s["stage"] == "tests")
    assert tests["counts"]["passed"] > 0 and not tests["counts"].get("failed")
    train = pd.read_csv(out / "train_speed.csv")
    assert set(train.modality) == {"rgb", "flow"}
    assert (train[["model_only_images_per_s", "pipeline_cpu_images_per_s",
                   "pipeline_gpu_images_per_s"]] > 0).all().all()
    assert (pd.read_csv(out / "eval_speed.csv").filter(like="videos_per_s") > 0).all().all()
    assert pd.read_csv(out / "tvl1.csv").pairs_per_s.iloc[0] > 0
    md = (out / "table.md").read_text()
    assert "TV-L1 (torch, default parameters) at 85x64" in md and "training resnet18" in md
    assert "evaluation 25 x 1 views" in md
