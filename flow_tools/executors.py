"""Run a list of independent tasks as a job array: in this process, as local subprocesses, or
on Slurm, through submitit (the optional `slurm` extra: `pip install .[slurm]`).

One task per item; `fn` and each item are pickled (`fn` must be a module-level function).
`local` runs each task as its own subprocess on this machine, `array_parallelism` at once
(submitit's `LocalExecutor`: the same pickled jobs Slurm would run, so it is how the Slurm path
is tested without a cluster); `slurm` submits one `sbatch --array` whose size is the number of
items.
submitit's logs, pickles and sbatch scripts go under `options.folder`.

Generic on purpose (nothing here knows about videos or training): extraction submits one task
per shard, and the sweep and suite one per run.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from .errors import UserError

log = logging.getLogger("flow_tools.executors")
EXECUTORS = ("inprocess", "local", "slurm")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExecutorOptions:
    """Where and how the tasks run; the Slurm fields are ignored by `inprocess` and `local`
    (except `time_min`, the local tasks' timeout too, and `gpus_per_job`, the GPUs a local
    task sees)."""

    executor: str = "inprocess"
    folder: Path = Path(".submitit")  # submitit's logs, pickles and sbatch scripts
    job_name: str = "two-stream"
    partition: str | None = None
    account: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    tasks_per_job: int = 1  # > 1: one process per GPU (DDP), Slurm's ntasks-per-node
    time_min: int = 240
    mem_gb: float | None = None
    slurm_extra: tuple[str, ...] = ()  # further sbatch options: "--qos=high", "constraint=a100"
    array_parallelism: int = 256  # tasks running at once (sbatch --array=0-N%P; local: waves)
    wait: bool = True  # False: submit and return (Slurm keeps running the array)

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise UserError(f"--executor {self.executor!r}: choose from {', '.join(EXECUTORS)}")
        if self.gpus_per_job < 0 or self.tasks_per_job < 1 or self.time_min < 1:
            raise UserError("--gpus-per-job must be >= 0, tasks per job and --time >= 1")


def add_executor_args(p: argparse.ArgumentParser, *, default_time_min: int = 240) -> None:
    """The `--executor` flags, the same on every command that submits arrays."""
    g = p.add_argument_group("job arrays (submitit; the `slurm` extra)")
    g.add_argument("--executor", choices=EXECUTORS, default="inprocess",
                   help="inprocess: run here; local: one subprocess per task on this machine; "
                        "slurm: one sbatch array task per item")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--account", help="Slurm account")
    g.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per array task")
    g.add_argument("--cpus-per-job", type=int, help="CPUs per array task (Slurm)")
    g.add_argument("--time", type=int, default=default_time_min, dest="time_min",
                   metavar="MIN", help="time limit per array task, minutes")
    g.add_argument("--mem", type=float, dest="mem_gb", metavar="GB",
                   help="memory per array task, GB (Slurm)")
    g.add_argument("--slurm-extra", action="append", default=[], metavar="OPT",
                   help="a further sbatch option, e.g. --slurm-extra=--qos=high (repeatable)")
    g.add_argument("--array-parallelism", type=int, default=256,
                   help="array tasks running at once (Slurm; local: tasks per wave)")
    g.add_argument("--no-wait", action="store_true",
                   help="submit and return instead of waiting for the tasks (Slurm); rerun "
                        "the same command later to submit only what is not done")
    g.add_argument("--dry-run", action="store_true",
                   help="print the sbatch script --executor slurm would submit, submit nothing")


def options_from_args(args: argparse.Namespace, folder: Path, job_name: str,
                      cpus_per_job: int | None = None) -> ExecutorOptions:
    """ExecutorOptions from the flags of `add_executor_args`; `cpus_per_job` is the command's
    own default (e.g. its --workers) when the flag is not given."""
    return ExecutorOptions(
        executor=args.executor, folder=Path(folder), job_name=job_name,
        partition=args.partition, account=args.account, gpus_per_job=args.gpus_per_job,
        cpus_per_job=args.cpus_per_job or cpus_per_job, time_min=args.time_min,
        mem_gb=args.mem_gb, slurm_extra=tuple(args.slurm_extra),
        array_parallelism=args.array_parallelism, wait=not args.no_wait)


def _sbatch_extra(lines: Sequence[str]) -> dict[str, Any]:
    """`--qos=high` / `qos=high` / `--exclusive` -> submitit's additional_parameters."""
    out: dict[str, Any] = {}
    for line in lines:
        key, eq, value = line.strip().removeprefix("#SBATCH").strip().lstrip("-").partition("=")
        if not key:
            raise UserError(f"--slurm-extra {line!r}: expected an sbatch option like --qos=high")
        out[key.replace("-", "_")] = value if eq else True
    return out


