"""The one training engine of both streams: data, optimiser, schedule, epochs, checkpoints.

`fit(cfgs)` trains in `run_dir`, validating each epoch on the group-disjoint hold-out carved
from the training list (never the test list), keeping `checkpoint_best.pt` by validation top-1
and `checkpoint_last.pt` every epoch; `resume=True` continues exactly where the last
checkpoint stopped (each epoch's shuffling, augmentation and dropout are seeded from
(seed, epoch), so a resumed run equals an unbroken one).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset

from ..atomic import atomic_path, atomic_write_text
from ..config import DataConfig, OptimConfig, RunConfig, config_to_json
from ..data.build import Data, build_data
from ..data.datasets import VideoDataset, collate_for
from ..data.frames import RawframeSource, read_meta
from ..data.jpeg_batch import to_device
from ..errors import UserError
from ..models.tsn import TSN, ModelConfig
from ..progress import progress
from ..report import sha256
from . import distributed as dist
from .checkpoint import load_checkpoint, rng_state, save_checkpoint

log = logging.getLogger("two_stream.train")


class EpochSampler(Sampler):
    """Yields `(epoch, index)`: the epoch reaches `VideoDataset` through the sampler, so
    persistent loader workers draw each epoch's augmentation without being rebuilt. Order: a
    permutation seeded by (seed, epoch), or `DistributedSampler`'s share of it per rank."""

    def __init__(self, num_items: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = num_items, seed, rank, world
        self.epoch = 0
        self.dist = (DistributedSampler(range(num_items), world, rank, shuffle=True, seed=seed)
                     if world > 1 else None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.dist is not None:
            self.dist.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dist) if self.dist is not None else self.n

    def __iter__(self):
        if self.dist is not None:
            order = list(self.dist)
        else:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        return iter([(self.epoch, i) for i in order])


def seed_worker(worker_id: int) -> None:
    """Loader workers: numpy/python seeds from the torch seed the loader gave this worker."""
    import cv2
    cv2.setNumThreads(1)  # one core per worker: N workers use N cores
    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    import random
    random.seed(s)


# --- optimisation --------------------------------------------------------------------------

def param_groups(model: TSN, o: OptimConfig) -> list[dict]:
    """No weight decay on biases and norm parameters; lr multipliers for conv1 and the head."""
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.trainable_parameters():
        mult = 1.0
        if name == "backbone.conv1.weight":
            mult = o.lr_mult_first_conv
        elif name.startswith("head."):
            mult = o.lr_mult_fc
        wd = 0.0 if p.ndim <= 1 else o.weight_decay
        groups.setdefault((mult, wd), []).append(p)
    return [{"params": ps, "lr": o.lr * m, "initial_lr": o.lr * m, "lr_mult": m,
             "weight_decay": wd} for (m, wd), ps in groups.items()]


def build_optimizer(model: TSN, o: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, o)
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    return torch.optim.AdamW(groups, lr=o.lr)


def build_scheduler(opt: torch.optim.Optimizer, o: OptimConfig, steps_per_epoch: int):
    """step and plateau step once per epoch; cosine (with linear warmup) once per batch."""
    if o.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, list(o.milestones), o.gamma)
    if o.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=o.gamma, patience=2)
    total = max(o.epochs * steps_per_epoch, 1)
    warm = o.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def amp_settings(run: RunConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler)."""
    mode = run.amp
    if mode == "auto":
        mode = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") \
            if device.type == "cuda" else "off"
    if mode == "off":
        return None, False
    if mode == "fp16" and device.type != "cuda":
        raise UserError("--amp fp16 needs CUDA; use bf16 or off on CPU")
    return (torch.bfloat16 if mode == "bf16" else torch.float16), mode == "fp16"


def decode_mode(d: DataConfig, device: torch.device, source) -> str:
    """`--decode`: auto decodes on the GPU when there is one and the frames are JPEGs."""
    if d.decode != "auto":
        return d.decode
    return "gpu" if device.type == "cuda" and isinstance(source, RawframeSource) else "cpu"


def use_channels_last(run: RunConfig, device: torch.device) -> bool:
    """NHWC for weights and inputs: `on`, or `auto` on CUDA (where tensor cores gain)."""
    return run.channels_last == "on" or (run.channels_last == "auto" and device.type == "cuda")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[int]:
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


def mean_over_ranks(sums: np.ndarray, device: torch.device, prefix: str) -> dict:
    """[loss * n, top-1 hits, top-5 hits, n] summed over all ranks -> mean loss, top-1, top-5."""
    total = dist.all_reduce_sum(sums.tolist(), device)
    n = max(total[3], 1)
    return {f"{prefix}_loss": total[0] / n, f"{prefix}_top1": total[1] / n,
            f"{prefix}_top5": total[2] / n}


# --- epochs --------------------------------------------------------------------------------

def train_one_epoch(model, loader, opt, scheduler, scaler, device, o: OptimConfig,
                    amp_dtype, epoch: int, quiet: bool, steps: int | None = None) -> dict:
    """One epoch of `steps` optimizer steps, each over `o.accumulate` micro-batches of the
    loader (leftover micro-batches that cannot fill a step are not used)."""
    model.train()
    sums = np.zeros(4)  # loss * n, top1, top5, n
    data_time = batch_time = 0.0
    n_micro = o.accumulate
    total = len(loader) if steps is None else min(steps * n_micro, len(loader))
    end = time.perf_counter()
    bar = progress(itertools.islice(loader, total), total=total, desc=f"epoch {epoch} train",
                   quiet=quiet or not dist.is_main(), leave=False)
    for i, (x, y, _) in enumerate(bar):
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        data_time += time.perf_counter() - end
        # a loader shorter than one full step (a data set smaller than a batch) still steps
        first, last = i % n_micro == 0, i % n_micro == n_micro - 1 or i == total - 1
        if first:
            opt.zero_grad(set_to_none=True)
        # DDP: all-reduce only on the micro-batch that ends a step
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") \
            else model.no_sync()
        with sync:
            with autocast(device, amp_dtype):
                loss, video = model(x, y)
            scaler.scale(loss / n_micro).backward()
        if last:
            if o.clip_grad > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                         o.clip_grad)
            scaler.step(opt)
            scaler.update()
            if o.schedule == "cosine":
                scheduler.step()
        t1, t5 = topk_hits(video.detach().float(), y)
        sums += [loss.item() * len(y), t1, t5, len(y)]
        batch_time += time.perf_counter() - end
        end = time.perf_counter()
        bar.set_postfix(loss=f"{sums[0] / sums[3]:.3f}", top1=f"{sums[1] / sums[3]:.3f}")
    return {**mean_over_ranks(sums, device, "train"), "data_time": data_time,
            "batch_time": batch_time}


@torch.no_grad()
def validate(model, loader, device, amp_dtype, quiet: bool) -> dict:
    """Loss and accuracy on centre-sampled K segments, one crop (cheap, every epoch); under
    torchrun each rank takes every world-th video and the sums are reduced."""
    model.eval()
    core = model.module if hasattr(model, "module") else model
    sums = np.zeros(4)
    for x, y, _ in progress(loader, desc="validate", quiet=quiet or not dist.is_main(),
                            leave=False):
        x, y = to_device(x, device), y.to(device)
        x = x[:, 0]  # [B, crops=1, K, C, H, W] -> [B, K, C, H, W]
        with autocast(device, amp_dtype):
            loss, video = core.loss(x, y)
        t1, t5 = topk_hits(video.float(), y)
        sums += [loss.item() * len(y), t1, t5, len(y)]
    return mean_over_ranks(sums, device, "val")


LOG_FIELDS = ["epoch", "lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
              "val_top5", "data_time", "batch_time", "epoch_time"]


def append_log(run_dir: Path, row: dict) -> None:
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
    os.replace(tmp, path)


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
    os.replace(tmp, run_dir / "curves.png")


def drops_last(num_videos: int, per_rank_batch: int, world: int) -> bool:
    """The training loader drops the last partial batch, unless that would leave no batch."""
    return num_videos > per_rank_batch * world


def train_steps(num_videos: int, per_rank_batch: int, world: int) -> int:
    """Optimizer steps per epoch: exactly `len(loader)` of the training loader (each rank sees
    ceil(N / world) videos under DistributedSampler), so the schedule ends where training
    does."""
    per_rank = math.ceil(num_videos / world)
    if drops_last(num_videos, per_rank_batch, world):
        return per_rank // per_rank_batch
    return math.ceil(per_rank / per_rank_batch)


# what a run is: changing any of these makes another run (not workers, devices, test protocol)
_NOT_IDENTITY = {"data": {"workers", "eval_batch_size", "decode"},
                 "clip": {"test_segments", "test_crops", "average_views"},
                 "model": {"num_classes"},  # derived from the split (part of data)
                 "optim": {"epochs"}}


def weights_digest(weights: str) -> str | None:
    """SHA-256 of a `--weights PATH` file (None for none / imagenet / a missing file): a run
    that starts from a retrained checkpoint under the same path is another run."""
    if weights in ("", "none", "imagenet") or not Path(weights).is_file():
        return None
    return sha256(weights)


def saved_config(ck: dict) -> dict:
    """A checkpoint's config with the digest of the weights file it started from."""
    return {**ck["config"], "weights_sha256": ck.get("weights_sha256")}


