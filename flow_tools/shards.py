"""Extraction as a job array: one task per shard (`--executor local|slurm --array N`).

Each task runs the `--shard I/N` code path in its own process (`extract_all` on every N-th
video from I), so the resume rules, the layout and the per-shard failures files are those of
shards started by hand. Only shards with a video not complete (meta.json with the same
parameters) are submitted, so rerunning the same command after a partial run, a requeue or a
kill submits just what is left, and nothing once all is done.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import UserError
from .executors import ExecutorOptions, sbatch_text, submit_array
from .extraction import Summary, extract_all, failures_path, pending
from .params import ExtractConfig
from .videos import shard

log = logging.getLogger("flow_tools.shards")
SUBMITIT_DIR = ".submitit"  # under the output folder: submitit's logs, pickles, sbatch scripts


@dataclass(frozen=True)
class ShardSettings:
    """How each task extracts (the same for all shards; see `extract_all`)."""

    workers: int = 1
    overwrite: bool = False
    device: str = "cpu"
    batch_pairs: int | str = 16
    memory_budget_gb: float | None = None
    flow_compile: str = "off"


@dataclass(frozen=True)
class ShardTask:
    """One array task: shard `index` of `count` of the video list."""

    video_root: str
    out_root: str
    cfg: ExtractConfig
    rels: tuple[str, ...]
    index: int
    count: int
    settings: ShardSettings = ShardSettings()

    @property
    def spec(self) -> str:
        return f"{self.index}/{self.count}"


def run_shard(task: ShardTask) -> Summary:
    """The body of one array task (runs in the task's process)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = task.settings
    return extract_all(task.video_root, task.out_root, task.cfg, list(task.rels),
                       shard_spec=task.spec, quiet=True,
                       **{f.name: getattr(s, f.name) for f in fields(s)})


def shard_tasks(video_root: Path, out_root: Path, cfg: ExtractConfig, rels: list[str],
                count: int, settings: ShardSettings) -> list[ShardTask]:
    """The tasks of the shards that still have a video to extract."""
    if count < 1:
        raise UserError(f"--array must be >= 1, got {count}")
    tasks = []
    for i in range(count):
        part = shard(rels, f"{i}/{count}")
        if part and pending(out_root, part, cfg, settings.overwrite):
            tasks.append(ShardTask(str(video_root), str(out_root), cfg, tuple(part), i, count,
                                   settings))
    return tasks


@dataclass
class ArrayRun:
    """What `run_array` did: shards submitted (of `count`), their summed summary when waited
    for, the failures files they wrote, the job ids, the sbatch script of a dry run."""

    count: int
    submitted: list[int]
    summary: Summary | None = None
    failure_files: list[Path] | None = None
    job_ids: list[str] | None = None
    script: str | None = None


def run_array(video_root: Path, out_root: Path, cfg: ExtractConfig, rels: list[str], *,
              count: int, settings: ShardSettings, options: ExecutorOptions,
              dry_run: bool = False) -> ArrayRun:
    """Submit one task per unfinished shard of `rels` and (unless `options.wait` is False)
    wait for them. `dry_run`: only render the sbatch script (Slurm) of what would be
    submitted."""
    if settings.device.startswith("cuda") and options.executor != "inprocess" \
            and options.gpus_per_job < 1:
        raise UserError(f"--device {settings.device} with --executor {options.executor} needs "
                        "--gpus-per-job 1 (or more): a task sees only the GPUs it asks for")
    out_root.mkdir(parents=True, exist_ok=True)
    tasks = shard_tasks(video_root, out_root, cfg, rels, count, settings)
    run = ArrayRun(count, [t.index for t in tasks])
    if dry_run:
        run.script = sbatch_text(options, max(len(tasks), 1))
        return run
    if not tasks:
        return run
    start = time.perf_counter()
    outcome = submit_array(run_shard, tasks, options)
    run.job_ids = outcome.job_ids
    if outcome.results:
        total = Summary()
        for s in outcome.results:
            for f in fields(Summary):
                if f.name != "seconds":
                    setattr(total, f.name, getattr(total, f.name) + getattr(s, f.name))
        total.skipped += len(rels) - sum(len(t.rels) for t in tasks)  # shards all done
        total.seconds = time.perf_counter() - start
        run.summary = total
        run.failure_files = [p for t in tasks
                             if (p := failures_path(out_root, t.spec)).exists()]
    return run
