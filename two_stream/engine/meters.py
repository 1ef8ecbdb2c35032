"""Loss and accuracy sums of an epoch, kept on the device: adding a batch never makes the host
wait for the device; reading them (once per log interval and per epoch) does."""
from __future__ import annotations

import torch

from . import distributed as dist


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> torch.Tensor:
    """Videos whose label is among the top k logits, per k: int64 [len(ks)] on the device."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return torch.stack([hit[:, :k].any(dim=1).sum() for k in ks])


class Sums:
    """[loss * n, top-1 hits, top-5 hits] accumulated on the device, n on the host: adding a
    batch never waits for the device; `read` does (once)."""

    def __init__(self, device: torch.device):
        self.device, self.n = device, 0
        self.t = torch.zeros(3, dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
        self.t[0] += loss.detach().double() * n
        self.t[1:] += topk_hits(logits.detach().float(), labels).double()
        self.n += n

    def read(self) -> list[float]:
        """[loss * n, top-1 hits, top-5 hits, n] of this process (one host read)."""
        return [*self.t.tolist(), float(self.n)]

    def mean_over_ranks(self, prefix: str) -> dict:
        """Summed over all ranks -> mean loss, top-1, top-5."""
        total = dist.all_reduce_sum(self.read(), self.device)
        n = max(total[3], 1)
        return {f"{prefix}_loss": total[0] / n, f"{prefix}_top1": total[1] / n,
                f"{prefix}_top5": total[2] / n, f"{prefix}_samples": int(total[3])}
