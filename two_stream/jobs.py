"""Training runs as job arrays: the suite's streams x splits and a sweep's cells x seeds,
trained in parallel as local subprocesses or Slurm array tasks (`--executor local|slurm`,
through `flow_tools.executors`), or here one after another (`inprocess`, the default).

A run is submitted only when it is not done (`run_done`: a finished run of the same settings
with current score files), so a rerun after a kill, a timeout or a partial array submits only
the rest. Runs that start from another run's checkpoint (an LSTM head on the frozen CNN of the
`mean` run) go in a later wave, submitted when the earlier one has finished.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flow_tools.executors import ExecutorOptions, options_from_args, sbatch_text, submit_array

from .config import Config
from .engine.checkpoint import load_checkpoint
from .recipes import StreamRun, run_finished, scores_current, train_and_score

log = logging.getLogger("two_stream.jobs")


@dataclass(frozen=True)
class TrainJob:
    """One run to train and score: its config and its stream's name (picklable, so it can
    travel to a subprocess or a Slurm node)."""
    cfg: Config
    stream: str

    @property
    def run_dir(self) -> str:
        return self.cfg.run.run_dir


def run_done(cfg: Config) -> bool:
    """Nothing left to do for this run: finished with these settings, and the score files of
    its best checkpoint under this test protocol exist (reads only)."""
    run_dir = Path(cfg.run.run_dir)
    best = run_dir / "checkpoint_best.pt"
    if not run_finished(run_dir, cfg) or not best.exists():
        return False
    epoch = load_checkpoint(best)["epoch"]
    splits = ("val", "test") if cfg.data.val_ratio > 0 else ("test",)
    return all(scores_current(run_dir / f"scores_{s}.npz", epoch, cfg.clip) for s in splits)


def training_options(args: argparse.Namespace, *, folder: Path, job_name: str
                     ) -> ExecutorOptions:
    """The executor flags as options for training jobs: a job with several GPUs runs one task
    per GPU, which `train_job` joins into one DDP run."""
    options = options_from_args(args, folder=folder, job_name=job_name)
    return dataclasses.replace(options, tasks_per_job=max(1, options.gpus_per_job))


def _distributed_from_job() -> None:
    """A job with several tasks (one per GPU) is one DDP run: export the rendezvous variables
    torch.distributed reads (RANK, WORLD_SIZE, MASTER_ADDR, ...) from Slurm's."""
    if int(os.environ.get("SLURM_NTASKS", os.environ.get("SUBMITIT_LOCAL_NTASKS", "1"))) <= 1:
        return
    import submitit.helpers
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def train_job(job: TrainJob) -> StreamRun:
    """An array task: train (or resume) and score one run."""
    _distributed_from_job()
    return train_and_score(job.cfg, job.stream)


def train_waves(waves: Sequence[Sequence[TrainJob]], options: ExecutorOptions, *,
                dry_run: bool = False) -> dict[str, StreamRun]:
    """Train every wave's runs that are not done, one array per wave, each wave after the
    previous one has finished. Returns what each submitted run did, by run directory (runs
    that were done are left out). `dry_run`: print the first wave's sbatch script and submit
    nothing."""
    done: dict[str, StreamRun] = {}
    for i, wave in enumerate(waves):
        todo = [j for j in wave if not run_done(j.cfg)]
        log.info("wave %d: %d of %d runs to train", i + 1, len(todo), len(wave))
        if dry_run:
            print(sbatch_text(options, max(len(todo), 1)))
            print(f"# --dry-run: wave {i + 1} would submit {len(todo)} of {len(wave)} runs; "
                  "nothing was submitted")
            return done
        if not todo:
            continue
        outcome = submit_array(train_job, todo, options)
        if not options.wait:
            print(f"submitted wave {i + 1} ({len(todo)} runs: jobs {', '.join(outcome.job_ids)}"
                  f"); rerun the same command when they have finished to go on")
            return done
        done.update({j.run_dir: r for j, r in zip(todo, outcome.results)})
    return done
