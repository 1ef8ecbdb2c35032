"""--device parsing, AMP choice, resume across AMP settings, DDP set-up and host syncs: what a
first GPU user would hit, tested on a CPU (CUDA queries are replaced where they are asked)."""
import pytest
import torch
import torch.distributed

from flow_tools.errors import UserError
from two_stream import cli
from two_stream.config import OptimConfig, RunConfig
from two_stream.engine import distributed as dist
from two_stream.engine import settings
from two_stream.engine.checkpoint import load_checkpoint
from two_stream.engine.optim import build_optimizer, build_scheduler
from two_stream.engine.train import train_one_epoch
from two_stream.models.tsn import TSN, ModelConfig


def _train_args(syn, run_dir, *extra):
    return ["train", "--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--run-dir", str(run_dir), "--input-size", "32", "--scale-size", "36",
            "--num-segments", "1", "--batch-size", "4", "--workers", "0", "--epochs", "1",
            "--val-ratio", "0", "--quiet", *extra]


@pytest.fixture
def fake_cuda(monkeypatch):
    """Two visible GPUs as far as device selection asks; set_device calls are recorded."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return calls


@pytest.mark.parametrize("requested,local_rank,expected", [
    ("cuda:1", None, 1),  # the GPU asked for, not LOCAL_RANK's (was: cuda:0)
    ("cuda", "1", 1),
    ("auto", "3", 1),  # a launcher numbering ranks past the visible GPUs: modulo their count
    ("cuda", None, 0),
])
def test_local_device_honours_cuda_n_and_local_rank(fake_cuda, monkeypatch, requested,
                                                      local_rank, expected):
    if local_rank is not None:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert dist.local_device(requested) == torch.device("cuda", expected)
    assert fake_cuda == [expected]


@pytest.mark.parametrize("requested,message", [
    ("gpu", "--device 'gpu': expected auto | cpu | cuda | cuda:N"),
    ("cuda:x", "expected auto | cpu | cuda | cuda:N"),
    ("mps", "expected auto | cpu | cuda | cuda:N"),
])
def test_unknown_device_is_a_user_error(requested, message):
    with pytest.raises(UserError, match=message.replace("|", r"\|")):
        dist.local_device(requested)


def test_train_with_an_unknown_device_is_one_line_exit_2(syn, tmp_path, capsys):
    rc = cli.main(_train_args(syn, tmp_path / "r", "--device", "gpu"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "--device 'gpu'" in err and "\n" not in err
    assert not (tmp_path / "r" / "checkpoint_last.pt").exists()


def test_cuda_n_without_cuda_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        dist.local_device("cuda:1")
    assert dist.local_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("capability,expected", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                 ((9, 0), torch.bfloat16)])
def test_amp_auto_takes_bf16_only_where_native(monkeypatch, capability, expected):
    """A Turing GPU reports is_bf16_supported() (emulated): auto must pick fp16 there."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    dtype, scaler = settings.amp_settings(RunConfig(amp="auto"), torch.device("cuda", 0))
    assert dtype == expected and scaler == (expected == torch.float16)


@pytest.mark.e2e
def test_resume_with_a_gradient_scaler_from_a_run_without_one(syn, tmp_path, monkeypatch):
    """A run saved with bf16 or AMP off has an empty GradScaler state; resuming it with a
    scaler (`--amp fp16`) started the scaler afresh instead of crashing on the empty state.
    On a CPU the fp16 scaler is stood in for by an enabled CPU GradScaler around fp32."""
    run = tmp_path / "r"
    assert cli.main(_train_args(syn, run, "--amp", "off", "--device", "cpu")) == 0
    assert load_checkpoint(run / "checkpoint_last.pt")["scaler"] == {}
    import two_stream.engine.train as train
    monkeypatch.setattr(train, "amp_settings", lambda run, device: (None, True))
    assert cli.main(_train_args(syn, run, "--amp", "off", "--device", "cpu", "--epochs", "2",
                                "--resume")) == 0
    ck = load_checkpoint(run / "checkpoint_last.pt")
    assert ck["epoch"] == 2 and ck["scaler"]["scale"] > 0  # the scaler ran and was saved


def test_process_group_is_bound_to_the_gpu_and_destroyed(monkeypatch):
    """nccl's init_process_group gets the device (device_id: no guessing from the rank), and
    shutdown destroys the group."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    state = {"up": False}
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: state["up"])

    def init(backend, **kw):
        calls.append((backend, kw))
        state["up"] = True
    monkeypatch.setattr(torch.distributed, "init_process_group", init)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "destroy_process_group",
                        lambda: calls.append(("destroy", {})) or state.update(up=False))
    assert dist.init_distributed(torch.device("cuda", 1)) == (1, 2)
    dist.shutdown()
    assert calls == [("nccl", {"device_id": torch.device("cuda", 1)}), ("destroy", {})]


@pytest.mark.parametrize("env,expected", [
    ({}, {}),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, {}),  # the batch script: one process
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}, {}),
    ({"WORLD_SIZE": "2", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2"}, {}),  # torchrun
    ({"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
      "SLURM_STEP_NODELIST": "gpu7,gpu8", "SLURM_JOB_ID": "123"},
     {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu7",
      "MASTER_PORT": "29623"}),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1",
      "SLURM_STEP_NODELIST": "x"}, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}),
])
def test_slurm_step_variables_become_torchrun_variables(env, expected):
    assert dist.slurm_environment(env) == expected


def test_first_host_of_a_slurm_node_list(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no scontrol: the range is expanded by hand
    assert dist.first_host("node[03-05,9],gpu1") == "node03"
    assert dist.first_host("gpu1,gpu2") == "gpu1"


def test_training_steps_read_the_device_once_per_log_interval(monkeypatch):
    """8 steps log nothing until the end of the epoch: loss and hits stay on the device (no
    `.item()` / `int()` per step, which made the host wait for every step on a GPU)."""
    torch.manual_seed(0)
    model = TSN(ModelConfig(num_classes=4, dropout=0.0))
    o = OptimConfig(lr=0.01, epochs=1, clip_grad=0.0)
    opt = build_optimizer(model, o)
    sched = build_scheduler(opt, o, 8)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (2, 1, 3, 32, 32), dtype=torch.uint8, generator=g),
                torch.randint(0, 4, (2,), generator=g), ["v"] * 2) for _ in range(8)]
    reads = []
    for name in ("item", "tolist", "__int__", "__float__", "__bool__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **k):
            reads.append(_name)
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    kw = dict(opt=opt, scheduler=sched, scaler=scaler, device=torch.device("cpu"), optim=o,
              amp_dtype=None, epoch=1)
    out = train_one_epoch(model, batches, **kw)
    assert len(reads) <= 2, reads  # the epoch's sums, once
    reads.clear()
    logged = []
    train_one_epoch(model, batches, **kw, log_every=4, on_log=lambda s, v: logged.append(s))
    assert logged == [4, 8] and len(reads) <= 4, reads
    assert 0 <= out["train_top1"] <= 1 and out["train_loss"] > 0
