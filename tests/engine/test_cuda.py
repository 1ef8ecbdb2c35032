"""What only a GPU shows: AMP fp16 (with its gradient scaler) and bf16 training steps,
resume across AMP settings, channels_last reaching the convolutions, `--amp auto` choosing by
compute capability, `--decode gpu` training, and nccl DDP on two GPUs. Skipped without CUDA
(`make gpu-check` counts a skip as a failure)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.layouts import conv_layouts

from two_stream import cli
from two_stream.config import RunConfig
from two_stream.engine.checkpoint import load_checkpoint
from two_stream.engine.settings import amp_settings

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

def _args(syn, run_dir, *extra):
    return ["--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--run-dir", str(run_dir), "--input-size", "64", "--scale-size", "72",
            "--num-segments", "2", "--test-segments", "3", "--batch-size", "8",
            "--workers", "0", "--val-ratio", "0.3", "--quiet", "--device", "cuda", *extra]


@pytest.fixture(autouse=True)
def _cudnn_restored():
    flags = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_training_steps_on_cuda(syn, tmp_path, amp):
    run = tmp_path / amp
    assert cli.main(["train", *_args(syn, run, "--epochs", "1", "--amp", amp)]) == 0
    ck = load_checkpoint(run / "checkpoint_last.pt")
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    if amp == "fp16":
        assert ck["scaler"]["scale"] > 0  # the scaler ran
    else:
        assert ck["scaler"] == {}
    assert cli.main(["evaluate", "--run-dir", str(run), "--amp", amp]) == 0


@pytest.mark.parametrize("first,then", [("bf16", "fp16"), ("off", "fp16"), ("fp16", "bf16"),
                                        ("fp16", "off")])
def test_resume_across_amp_settings(syn, tmp_path, first, then):
    run = tmp_path / "r"
    assert cli.main(["train", *_args(syn, run, "--epochs", "1", "--amp", first)]) == 0
    assert cli.main(["train", *_args(syn, run, "--epochs", "2", "--amp", then,
                                     "--resume")]) == 0
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 2


def test_amp_auto_follows_compute_capability():
    device = torch.device("cuda", torch.cuda.current_device())
    dtype, scaler = amp_settings(RunConfig(amp="auto"), device)
    native = torch.cuda.get_device_capability(device) >= (8, 0)
    assert dtype == (torch.bfloat16 if native else torch.float16) and scaler == (not native)


def test_channels_last_reaches_every_convolution_on_cuda(syn, tmp_path):
    """--channels-last auto is on with CUDA: every k x k convolution of training gets NHWC
    inputs and weights."""
    with conv_layouts() as seen:
        assert cli.main(["train", *_args(syn, tmp_path / "cl", "--epochs", "1")]) == 0
    assert seen and all(i and w for i, w, _ in seen)


def test_gpu_decode_training_on_cuda(syn, tmp_path):
    """--decode gpu with loader workers: nvJPEG decodes each batch after the current stream
    has finished with the previous one."""
    run = tmp_path / "gpu"
    assert cli.main(["train", *_args(syn, run, "--epochs", "2", "--decode", "gpu", "--workers",
                                     "2", "--new-length", "3")],
                    stream="temporal", modality="flow") == 0
    import csv
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert len(rows) == 2 and all(float(r["train_loss"]) > 0 for r in rows)


@pytest.mark.multigpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_nccl_ddp_training_on_two_gpus(syn, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    run = tmp_path / "ddp"
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "two_stream.spatial",
                        "train", *_args(syn, run, "--epochs", "1")],
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = load_checkpoint(run / "checkpoint_last.pt")
    assert ck["epoch"] == 1 and "destroy_process_group" not in r.stderr
