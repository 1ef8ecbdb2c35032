import sys

import pytest

from flow_tools.errors import UserError
from flow_tools.executors import (
    ArrayTaskError,
    ExecutorOptions,
    sbatch_text,
    slurm_parameters,
    submit_array,
)

pytest.importorskip("submitit")


def test_local_executor_runs_each_item_in_its_own_process(tmp_path):
    # builtins pickle by reference, so the subprocesses need nothing of the tests
    opts = ExecutorOptions(executor="local", folder=tmp_path / "sub", time_min=5,
                           array_parallelism=2)  # two waves: 2 tasks, then 1
    out = submit_array(abs, [-3, 4, -5], opts)
    assert out.results == [3, 4, 5]
    assert len(set(out.job_ids)) == 3  # three subprocesses (their pids)
    assert list((tmp_path / "sub").glob("*_log.out"))  # submitit's logs where we asked


def test_failed_tasks_are_reported_after_all_ran(tmp_path):
    opts = ExecutorOptions(executor="local", folder=tmp_path / "sub", time_min=5)
    with pytest.raises(ArrayTaskError, match=r"1 of 2 array task\(s\) failed:\n  task 1 "
                                             r"\(job \d+\): ValueError: invalid literal"):
        submit_array(int, ["7", "x"], opts)


def test_inprocess_calls_in_order():
    assert submit_array(abs, [-1, 2], ExecutorOptions()).results == [1, 2]


def test_sbatch_script_of_an_array(tmp_path):
    opts = ExecutorOptions(executor="slurm", folder=tmp_path / "sub", partition="gpu",
                           account="lab", gpus_per_job=2, cpus_per_job=8, time_min=90,
                           mem_gb=32, slurm_extra=("--qos=high", "constraint=a100",
                                                   "--exclusive"))
    text = sbatch_text(opts, 64)
    lines = set(text.splitlines())
    for want in ("#SBATCH --array=0-63%64", "#SBATCH --partition=gpu", "#SBATCH --account=lab",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --time=90", "#SBATCH --mem=32GB", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --exclusive"):
        assert want in lines, want
    assert f"#SBATCH --output={tmp_path / 'sub'}/%A_%a_0_log.out" in lines
    assert "-m submitit.core._submit" in text
    # a single task is a plain job, not an array
    assert "--array" not in sbatch_text(opts, 1)


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="--executor 'pbs'"):
        ExecutorOptions(executor="pbs")
    with pytest.raises(UserError, match="--slurm-extra '--'"):
        slurm_parameters(ExecutorOptions(slurm_extra=("--",)))


def test_missing_submitit_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    with pytest.raises(UserError, match=r"needs submitit: pip install 'two-stream\[slurm\]'"):
        submit_array(abs, [1], ExecutorOptions(executor="local", folder=tmp_path))
