"""Optimiser and learning-rate schedule of a run, from its `OptimConfig`."""
from __future__ import annotations

import math

import torch

from ..config import OptimConfig
from ..models.tsn import TSN


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


def current_lr(opt: torch.optim.Optimizer) -> float:
    """The base lr now (the first group's lr without its multiplier)."""
    return opt.param_groups[0]["lr"] / opt.param_groups[0].get("lr_mult", 1.0)
