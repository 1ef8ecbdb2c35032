"""two_stream.recipes: presets resolved into stream configs from explicit arguments, and the
train-or-reuse decision (a check that only reads; a step that clears runs of other settings)."""
import dataclasses
from pathlib import Path

import pytest

from two_stream import recipes
from two_stream.config import Config
from two_stream.engine.checkpoint import save_checkpoint
from two_stream.errors import UserError


def _configs(tmp_path: Path, stream="temporal", consensus="mean", **kw) -> Config:
    args = dict(preset=recipes.preset_for("cpu-demo", "synthetic"), dataset="synthetic",
                split=2, split_dir=tmp_path / "splits", frames=tmp_path / "frames",
                work=tmp_path / "work", seed=7, data_seed=3)
    return recipes.stream_configs(stream, consensus, **{**args, **kw})


def test_stream_configs_take_their_values_as_arguments(tmp_path):
    c = _configs(tmp_path, overrides=recipes.Overrides(arch="resnet34", input_size=112,
                                                       epochs=2))
    assert (c.run.seed, c.data.val_seed, c.data.split) == (7, 3, 2)
    assert c.data.dataset == "ucf101"  # the synthetic set is written as UCF101 lists
    assert c.run.run_dir == str(tmp_path / "work" / "runs" / "split2" / "temporal_mean")
    assert (c.model.arch, c.optim.epochs) == ("resnet34", 2)
    assert (c.clip.input_size, c.clip.scale_size) == (112, 128)  # TSN's 224 : 256
    assert (c.clip.modality, c.clip.new_length, c.model.new_length) == ("flow", 5, 5)
    plain = _configs(tmp_path)
    assert (plain.model.arch, plain.clip.input_size, plain.clip.scale_size) == (
        "resnet18", 64, 72)  # the preset's values when nothing is overridden
    lstm = _configs(tmp_path, stream="spatial", consensus="lstm")
    assert lstm.model.freeze_backbone and lstm.model.weights == str(
        tmp_path / "work" / "runs" / "split2" / "spatial_mean" / "checkpoint_best.pt")


def test_overrides_from_args_reads_only_the_override_flags():
    import argparse
    p = argparse.ArgumentParser()
    recipes.add_recipe_args(p)
    args = p.parse_args(["--epochs", "3", "--num-segments", "5"])
    assert recipes.Overrides.from_args(args) == recipes.Overrides(epochs=3, num_segments=5)


@pytest.mark.parametrize("values, message", [(["0"], "numbered from 1"),
                                             (["1", "1"], "each split once"),
                                             (["one"], "give split numbers")])
def test_bad_split_lists(values, message):
    assert recipes.parse_splits(["all"]) == [1, 2, 3]
    with pytest.raises(UserError, match=message):
        recipes.parse_splits(values)


def _fake_run(cfgs: dict, epoch: int) -> Path:
    """A run folder whose last checkpoint was saved with `cfgs` at `epoch`."""
    run_dir = Path(cfgs.run.run_dir)
    run_dir.mkdir(parents=True)
    config = cfgs.to_dict()
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        save_checkpoint(run_dir / name, {"model": {}, "config": config, "classes": [],
                                         "epoch": epoch})
    for name in ("scores_test.npz", "log.csv", "curves.png", "config.json", ".lock"):
        (run_dir / name).write_text("x")
    (run_dir / "tb").mkdir()
    (run_dir / "tb" / "events.out.tfevents.1").write_text("x")
    return run_dir


def test_a_finished_run_of_the_same_settings_is_reused(tmp_path):
    cfgs = _configs(tmp_path, overrides=recipes.Overrides(epochs=2))
    run_dir = _fake_run(cfgs, epoch=2)
    assert recipes.run_finished(run_dir, cfgs)
    assert recipes.reuse_or_clear(run_dir, cfgs)
    assert (run_dir / "checkpoint_last.pt").exists() and (run_dir / "scores_test.npz").exists()


def test_an_unfinished_run_is_kept_for_resuming(tmp_path):
    cfgs = _configs(tmp_path, overrides=recipes.Overrides(epochs=3))
    run_dir = _fake_run(cfgs, epoch=2)
    assert not recipes.run_finished(run_dir, cfgs)
    assert not recipes.reuse_or_clear(run_dir, cfgs)
    assert (run_dir / "checkpoint_last.pt").exists()


def test_the_check_only_reads_and_the_step_clears_other_settings(tmp_path):
    cfgs = _configs(tmp_path)
    run_dir = _fake_run(cfgs, epoch=10)
    other = cfgs.replace(run=dataclasses.replace(cfgs.run, seed=8))
    before = sorted(p.name for p in run_dir.iterdir())
    assert not recipes.run_finished(run_dir, other)
    assert sorted(p.name for p in run_dir.iterdir()) == before  # a check deletes nothing
    assert not recipes.reuse_or_clear(run_dir, other)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "config.json"]
    assert not recipes.run_finished(tmp_path / "nowhere", cfgs)
