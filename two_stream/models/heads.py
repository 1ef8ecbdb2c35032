"""The LSTM head: a recurrent classifier over the K segment features instead of a consensus.

Per-step logits [B, K, C]. The video prediction is the last valid step. Training either uses
the last step only (`last`) or every step (`all`) with weights growing linearly with the step
(later steps have seen more of the video), masked beyond each video's length.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


class LSTMHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int = 512, layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.5):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=layers, batch_first=True,
                            bidirectional=bidirectional,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, K, D] (lengths [B] valid steps, default K) -> (step logits [B, K, C],
        video logits [B, C]). The video reads the state that has seen every segment in each
        direction: the forward direction's last valid step and, when bidirectional, the
        backward direction's first step (its last step has seen one segment only)."""
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(feats, lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                      total_length=feats.shape[1])
        else:
            out, _ = self.lstm(feats)
        out = self.dropout(out)  # one mask: the readout is made of the same dropped units
        steps = self.fc(out)
        b, k, _ = out.shape
        last = ((torch.full((b,), k, device=out.device) if lengths is None
                 else lengths.to(out.device)) - 1).clamp(min=0)
        rows = torch.arange(b, device=out.device)
        if not self.lstm.bidirectional:  # the last valid step is the readout
            return steps, steps[rows, last]
        h = self.lstm.hidden_size
        return steps, self.fc(torch.cat([out[rows, last, :h], out[:, 0, h:]], dim=1))


def last_step(step_logits: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """[B, K, C] -> logits of each video's last valid step [B, C]."""
    if lengths is None:
        return step_logits[:, -1]
    idx = (lengths.to(step_logits.device) - 1).clamp(min=0)
    return step_logits[torch.arange(step_logits.shape[0], device=step_logits.device), idx]


def step_weights(num_steps: int, lengths: torch.Tensor | None, batch: int,
                 device: torch.device) -> torch.Tensor:
    """[B, K] loss weights: t + 1 for valid steps, 0 beyond the length, each row sums to 1."""
    t = torch.arange(1, num_steps + 1, device=device, dtype=torch.float32).expand(batch, -1)
    if lengths is not None:
        t = t * (t <= lengths.to(device)[:, None])
    return t / t.sum(dim=1, keepdim=True)


def lstm_loss(step_logits: torch.Tensor, labels: torch.Tensor, mode: str = "last",
              lengths: torch.Tensor | None = None,
              video_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on the video readout (`last`; the last step when not given) or weighted
    over all steps (`all`)."""
    if mode == "last":
        video = last_step(step_logits, lengths) if video_logits is None else video_logits
        return F.cross_entropy(video, labels)
    if mode != "all":
        raise UserError(f"unknown LSTM loss {mode!r}; use 'last' or 'all'")
    b, k, c = step_logits.shape
    ce = F.cross_entropy(step_logits.reshape(b * k, c), labels.repeat_interleave(k),
                         reduction="none").view(b, k)
    return (ce * step_weights(k, lengths, b, step_logits.device)).sum(dim=1).mean()
