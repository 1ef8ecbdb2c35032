"""The training log of a run directory: `log.csv` (one row per epoch, the record),
`curves.png` drawn from it, and the one-line summary per epoch on the console."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from ..atomic import atomic_path, atomic_replace

log = logging.getLogger("two_stream.train")

LOG_FIELDS = ["epoch", "lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
              "val_top5", "data_time", "batch_time", "epoch_time"]


def append_log(run_dir: Path, row: dict) -> None:
    """Add an epoch's row to log.csv, dropping rows of this epoch or later (a resumed run
    rewrites what the killed one logged after its last checkpoint)."""
    path = run_dir / "log.csv"
    rows = []
    if path.exists():
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
    rows.append({k: row.get(k, "") for k in LOG_FIELDS})
    tmp = atomic_path(path)
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
    atomic_replace(tmp, path)


def plot_curves(run_dir: Path) -> None:
    """curves.png from log.csv: losses and top-1 per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    df = pd.read_csv(run_dir / "log.csv")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(df.epoch, df.train_loss, label="train")
    b.plot(df.epoch, df.train_top1, label="train")
    if df.val_loss.notna().any():
        a.plot(df.epoch, df.val_loss, label="validation")
        b.plot(df.epoch, df.val_top1, label="validation")
    a.set(xlabel="epoch", ylabel="loss")
    b.set(xlabel="epoch", ylabel="top-1", ylim=(0, 1))
    a.legend()
    b.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    tmp = atomic_path(run_dir / "curves.png")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    atomic_replace(tmp, run_dir / "curves.png")


def log_epoch(row: dict) -> None:
    """The console line of an epoch."""
    log.info("epoch %d  lr %.2e  train loss %.3f top1 %.3f  val loss %s top1 %s  "
             "data %.1fs batch %.1fs", row["epoch"], row["lr"], row["train_loss"],
             row["train_top1"], f"{row['val_loss']:.3f}" if "val_loss" in row else "-",
             f"{row['val_top1']:.3f}" if "val_top1" in row else "-",
             row["data_time"], row["batch_time"])
