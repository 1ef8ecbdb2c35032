"""Extraction as a job array: submitit's LocalExecutor runs each shard in its own subprocess
(the same pickled tasks Slurm would run), with the output of an in-process run, byte for byte;
a rerun submits only what is left; the Slurm script is checked without submitting."""
import shutil
from pathlib import Path

import pytest
import torch

from flow_tools.errors import UserError
from flow_tools.executors import ArrayTaskError, ExecutorOptions
from flow_tools.extract import main
from flow_tools.params import ExtractConfig, FlowParams, TVL1Params
from flow_tools.shards import ShardSettings, run_array
from flow_tools.videos import list_videos
from two_stream.data.synthetic import SyntheticConfig, generate

pytest.importorskip("submitit")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    generate(root, SyntheticConfig(num_groups=2, clips_per_group=1, test_groups=1,
                                   num_frames=6, width=48, height=32), quiet=True)
    return root / "videos"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".submitit" not in p.relative_to(root).parts}


def _submitted(out: Path) -> int:
    return len(list((out / ".submitit").glob("*_submitted.pkl")))


def test_local_array_equals_in_process_run_and_reruns_submit_only_whats_left(
        videos, tmp_path, capsys):
    n = len(list_videos(videos))
    common = ["--algorithm", "dis", "--quiet"]
    assert main([str(videos), str(tmp_path / "ref"), *common]) == 0
    out = tmp_path / "arr"
    array = [str(videos), str(out), *common, "--executor", "local", "--array", "3"]
    assert main(array) == 0
    assert f"3 shard task(s) ran: {n} videos done" in capsys.readouterr().out
    assert _submitted(out) == 3 and list((out / ".submitit").glob("*_log.out"))
    assert _tree(out) == _tree(tmp_path / "ref")
    # all done: a rerun submits nothing
    assert main(array) == 0
    assert "3 of 3 shards complete: nothing to submit" in capsys.readouterr().out
    assert _submitted(out) == 3
    # one video lost: only its shard is submitted again, and the output is whole again
    lost = list_videos(videos)[4]  # shard 4 % 3 = 1
    shutil.rmtree(out / lost[:-4])
    assert main(array) == 0
    assert f"1 shard task(s) ran: 1 videos done, {n - 1} skipped" in capsys.readouterr().out
    assert _submitted(out) == 4
    assert _tree(out) == _tree(tmp_path / "ref")


def test_sbatch_script_for_slurm_without_submitting(videos, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(videos), str(out), "--executor", "slurm",
               "--array", "4", "--partition", "gpu", "--gpus-per-job", "1", "--time", "120",
               "--mem", "16", "--account", "vision", "--slurm-extra=--qos=high",
               "--backend", "torch", "--device", "cpu", "--dry-run"])
    text = capsys.readouterr().out
    assert rc == 0, text
    lines = set(text.splitlines())
    assert "# 0 of 4 shards complete; would submit shards [0, 1, 2, 3]" in lines
    for want in ("#SBATCH --array=0-3%4", "#SBATCH --partition=gpu",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --time=120", "#SBATCH --mem=16GB",
                 "#SBATCH --account=vision", "#SBATCH --qos=high",
                 f"#SBATCH --output={out / '.submitit'}/%A_%a_0_log.out"):
        assert want in lines, want
    assert not list(out.rglob("meta.json"))  # nothing ran


def test_array_option_errors(videos, tmp_path, capsys):
    base = [str(videos), str(tmp_path / "o"), "--algorithm", "dis"]
    cases = [(["--executor", "local"], "--executor local needs --array N"),
             (["--array", "2", "--shard", "0/2"], "give one of the two"),
             (["--array", "0"], "--array must be >= 1")]
    for extra, msg in cases:
        assert main(base + extra) == 2
        assert msg in capsys.readouterr().err
    # a CUDA task must ask for a GPU: a local or Slurm task sees only the GPUs it asks for
    with pytest.raises(UserError, match="needs --gpus-per-job 1"):
        run_array(videos, tmp_path / "o", ExtractConfig(), list_videos(videos), count=2,
                  settings=ShardSettings(device="cuda"),
                  options=ExecutorOptions(executor="slurm"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a task that fails: CUDA absent")
def test_a_failed_task_is_named_with_its_error_and_log(videos, tmp_path):
    """A task that raises (here: asked for CUDA on a machine without it, which only the
    task's own process finds out) is reported with its error line and log, after the
    other tasks ran."""
    cfg = ExtractConfig(flow=FlowParams("tvl1", TVL1Params(nscales=1, warps=1,
                                                           outer_iterations=1),
                                        backend="torch"))
    options = ExecutorOptions(executor="local", folder=tmp_path / "sub", gpus_per_job=1)
    with pytest.raises(ArrayTaskError, match=r"2 of 2 array task\(s\) failed:\n  task 0 \(job "
                                             r"\d+\): flow_tools.errors.UserError: --device "
                                             r"cuda:0: CUDA is not available"):
        run_array(videos, tmp_path / "out", cfg, list_videos(videos)[:2], count=2,
                  settings=ShardSettings(device="cuda:0"), options=options)
