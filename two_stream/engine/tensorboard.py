"""TensorBoard scalars of a training run in `<run_dir>/tb/`, and a sweep's table as hparams.

Optional: `tensorboard` is an extra. `--tensorboard auto` writes when it is installed, `on`
without it is a user error, `off` never writes. log.csv stays the record; these files are for
watching a run. The x axis is the optimizer step, so a resumed run's events continue the
same curves (events a killed run wrote after its last checkpoint are purged on resume).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import UserError


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _writer(log_dir: Path, purge_step: int | None = None):
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class Board:
    """The run's scalar writer: `epoch` once per epoch, `step_loss` every log interval."""

    def __init__(self, log_dir: Path, start_step: int = 0):
        # purge_step: TensorBoard drops earlier events from this step on: a resumed run's
        # from a killed run past its checkpoint, all of them for a run started afresh
        self.writer = _writer(log_dir, purge_step=start_step)

    def step_loss(self, step: int, loss: float) -> None:
        self.writer.add_scalar("train/loss_running", loss, step)

    def epoch(self, row: dict, step: int) -> None:
        """`row`: the epoch's log.csv row plus `train_samples` and `train_time` (seconds)."""
        w = self.writer
        w.add_scalar("epoch", row["epoch"], step)
        w.add_scalar("lr", row["lr"], step)
        for split in ("train", "val"):
            for k in ("loss", "top1", "top5"):
                if f"{split}_{k}" in row:
                    w.add_scalar(f"{split}/{k}", row[f"{split}_{k}"], step)
        if row.get("train_time"):
            w.add_scalar("speed/samples_per_s", row["train_samples"] / row["train_time"], step)
        if row.get("batch_time"):
            w.add_scalar("speed/data_wait_share", row["data_time"] / row["batch_time"], step)
        w.flush()

    def close(self) -> None:
        self.writer.close()


def wants_board(mode: str) -> bool:
    """Whether `--tensorboard MODE` writes events; `on` without tensorboard is a UserError
    (checked before any work, on every rank)."""
    if mode not in ("auto", "on", "off"):
        raise UserError(f"--tensorboard {mode!r}: expected auto, on or off")
    if mode == "on" and not tensorboard_installed():
        raise UserError("--tensorboard on: the tensorboard package is not installed "
                        "(pip install 'two-stream[tensorboard]', or --tensorboard off)")
    return mode == "on" or (mode == "auto" and tensorboard_installed())


def write_hparams(log_dir: str | Path, rows: Sequence[Mapping], metrics: Sequence[str]) -> int:
    """A table as TensorBoard hparams under `log_dir` (its HPARAMS tab): each row is one
    trial, its `metrics` columns the results and every other column a hyperparameter (values
    that are not numbers, strings or booleans are written as strings; None as ""). Returns
    the number of trials written. Needs tensorboard (a UserError without it)."""
    if not tensorboard_installed():
        raise UserError("hparams need the tensorboard package (pip install "
                        "'two-stream[tensorboard]')")
    missing = [m for m in metrics if rows and m not in rows[0]]
    if missing:
        raise UserError(f"hparams: metric columns {missing} not in the table")
    for i, row in enumerate(rows):
        hp = {k: _plain(v) for k, v in row.items() if k not in metrics}
        values = {f"hparam/{m}": float(row[m]) for m in metrics}
        w = _writer(Path(log_dir) / f"trial_{i:04d}")
        w.add_hparams(hp, values, run_name=".")
        w.close()
    return len(rows)


def _plain(v):
    if v is None:
        return ""
    return v if isinstance(v, (bool, int, float, str)) else str(v)
