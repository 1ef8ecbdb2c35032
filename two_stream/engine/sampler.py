"""Which videos each training step sees: the epoch-seeded sampler, loader-worker seeding, the
step count per epoch that the schedule is built on, and the training and validation loaders."""
from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset

from ..config import Config
from ..data.datasets import VideoDataset, collate_for
from ..errors import UserError


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
    random.seed(s)


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


@dataclasses.dataclass
class Loaders:
    train: DataLoader
    sampler: EpochSampler
    val: DataLoader | None
    steps_per_epoch: int


def build_loaders(train_ds: VideoDataset, val_ds: VideoDataset, *, cfg: Config, device,
                  rank: int, world: int, decode: str) -> Loaders:
    """One loader for all epochs: persistent workers keep their processes (and page cache
    warmth); the epoch reaches the dataset through the sampler's (epoch, index) items."""
    d, o = cfg.data, cfg.optim
    per_rank_batch = max(d.batch_size // world, 1)
    if o.accumulate < 1 or per_rank_batch % o.accumulate:
        raise UserError(f"--accumulate {o.accumulate} must divide the per-process batch "
                        f"({per_rank_batch} = --batch-size {d.batch_size} / {world} processes)")
    loader_kw = dict(num_workers=d.workers, pin_memory=device.type == "cuda",
                     worker_init_fn=seed_worker, persistent_workers=d.workers > 0,
                     prefetch_factor=4 if d.workers > 0 else None,
                     collate_fn=collate_for(decode))
    val_part = Subset(val_ds, range(rank, len(val_ds), world))  # each rank its own videos
    val = DataLoader(val_part, batch_size=d.eval_batch_size, shuffle=False,
                     **loader_kw) if len(val_ds) else None
    sampler = EpochSampler(len(train_ds), cfg.run.seed, rank, world)
    train = DataLoader(train_ds, batch_size=per_rank_batch // o.accumulate, sampler=sampler,
                       drop_last=drops_last(len(train_ds), per_rank_batch, world), **loader_kw)
    return Loaders(train, sampler, val, train_steps(len(train_ds), per_rank_batch, world))