def run_identity(config: dict) -> dict:
    """The fields of a saved or requested config (dataclasses or their dicts) that define a
    run: data, clip, model, optim, the seed and the digest of the weights file it starts from
    (a saved config carries it as `weights_sha256`, see `saved_config`), as JSON values."""
    out = {}
    for concern in ("data", "clip", "model", "optim"):
        values = config[concern]
        values = dataclasses.asdict(values) if dataclasses.is_dataclass(values) else values
        out[concern] = {k: v for k, v in values.items()
                        if k not in _NOT_IDENTITY.get(concern, set())}
    # settings of a head the run does not use change nothing
    consensus = out["model"].get("consensus")
    for k in list(out["model"]):
        if (k.startswith("lstm_") and consensus != "lstm") or (
                k == "topk_segments" and consensus != "topk"):
            del out["model"][k]
    run = config["run"]
    out["seed"] = run.seed if dataclasses.is_dataclass(run) else run["seed"]
    out["weights_sha256"] = (config["weights_sha256"] if "weights_sha256" in config
                             else weights_digest(str(out["model"].get("weights", "none"))))
    return json.loads(json.dumps(out, default=list))


def identity_diff(saved: dict, requested: dict) -> str:
    """'' when the two configs define the same run, else the differing fields (a: old -> new)."""
    a, b = run_identity(saved), run_identity(requested)
    diffs = []
    for concern in ("data", "clip", "model", "optim"):
        for k in sorted(set(a[concern]) | set(b[concern])):
            if a[concern].get(k) != b[concern].get(k):
                diffs.append(f"{concern}.{k}: {a[concern].get(k)!r} -> {b[concern].get(k)!r}")
    for k in ("seed", "weights_sha256"):
        if a[k] != b[k]:
            diffs.append(f"{k}: {str(a[k])[:12]} -> {str(b[k])[:12]}")
    return ", ".join(diffs)