def slurm_parameters(options: ExecutorOptions) -> dict[str, Any]:
    """The parameters given to submitit's SlurmExecutor.update_parameters."""
    params: dict[str, Any] = {
        "job_name": options.job_name, "time": options.time_min,
        "ntasks_per_node": options.tasks_per_job,
        "array_parallelism": options.array_parallelism}
    if options.partition:
        params["partition"] = options.partition
    if options.account:
        params["account"] = options.account
    if options.gpus_per_job:
        params["gpus_per_node"] = options.gpus_per_job
    if options.cpus_per_job:
        params["cpus_per_task"] = options.cpus_per_job
    if options.mem_gb:
        params["mem"] = f"{int(options.mem_gb)}GB" if options.mem_gb == int(options.mem_gb) \
            else f"{int(options.mem_gb * 1024)}MB"
    extra = _sbatch_extra(options.slurm_extra)
    if extra:
        params["additional_parameters"] = extra
    return params


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("--executor local|slurm needs submitit: pip install 'two-stream[slurm]' "
                        "(or pip install submitit)") from None
    return submitit


def submitit_errors():
    """submitit's job-failure exception types (`FailedJobError`, `UncompletedJobError`)."""
    _submitit()
    from submitit.core import utils
    return utils


def _executor(options: ExecutorOptions):
    submitit = _submitit()
    if options.executor == "local":
        ex = submitit.LocalExecutor(folder=options.folder)
        ex.update_parameters(timeout_min=options.time_min, gpus_per_node=options.gpus_per_job,
                             tasks_per_node=options.tasks_per_job)
        return ex
    try:
        ex = submitit.SlurmExecutor(folder=options.folder)
    except RuntimeError as e:  # no srun on this machine
        raise UserError(f"--executor slurm: {e} (--dry-run prints the script instead)") from None
    ex.update_parameters(**slurm_parameters(options))
    return ex


def sbatch_text(options: ExecutorOptions, n_tasks: int) -> str:
    """The sbatch script `--executor slurm` submits for an array of `n_tasks`, rendered by
    submitit itself without submitting (and without srun on this machine)."""
    submitit = _submitit()

    class _Render(submitit.SlurmExecutor):  # only renders: the srun check is for submitting
        @classmethod
        def affinity(cls) -> int:
            return 2

    ex = _Render(folder=options.folder)
    ex.update_parameters(**slurm_parameters(options))
    if n_tasks > 1:
        ex.parameters["map_count"] = n_tasks  # what submitit sets for an array
    return ex._make_submission_file_text(ex._submitit_command_str, "render")


@dataclass
class ArrayOutcome:
    """What one submitted array did: its job ids, and the results of finished tasks."""

    job_ids: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # in item order; empty when not waited


def _last_error_line(message: str) -> str:
    """The task's own exception line out of submitit's wrapped traceback."""
    lines = [ln for ln in message.split("You can check full logs")[0].splitlines()
             if ln.strip() and not ln.startswith(("-", " "))]
    return lines[-1] if lines else message.strip().splitlines()[0]


class ArrayTaskError(RuntimeError):
    """One or more array tasks raised (a bug, not a bad input): their log files are named."""


def submit_array(fn: Callable[[T], R], items: Sequence[T], options: ExecutorOptions
                 ) -> ArrayOutcome:
    """Run `fn(item)` for each item as one task of an array (see the module doc).

    `inprocess` calls them here, in order. Otherwise waits for every task (unless
    `options.wait` is False) and returns their results in item order; tasks that raised are
    reported together, with their log files, after all have ended.
    """
    if options.executor == "inprocess":
        return ArrayOutcome(results=[fn(item) for item in items])
    if not items:
        return ArrayOutcome()
    Path(options.folder).mkdir(parents=True, exist_ok=True)
    ex = _executor(options)
    # Slurm runs at most array_parallelism at once by itself; local tasks go in waves of it
    wave = len(items) if options.executor == "slurm" or not options.wait \
        else max(options.array_parallelism, 1)
    jobs = []
    for start in range(0, len(items), wave):
        with ex.batch():
            new = [ex.submit(fn, item) for item in items[start:start + wave]]
        jobs += new
        if start + wave < len(items):
            for job in new:
                job.wait()
    ids = [j.job_id for j in jobs]
    log.info("submitted %d %s task(s) (%s); logs under %s", len(jobs), options.executor,
             ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}", options.folder)
    if not options.wait:
        return ArrayOutcome(job_ids=ids)
    task_errors = (submitit_errors().FailedJobError, submitit_errors().UncompletedJobError)
    results, failed = [], []
    for i, job in enumerate(jobs):
        try:
            results.append(job.result())
        except task_errors as e:  # wait for every task before reporting
            failed.append(f"task {i} (job {job.job_id}): {_last_error_line(str(e))} "
                          f"(log: {job.paths.stderr})")
            results.append(None)
    if failed:
        raise ArrayTaskError(f"{len(failed)} of {len(jobs)} array task(s) failed:\n  "
                             + "\n  ".join(failed))
    return ArrayOutcome(job_ids=ids, results=results)
