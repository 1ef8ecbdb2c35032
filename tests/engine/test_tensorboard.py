"""TensorBoard: the scalars a training run writes to <run-dir>/tb/ read back with
tensorboard's own event reader and equal log.csv; `on` without tensorboard is a one-line
error; a table written as hparams reads back trial by trial."""
import csv

import pytest

from two_stream import cli
from two_stream.engine import tensorboard as tb
from two_stream.engine.checkpoint import load_checkpoint

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")

def _train(syn, run_dir, *extra):
    return ["train", "--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--run-dir", str(run_dir), "--input-size", "32", "--scale-size", "36",
            "--num-segments", "1", "--batch-size", "4", "--workers", "0", "--val-ratio", "0.3",
            "--quiet", "--device", "cpu", *extra]


def _read(path):
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


@pytest.mark.e2e
def test_training_scalars_read_back_and_equal_log_csv(syn, tmp_path):
    run = tmp_path / "r"
    assert cli.main(_train(syn, run, "--epochs", "2", "--tensorboard", "on",
                           "--log-every", "2")) == 0
    rows = list(csv.DictReader(open(run / "log.csv")))
    acc = _read(run / "tb")
    tags = set(acc.Tags()["scalars"])
    assert {"lr", "train/loss", "train/top1", "val/loss", "val/top1", "speed/samples_per_s",
            "speed/data_wait_share", "train/loss_running"} <= tags
    steps_per_epoch = load_checkpoint(run / "checkpoint_last.pt")["step"] // 2
    assert steps_per_epoch >= 4
    for name, col in (("train/loss", "train_loss"), ("val/top1", "val_top1"), ("lr", "lr")):
        events = acc.Scalars(name)
        assert [e.step for e in events] == [steps_per_epoch, 2 * steps_per_epoch]
        assert [e.value for e in events] == pytest.approx([float(r[col]) for r in rows],
                                                          rel=1e-6)
    running = acc.Scalars("train/loss_running")
    assert [e.step for e in running] == [k * steps_per_epoch + s for k in (0, 1)
                                         for s in range(2, steps_per_epoch + 1, 2)]
    assert all(0 <= e.value <= 1 for e in acc.Scalars("speed/data_wait_share"))
    assert all(e.value > 0 for e in acc.Scalars("speed/samples_per_s"))


@pytest.mark.e2e
def test_off_writes_nothing_and_on_without_tensorboard_is_one_line(syn, tmp_path, capsys,
                                                                    monkeypatch):
    assert cli.main(_train(syn, tmp_path / "off", "--epochs", "1", "--tensorboard",
                           "off")) == 0
    assert not (tmp_path / "off" / "tb").exists()
    monkeypatch.setattr(tb, "tensorboard_installed", lambda: False)
    rc = cli.main(_train(syn, tmp_path / "on", "--epochs", "1", "--tensorboard", "on"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--tensorboard on: the tensorboard package is not installed" in err
    assert "\n" not in err and not (tmp_path / "on" / "checkpoint_last.pt").exists()
    # auto without it trains and writes no events
    assert cli.main(_train(syn, tmp_path / "auto", "--epochs", "1")) == 0
    assert not (tmp_path / "auto" / "tb").exists()


def test_a_table_as_hparams_reads_back(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2
    rows = [{"lr": 0.01, "consensus": "mean", "seed": 0, "top1": 41.5},
            {"lr": 0.1, "consensus": "lstm", "seed": 1, "top1": 12.25}]
    assert tb.write_hparams(tmp_path / "hp", rows, metrics=["top1"]) == 2
    for i, row in enumerate(rows):
        acc = _read(tmp_path / "hp" / f"trial_{i:04d}")
        assert [e.value for e in acc.Scalars("hparam/top1")] == [row["top1"]]
        content = acc.PluginTagToContent("hparams")
        start = next(plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info
                     for t, c in content.items() if t.endswith("session_start_info"))
        assert start.hparams["lr"].number_value == row["lr"]
        assert start.hparams["consensus"].string_value == row["consensus"]
    with pytest.raises(Exception, match=r"metric columns \['top5'\]"):
        tb.write_hparams(tmp_path / "bad", rows, metrics=["top5"])
