"""The TSN model: one class for both streams, `modality` decides the input channels.

x [B, K, C, H, W] (uint8 from the loader, normalised here on the model's device; or float
already normalised) -> the backbone encodes each of the B*K snippets -> features [B, K, D] ->
either dropout + linear per segment and a consensus over K (mean | max | var), or an LSTM head
over the K steps. `forward` returns video logits [B, num_classes]; `forward_segments` also
returns the per-segment logits [B, K, num_classes] that score files keep.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..data.transforms import channel_stats, normalize_batch
from ..errors import UserError
from .backbones import build_backbone
from .consensus import CONSENSUS, segment_consensus
from .heads import LSTMHead, lstm_loss

HEADS = CONSENSUS + ("lstm",)


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int = 101
    modality: str = "rgb"
    new_length: int = 1  # snippet length L (flow: 2L input channels)
    arch: str = "resnet18"
    weights: str = "none"  # none | imagenet | PATH
    consensus: str = "mean"  # mean | max | var | topk | lstm
    topk_segments: int = 3  # k of `topk`: mean of each class's k largest segment scores
    dropout: float = 0.5
    partial_bn: bool = True
    freeze_backbone: bool = False
    lstm_hidden: int = 512
    lstm_layers: int = 1
    lstm_bidirectional: bool = False
    lstm_loss: str = "last"  # last | all

    @property
    def in_chans(self) -> int:
        return 3 if self.modality == "rgb" else 2 * self.new_length


class TSN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.consensus not in HEADS:
            raise UserError(f"unknown consensus {cfg.consensus!r}; choose from {HEADS}")
        if cfg.modality not in ("rgb", "flow"):
            raise UserError(f"unknown modality {cfg.modality!r}; use 'rgb' or 'flow'")
        self.cfg = cfg
        self.channels_last = False  # inputs and weights in NHWC (set by `set_channels_last`)
        mean, std = channel_stats(cfg.modality, cfg.in_chans)
        # not in the state dict: checkpoints stay loadable and the values follow the modality
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)
        self.backbone, dim = build_backbone(cfg.arch, cfg.weights, cfg.in_chans)
        if cfg.consensus == "lstm":
            self.head = LSTMHead(dim, cfg.num_classes, cfg.lstm_hidden, cfg.lstm_layers,
                                 cfg.lstm_bidirectional, cfg.dropout)
        else:
            self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(dim, cfg.num_classes))
        if cfg.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        for m in self._frozen_bns():
            for p in m.parameters():
                p.requires_grad_(False)

    def _frozen_bns(self) -> list[nn.BatchNorm2d]:
        bns = [m for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
        if self.cfg.freeze_backbone:
            return bns
        # partial BN keeps pretrained statistics; from scratch there are none worth keeping
        return bns[1:] if self.cfg.partial_bn and self.cfg.weights != "none" else []

    def set_channels_last(self, on: bool = True) -> "TSN":
        """NHWC weights and inputs (faster convolutions with AMP on tensor-core GPUs)."""
        self.channels_last = on
        return self.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Snippets [N, C, H, W]: uint8 -> normalised float (on x's device); NHWC when
        channels_last is on."""
        if x.dtype == torch.uint8:
            x = normalize_batch(x, self.input_mean, self.input_std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Snippets [N, C, H, W] (uint8 or normalised float) -> features [N, D]. With a frozen
        backbone no activations are kept for backward (the CNN-LSTM memory problem)."""
        x = self.prepare(x)
        if self.cfg.freeze_backbone:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def classify(self, feats: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, K, D] -> (video logits [B, C], segment logits [B, K, C])."""
        if self.cfg.consensus == "lstm":
            steps, video = self.head(feats, lengths)
            return video, steps
        seg = self.head(feats)
        return segment_consensus(seg, self.cfg.consensus, self.cfg.topk_segments), seg

    def forward_segments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = x.shape[:2]
        feats = self.features(x.flatten(0, 1)).view(b, k, -1)  # [B, K, D]
        return self.classify(feats)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        """[B, K, C, H, W] -> video logits [B, classes]; with labels, (loss, video logits)
        (so DistributedDataParallel sees the whole training computation)."""
        if labels is not None:
            return self.loss(x, labels)
        return self.forward_segments(x)[0]

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, video logits): cross-entropy on the consensus, or the LSTM's loss."""
        video, seg = self.forward_segments(x)
        if self.cfg.consensus == "lstm":
            return lstm_loss(seg, labels, self.cfg.lstm_loss, video_logits=video), video
        return nn.functional.cross_entropy(video, labels), video

    def train(self, mode: bool = True) -> "TSN":
        """TSN's partial BN: in training, every BatchNorm but the first keeps its ImageNet
        statistics and affine parameters (they are frozen), which regularises small data."""
        super().train(mode)
        if mode:
            for m in self._frozen_bns():
                m.eval()
        return self

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Named parameters that train (frozen BN and a frozen backbone are left out)."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def config_dict(self) -> dict:
        return asdict(self.cfg)
