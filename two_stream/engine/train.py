"""The one training engine of both streams: data, optimiser, schedule, epochs, checkpoints.

`fit(cfg)` trains in `run_dir`, validating each epoch on the group-disjoint hold-out carved
from the training list (never the test list), keeping `checkpoint_best.pt` by validation top-1
and `checkpoint_last.pt` every epoch; `resume=True` continues exactly where the last
checkpoint stopped (each epoch's shuffling, augmentation and dropout are seeded from
(seed, epoch), so a resumed run equals an unbroken one).

Loss and accuracy are summed on the device and read by the host once per log interval and
once per epoch: a training step never waits for the GPU to finish the previous one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import time
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_write_text
from ..config import Config, OptimConfig, config_to_json
from ..data.build import build_data
from ..data.datasets import VideoDataset
from ..data.jpeg_batch import to_device
from ..errors import UserError
from ..models.tsn import TSN
from ..progress import progress
from . import distributed as dist
from .checkpoint import (
    checkpoint_state,
    identity_diff,
    load_checkpoint,
    rawframe_input,
    restore_training_state,
    run_lock,
    save_checkpoint,
    saved_config,
    weights_digest,
)
from .meters import Sums
from .optim import build_optimizer, build_scheduler, current_lr
from .runlog import append_log, log_epoch, plot_curves
from .sampler import Loaders, build_loaders
from .settings import amp_settings, autocast, configure_cudnn, decode_mode, use_channels_last
from .tensorboard import Board, wants_board

log = logging.getLogger("two_stream.train")


def batch_to_device(x, device: torch.device) -> torch.Tensor:
    """A loader batch on the device. JPEG samples (`--decode gpu`) are decoded there by
    torchvision on a stream of its own: wait for the current stream first, so the decode
    does not overwrite memory the previous step still reads (the per-step host sync that
    made this safe is gone)."""
    if isinstance(x, list) and device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
    return to_device(x, device)


def train_one_epoch(model, loader, *, opt, scheduler, scaler, device: torch.device,
                    optim: OptimConfig, amp_dtype: torch.dtype | None, epoch: int,
                    quiet: bool = True, steps: int | None = None, log_every: int = 0,
                    on_log=None) -> dict:
    """One epoch of `steps` optimizer steps, each over `optim.accumulate` micro-batches of the
    loader (leftover micro-batches that cannot fill a step are not used). Every `log_every`
    steps the running loss is read once: shown on the progress bar and passed to
    `on_log(step_in_epoch, loss)`."""
    model.train()
    sums = Sums(device)
    data_time = batch_time = 0.0
    n_micro = optim.accumulate
    total = len(loader) if steps is None else min(steps * n_micro, len(loader))
    start = end = time.perf_counter()
    bar = progress(itertools.islice(loader, total), total=total, desc=f"epoch {epoch} train",
                   quiet=quiet or not dist.is_main(), leave=False)
    for i, (x, y, _) in enumerate(bar):
        x, y = batch_to_device(x, device), y.to(device, non_blocking=True)
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
            if optim.clip_grad > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                         optim.clip_grad)
            scaler.step(opt)
            scaler.update()
            if optim.schedule == "cosine":
                scheduler.step()
        sums.add(loss, video, y)
        batch_time += time.perf_counter() - end
        end = time.perf_counter()
        step = i // n_micro + 1
        if last and log_every > 0 and step % log_every == 0:
            s = sums.read()
            bar.set_postfix(loss=f"{s[0] / s[3]:.3f}", top1=f"{s[1] / s[3]:.3f}")
            if on_log is not None:
                on_log(step, s[0] / s[3])
    return {**sums.mean_over_ranks("train"), "data_time": data_time, "batch_time": batch_time,
            "train_time": time.perf_counter() - start}


@torch.no_grad()
def validate(model, loader, *, device: torch.device, amp_dtype: torch.dtype | None,
             quiet: bool = True) -> dict:
    """Loss and accuracy on centre-sampled K segments, one crop (cheap, every epoch); under
    torchrun each rank takes every world-th video and the sums are reduced."""
    model.eval()
    core = model.module if hasattr(model, "module") else model
    sums = Sums(device)
    for x, y, _ in progress(loader, desc="validate", quiet=quiet or not dist.is_main(),
                            leave=False):
        x, y = batch_to_device(x, device), y.to(device)
        x = x[:, 0]  # [B, crops=1, K, C, H, W] -> [B, K, C, H, W]
        with autocast(device, amp_dtype):
            loss, video = core.loss(x, y)
        sums.add(loss, video, y)
    return sums.mean_over_ranks("val")


def fit(cfg: Config, stop_after_epoch: int | None = None) -> Path:
    """Train; returns the run directory (its config.json holds the resolved config).
    `stop_after_epoch` ends early as a kill would (tests). The caller's config is not
    changed."""
    run = cfg.run
    device = dist.local_device(run.device)
    write_board = wants_board(run.tensorboard)  # before any work, on every rank
    dist.init_distributed(device)
    # one writer per run directory: a second training (or evaluation) of it is refused
    with run_lock(Path(run.run_dir), "training"):
        _fit(cfg, device=device, write_board=write_board and dist.is_main(),
             stop_after_epoch=stop_after_epoch)
    return Path(run.run_dir)


def _fit(cfg: Config, *, device: torch.device, write_board: bool,
         stop_after_epoch: int | None) -> None:
    d, clip, o, run = cfg.data, cfg.clip, cfg.optim, cfg.run
    rank, world = dist.get_rank(), dist.get_world_size()
    configure_cudnn(run, device)
    run_dir = Path(run.run_dir)
    data = build_data(d, clip)
    input_meta = rawframe_input(data)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, num_classes=len(data.split.classes)))
    digest = weights_digest(cfg.model.weights)  # read before the weights are: the start point
    if dist.is_main():
        atomic_write_text(run_dir / "config.json",
                          config_to_json(cfg, classes=data.split.classes, weights_sha256=digest))
    torch.manual_seed(run.seed)
    model = TSN(cfg.model).to(device)
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
    loaders = build_loaders(train_ds, val_ds, cfg=cfg, device=device, rank=rank, world=world,
                            decode=decode)
    steps_per_epoch = loaders.steps_per_epoch
    opt = build_optimizer(model, o)
    scheduler = build_scheduler(opt, o, steps_per_epoch)
    start_epoch, step, best = 1, 0, -1.0
    last = run_dir / "checkpoint_last.pt"
    if run.resume and last.exists():
        ck = load_checkpoint(last)
        diff = identity_diff(saved_config(ck), {**cfg.to_dict(), "weights_sha256": digest})
        if diff:
            raise UserError(f"--resume: {last} was trained with other settings ({diff}); "
                            "use another --run-dir, or the same settings")
        restore_training_state(ck, model=model, opt=opt, scheduler=scheduler, scaler=scaler)
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
    board = Board(run_dir / "tb", start_step=step) if write_board else None
    try:
        _epochs(cfg, model=model, ddp_model=ddp_model, loaders=loaders, opt=opt,
                scheduler=scheduler, scaler=scaler, device=device, amp_dtype=amp_dtype,
                start=(start_epoch, step, best), board=board, stop_after_epoch=stop_after_epoch,
                classes=data.split.classes, input_meta=input_meta, digest=digest)
    finally:
        if board is not None:
            board.close()


def _epochs(cfg: Config, *, model, ddp_model, loaders: Loaders, opt, scheduler, scaler, device,
            amp_dtype, start: tuple[int, int, float], board: Board | None,
            stop_after_epoch: int | None, classes: list[str], input_meta: dict | None,
            digest: str | None) -> None:
    """fit's epochs from `start` = (first epoch, steps done, best score so far): train,
    validate, step the schedule, then (rank 0) checkpoints, log.csv, curves and TensorBoard."""
    o, run, run_dir = cfg.optim, cfg.run, Path(cfg.run.run_dir)
    start_epoch, step, best = start
    steps_per_epoch = loaders.steps_per_epoch
    # the running loss is read only where someone sees it (a progress bar or TensorBoard)
    log_every = run.log_every if board is not None or not run.quiet else 0
    for epoch in range(start_epoch, o.epochs + 1):
        t0 = time.perf_counter()
        torch.manual_seed(run.seed * 100003 + epoch)  # dropout etc.: a function of the epoch
        loaders.sampler.set_epoch(epoch)
        lr = current_lr(opt)
        row = {"epoch": epoch, "lr": lr}
        on_log = None if board is None else (
            lambda s, loss, done=step: board.step_loss(done + s, loss))
        row.update(train_one_epoch(ddp_model, loaders.train, opt=opt, scheduler=scheduler,
                                   scaler=scaler, device=device, optim=o, amp_dtype=amp_dtype,
                                   epoch=epoch, quiet=run.quiet, steps=steps_per_epoch,
                                   log_every=log_every, on_log=on_log))
        step += steps_per_epoch
        if loaders.val is not None:
            row.update(validate(model, loaders.val, device=device, amp_dtype=amp_dtype,
                                quiet=run.quiet))
        if o.schedule == "step":
            scheduler.step()
        elif o.schedule == "plateau":
            scheduler.step(row.get("val_loss", row["train_loss"]))
        row["epoch_time"] = time.perf_counter() - t0
        score = row.get("val_top1", row["train_top1"])
        improved = score > best
        best = max(best, score)
        if dist.is_main():
            state = checkpoint_state(model=model, opt=opt, scheduler=scheduler, scaler=scaler,
                                     epoch=epoch, step=step, best=best, cfg=cfg,
                                     classes=classes, input_meta=input_meta,
                                     weights_sha256=digest)
            save_checkpoint(run_dir / "checkpoint_last.pt", state)
            if improved:
                save_checkpoint(run_dir / "checkpoint_best.pt", state)
            append_log(run_dir, row)
            plot_curves(run_dir)
            log_epoch(row)
            if board is not None:
                board.epoch(row, step)
        dist.barrier()
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
