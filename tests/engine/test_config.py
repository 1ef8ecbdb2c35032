"""`Config`: config.json written before the dataclass still loads with the same values, a run
saved that way resumes and evaluates, and `fit` never changes its caller's config."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from flow_tools.errors import UserError
from two_stream import cli
from two_stream.config import CONCERNS, Config, RunConfig
from two_stream.engine.checkpoint import load_checkpoint, save_checkpoint
from two_stream.engine.train import fit

OLD = Path(__file__).with_name("config_before_config_class.json")
def test_a_config_json_written_before_config_loads_with_its_values():
    """The file the code before `Config` wrote (commit cba3cc9): every section and field comes
    back with its value; fields added since only in `run`, at their defaults."""
    old = json.loads(OLD.read_text())
    cfg = Config.from_dict(old, source=str(OLD))
    new = cfg.to_dict()
    assert list(new) == list(CONCERNS)
    for concern in CONCERNS:
        for k, v in old[concern].items():
            assert new[concern][k] == (tuple(v) if isinstance(v, list) else v), (concern, k)
        added = set(new[concern]) - set(old[concern])
        assert concern == "run" or not added, (concern, added)
        for k in added:
            assert new["run"][k] == getattr(RunConfig(), k)
    assert json.loads(json.dumps(new)) == {k: {**old[k], **{a: new[k][a] for a in
                                                            set(new[k]) - set(old[k])}}
                                           for k in CONCERNS}


def test_unknown_fields_name_the_file():
    old = json.loads(OLD.read_text())
    old["optim"]["learning_rate"] = 0.1
    with pytest.raises(UserError, match=r"x/config.json: unknown optim fields \['learning_rate'\]"):
        Config.from_dict(old, source="x/config.json")


@pytest.mark.e2e
def test_fit_leaves_the_callers_config_alone_and_old_runs_resume(syn, tmp_path):
    """fit leaves the caller's Config as it was (the dict of before used to get the split's
    class count written into it). A run whose config.json and
    checkpoint hold the sections as written before `Config` resumes and evaluates."""
    argv = ["--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--run-dir", str(tmp_path / "r"), "--input-size", "32", "--scale-size", "36",
            "--num-segments", "1", "--test-segments", "2", "--batch-size", "4", "--workers",
            "0", "--val-ratio", "0", "--quiet", "--device", "cpu"]
    args = cli.parse(["train", *argv, "--epochs", "1"], "spatial", "rgb")
    from two_stream.config import config_from_args
    cfg = config_from_args(args)
    before = cfg.to_dict()
    run = fit(cfg)
    assert cfg.to_dict() == before and cfg.model.num_classes == 101  # the default, untouched
    assert json.loads((run / "config.json").read_text())["model"]["num_classes"] == 12
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = None
    # the run as the code before Config left it: config sections without the run fields
    # added since
    old_run = json.loads(OLD.read_text())["run"]
    for path in (run / "checkpoint_last.pt", run / "checkpoint_best.pt"):
        ck = load_checkpoint(path)
        ck["config"]["run"] = {k: v for k, v in ck["config"]["run"].items() if k in old_run}
        save_checkpoint(path, ck)
    saved = json.loads((run / "config.json").read_text())
    saved["run"] = {k: v for k, v in saved["run"].items() if k in old_run}
    (run / "config.json").write_text(json.dumps(saved))
    assert cli.main(["train", *argv, "--epochs", "2", "--resume"]) == 0
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 2
    assert cli.main(["evaluate", "--run-dir", str(run), "--device", "cpu", "--quiet"]) == 0
    assert (run / "scores_test.npz").exists()
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["config"]["run"]["seed"] == 0
