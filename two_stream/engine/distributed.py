"""Distributed helpers: no-ops in a single process, DDP under `torchrun` or `srun`.

`gloo` on CPU, `nccl` on GPU. Rank 0 writes files; evaluation gathers every rank's scores and
puts them back in video order. Outside torchrun, a Slurm step of several tasks (`srun` with
`--ntasks` > 1) sets the same variables from Slurm's (`slurm_environment`).
"""
from __future__ import annotations

import os
import subprocess

import torch
import torch.distributed as dist

from flow_tools.device import resolve_device

DEFAULT_PORT = 29500


def slurm_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) from an
    srun step's (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, the first host of
    SLURM_STEP_NODELIST), for the keys not set already; {} outside a multi-task srun step
    (the batch script itself has no SLURM_STEP_NUM_TASKS: it is one process whatever
    --ntasks says) or under torchrun (which sets WORLD_SIZE itself)."""
    env = os.environ if env is None else env
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
    if "WORLD_SIZE" in env or tasks <= 1 or "SLURM_PROCID" not in env:
        return {}
    out = {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": str(tasks),
           "LOCAL_RANK": env.get("SLURM_LOCALID", "0")}
    if "MASTER_ADDR" not in env:
        out["MASTER_ADDR"] = first_host(env.get("SLURM_STEP_NODELIST")
                                        or env.get("SLURM_JOB_NODELIST", "localhost"))
    if "MASTER_PORT" not in env:
        # one port per job: two jobs sharing a node do not collide
        out["MASTER_PORT"] = str(DEFAULT_PORT + int(env.get("SLURM_JOB_ID", "0")) % 10000)
    return out


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (`node[01-04],gpu7` -> `node01`)."""
    if "[" not in nodelist:
        return nodelist.split(",")[0]
    try:  # Slurm's own expansion where scontrol is installed
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.CalledProcessError):
        pass  # no scontrol here: expand the first range by hand below
    prefix, rest = nodelist.split("[", 1)
    first = rest.split("]", 1)[0].split(",")[0].split("-")[0]
    return prefix + first


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun (or a
    multi-task srun step), bound to this process's GPU on CUDA."""
    os.environ.update(slurm_environment())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return get_rank(), get_world_size()


def shutdown() -> None:
    """Destroy the process group (the end of a torchrun command); a no-op without one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def gather_objects(obj):
    """A list with every rank's `obj` (rank order); [obj] in a single process."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float] | torch.Tensor, device: torch.device) -> list[float]:
    """Element-wise sum over ranks, as Python floats (one host read)."""
    t = torch.as_tensor(values, dtype=torch.float64, device=device)
    if get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def local_device(requested: str) -> torch.device:
    """This process's device for `--device` (parsed by flow_tools.device.resolve_device):
    `cuda:N` is GPU N; `cuda` and `auto` with a GPU take LOCAL_RANK modulo the visible GPUs
    (a launcher that shows each process one GPU sets LOCAL_RANK > 0 all the same)."""
    os.environ.update(slurm_environment())
    dev = resolve_device(requested)
    if dev.type != "cuda":
        return dev
    index = dev.index
    if index is None:
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)
