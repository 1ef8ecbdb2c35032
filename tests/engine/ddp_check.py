"""Run under torchrun (2 CPU processes, gloo): ranks train on different data through the
engine's `train_one_epoch` (with gradient accumulation, so `no_sync` is used) and must end with
identical weights; writes each rank's weight checksum and data checksum to OUT/rank<r>.txt."""
import sys
from pathlib import Path

import torch
from torch import nn

from two_stream.config import OptimConfig
from two_stream.engine import distributed as dist
from two_stream.engine.optim import build_optimizer, build_scheduler
from two_stream.engine.train import train_one_epoch
from two_stream.models.tsn import TSN, ModelConfig


def main(out: str) -> None:
    device = torch.device("cpu")
    rank, world = dist.init_distributed(device)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = TSN(ModelConfig(num_classes=4, arch="resnet18", dropout=0.0))
    ddp = nn.parallel.DistributedDataParallel(model)
    o = OptimConfig(lr=0.05, epochs=1, accumulate=2, clip_grad=0.0)
    opt = build_optimizer(model, o)
    sched = build_scheduler(opt, o, 2)
    g = torch.Generator().manual_seed(100 + rank)  # every rank its own data
    batches = [(torch.randint(0, 256, (2, 2, 3, 32, 32), dtype=torch.uint8, generator=g),
                torch.randint(0, 4, (2,), generator=g), ["v"] * 2) for _ in range(4)]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_one_epoch(ddp, batches, opt=opt, scheduler=sched, scaler=scaler, device=device,
                    optim=o, amp_dtype=None, epoch=1, quiet=True, steps=2)
    weights = sum(float(p.double().sum()) for p in model.parameters())
    data = sum(float(x.double().sum()) for x, _, _ in batches)
    Path(out, f"rank{rank}.txt").write_text(f"{weights!r} {data!r}\n")
    dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