def checkpoint_state(model, opt, scheduler, scaler, epoch: int, step: int, best: float,
                     cfgs: dict, classes: list[str], input_meta: dict | None = None,
                     weights_sha256: str | None = None) -> dict:
    core = model.module if hasattr(model, "module") else model
    state = {"model": core.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
             "epoch": epoch, "step": step, "best_val_top1": float(best), "rng": rng_state(),
             "config": {k: dataclasses.asdict(v) for k, v in cfgs.items()},
             "classes": list(classes), "weights_sha256": weights_sha256}
    if input_meta:
        state["input"] = input_meta
    return state


def rawframe_input(data: Data) -> dict | None:
    """How the training rawframes were made (extraction parameters, bound, frame size, from a
    training video's meta.json): inference recomputes its input exactly so. None when the
    frames have no meta.json (another extractor) or come straight from videos."""
    if not isinstance(data.source, RawframeSource) or not data.train:
        return None
    meta = read_meta(data.source.root / data.train[0].video_id)
    if meta is None or "params" not in meta:
        return None
    return json.loads(json.dumps({"extraction": meta["params"], "bound": meta.get("bound"),
                                  "width": meta.get("width"), "height": meta.get("height"),
                                  "flow_backend": meta.get("flow_backend")}))


def fit(cfgs: dict, stop_after_epoch: int | None = None) -> Path:
    """Train; returns the run directory. `stop_after_epoch` ends early as a kill would (tests)."""
    d, clip, m, o, run = (cfgs[k] for k in ("data", "clip", "model", "optim", "run"))
    device = dist.local_device(run.device)
    rank, world = dist.init_distributed(device)
    if device.type == "cuda":  # the fastest convolution algorithms, unless asked otherwise
        torch.backends.cudnn.benchmark = not run.deterministic
        torch.backends.cudnn.deterministic = run.deterministic
    run_dir = Path(run.run_dir)
    data = build_data(d, clip)
    input_meta = rawframe_input(data)
    cfgs["model"] = m = dataclasses.replace(m, num_classes=len(data.split.classes))
    digest = weights_digest(m.weights)  # read before the weights are: what this run starts from
    if dist.is_main():
        atomic_write_text(run_dir / "config.json",
                          config_to_json(cfgs, classes=data.split.classes,
                                         weights_sha256=digest))
    torch.manual_seed(run.seed)
    model = TSN(m).to(device)
    if use_channels_last(run, device):
        model = model.set_channels_last()
    amp_dtype, use_scaler = amp_settings(run, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    decode = decode_mode(d, device, data.source)
    train_ds = VideoDataset(data.train, data.source, clip, train=True, seed=run.seed,
                            decode=decode)
    val_clip = dataclasses.replace(clip, test_segments=clip.num_segments, test_crops=1)
    val_ds = VideoDataset(data.val, data.source, val_clip, train=False, seed=run.seed,
                          decode=decode)
    per_rank_batch = max(d.batch_size // world, 1)
    if o.accumulate < 1 or per_rank_batch % o.accumulate:
        raise UserError(f"--accumulate {o.accumulate} must divide the per-process batch "
                        f"({per_rank_batch} = --batch-size {d.batch_size} / {world} processes)")
    steps_per_epoch = train_steps(len(train_ds), per_rank_batch, world)
    opt = build_optimizer(model, o)
    scheduler = build_scheduler(opt, o, steps_per_epoch)
    start_epoch, step, best = 1, 0, -1.0
    last = run_dir / "checkpoint_last.pt"
    if run.resume and last.exists():
        ck = load_checkpoint(last)
        diff = identity_diff(saved_config(ck), {**cfgs, "weights_sha256": digest})
        if diff:
            raise UserError(f"--resume: {last} was trained with other settings ({diff}); "
                            "use another --run-dir, or the same settings")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        start_epoch, step, best = ck["epoch"] + 1, ck["step"], ck["best_val_top1"]
        log.info("resumed from %s at epoch %d", last, ck["epoch"])
    elif run.resume:
        log.info("no checkpoint at %s: starting from scratch", last)
    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if run.compile:  # training steps only: validation and checkpoints use the plain `model`
        ddp_model = torch.compile(ddp_model)
    # one loader for all epochs: persistent workers keep their processes (and page cache
    # warmth); the epoch reaches the dataset through the sampler's (epoch, index) items
    loader_kw = dict(num_workers=d.workers, pin_memory=device.type == "cuda",
                     worker_init_fn=seed_worker, persistent_workers=d.workers > 0,
                     prefetch_factor=4 if d.workers > 0 else None,
                     collate_fn=collate_for(decode))
    val_part = Subset(val_ds, range(rank, len(val_ds), world))  # each rank its own videos
    val_loader = DataLoader(val_part, batch_size=d.eval_batch_size, shuffle=False,
                            **loader_kw) if len(val_ds) else None
    sampler = EpochSampler(len(train_ds), run.seed, rank, world)
    micro_batch = per_rank_batch // o.accumulate
    loader = DataLoader(train_ds, batch_size=micro_batch, sampler=sampler,
                        drop_last=drops_last(len(train_ds), per_rank_batch, world), **loader_kw)
    for epoch in range(start_epoch, o.epochs + 1):
        t0 = time.perf_counter()
        torch.manual_seed(run.seed * 100003 + epoch)  # dropout etc.: a function of the epoch
        sampler.set_epoch(epoch)
        lr = opt.param_groups[0]["lr"] / opt.param_groups[0].get("lr_mult", 1.0)
        row = {"epoch": epoch, "lr": lr}
        row.update(train_one_epoch(ddp_model, loader, opt, scheduler, scaler, device, o,
                                   amp_dtype, epoch, run.quiet, steps_per_epoch))
        step += steps_per_epoch
        if val_loader is not None:
            row.update(validate(model, val_loader, device, amp_dtype, run.quiet))
        if o.schedule == "step":
            scheduler.step()
        elif o.schedule == "plateau":
            scheduler.step(row.get("val_loss", row["train_loss"]))
        row["epoch_time"] = time.perf_counter() - t0
        score = row.get("val_top1", row["train_top1"])
        improved = score > best
        best = max(best, score)
        if dist.is_main():
            state = checkpoint_state(model, opt, scheduler, scaler, epoch, step, best, cfgs,
                                     data.split.classes, input_meta, digest)
            save_checkpoint(last, state)
            if improved:
                save_checkpoint(run_dir / "checkpoint_best.pt", state)
            append_log(run_dir, row)
            plot_curves(run_dir)
            log.info("epoch %d  lr %.2e  train loss %.3f top1 %.3f  val loss %s top1 %s  "
                     "data %.1fs batch %.1fs", epoch, lr, row["train_loss"], row["train_top1"],
                     f"{row['val_loss']:.3f}" if "val_loss" in row else "-",
                     f"{row['val_top1']:.3f}" if "val_top1" in row else "-",
                     row["data_time"], row["batch_time"])
        dist.barrier()
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return run_dir


def build_model_from_checkpoint(ck: dict) -> TSN:
    """Rebuild the network a checkpoint was trained as, from its own config."""
    m = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                       for k, v in ck["config"]["model"].items()})
    model = TSN(dataclasses.replace(m, weights="none"))
    model.load_state_dict(ck["model"])
    return model
