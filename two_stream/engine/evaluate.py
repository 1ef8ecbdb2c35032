"""TSN test protocol: S test segments x crops per video, batched, chunked to fit in memory.

For each video the backbone sees all S x crops snippets, in chunks of at most `max_snippets`
(25 x 10 views of ResNet-101 do not fit in one pass on most GPUs); the head then runs per crop
over the S segment features. Video score = the head's consensus over segments, averaged over
crops; snippet scores = per-segment logits averaged over crops ([N, S, C], kept in score files
so fusion can try other consensus rules). Under torchrun each rank scores every world-th video
and the results are gathered back into video order.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..data.datasets import VideoDataset, collate_for
from ..data.jpeg_batch import to_device
from ..errors import UserError
from ..progress import progress
from . import distributed as dist
from .settings import autocast


@torch.no_grad()
def snippet_features(model, x: torch.Tensor, max_snippets: int, device: torch.device, *,
                     amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x [B, crops, S, C, H, W] -> pooled backbone features [B * crops, S, D], the views run
    through the backbone in chunks of at most `max_snippets`."""
    b, n_crops, s = x.shape[:3]
    snippets = x.flatten(0, 2)  # [B * crops * S, C, H, W]
    feats = []
    for chunk in snippets.split(max_snippets):
        with autocast(device, amp_dtype):
            feats.append(model.features(chunk.to(device, non_blocking=True)).float())
    return torch.cat(feats).view(b * n_crops, s, -1)


@torch.no_grad()
def score_views(model, x: torch.Tensor, max_snippets: int, device: torch.device, *,
                amp_dtype: torch.dtype | None = None, average: str = "score"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, crops, S, C, H, W] -> (video scores [B, classes], segment scores [B, S, classes]),
    crops averaged as logits (`score`) or as probabilities (`prob`, returned as their log so
    the score file keeps logits up to a constant)."""
    b, n_crops, s = x.shape[:3]
    feats = snippet_features(model, x, max_snippets, device, amp_dtype=amp_dtype)  # [B*crops, S, D]
    video, seg = model.classify(feats)
    video = video.float().view(b, n_crops, -1)
    seg = seg.float().view(b, n_crops, s, -1)
    if average == "prob":
        return (torch.logsumexp(video.log_softmax(-1), 1) - math.log(n_crops),
                torch.logsumexp(seg.log_softmax(-1), 1) - math.log(n_crops))
    if average != "score":
        raise UserError(f"--average-views must be score or prob, got {average!r}")
    return video.mean(dim=1), seg.mean(dim=1)


@torch.no_grad()
def evaluate_dataset(model, dataset: VideoDataset, device: torch.device, *,
                     batch_videos: int = 4, max_snippets: int = 256, workers: int = 0,
                     amp_dtype: torch.dtype | None = None, quiet: bool = False) -> dict:
    """Scores of every video of a test-mode dataset, in dataset order.

    Returns {"scores": float32 [N, C], "snippet_scores": float16 [N, S, C],
    "labels": int64 [N], "video_ids": list[str]}.
    """
    if len(dataset) == 0:
        raise ValueError("evaluate_dataset: the dataset has no videos")
    model.eval()
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = list(range(rank, len(dataset), world))
    loader = DataLoader(Subset(dataset, mine), batch_size=batch_videos, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        collate_fn=collate_for(dataset.decode))
    videos, segs = [], []
    for x, _, _ in progress(loader, desc="evaluate", quiet=quiet or not dist.is_main()):
        if isinstance(x, list):  # --decode gpu: JPEG bytes, decoded on the device
            x = to_device(x, device)
        v, s = score_views(model, x, max_snippets, device, amp_dtype=amp_dtype,
                           average=dataset.clip.average_views)
        videos.append(v.cpu().numpy())
        segs.append(s.cpu().numpy())
    part = (mine, np.concatenate(videos) if videos else None,
            np.concatenate(segs) if segs else None)
    parts = dist.gather_objects(part)
    n = len(dataset)
    first = next(p for p in parts if p[1] is not None)
    scores = np.zeros((n, first[1].shape[1]), np.float32)
    snippet = np.zeros((n, *first[2].shape[1:]), np.float32)
    for idx, v, s in parts:
        if v is not None:
            scores[idx], snippet[idx] = v, s
    return {"scores": scores, "snippet_scores": snippet.astype(np.float16),
            "labels": np.array([r.label for r in dataset.records], np.int64),
            "video_ids": [r.video_id for r in dataset.records]}


@torch.no_grad()
def dataset_features(model, dataset: VideoDataset, device: torch.device, *,
                     max_snippets: int = 256, workers: int = 0,
                     amp_dtype: torch.dtype | None = None, quiet: bool = False) -> dict:
    """Pooled backbone features of every test snippet of every video, crops averaged (what
    temporal localisation methods read): {"features": float16 [total snippets, D],
    "offsets": int64 [N + 1] (video i owns rows offsets[i]:offsets[i+1]), "video_ids"}. One
    video per batch, so videos may have different snippet counts (`feature_stride`)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda",
                        collate_fn=collate_for(dataset.decode))
    feats, offsets, ids = [], [0], []
    for x, _, vid in progress(loader, desc="features", quiet=quiet or not dist.is_main()):
        x = to_device(x, device) if isinstance(x, list) else x
        f = snippet_features(model, x, max_snippets, device, amp_dtype=amp_dtype)  # [crops, S, D]
        feats.append(f.mean(dim=0).half().cpu().numpy())
        offsets.append(offsets[-1] + feats[-1].shape[0])
        ids.append(vid[0])
    return {"features": np.concatenate(feats) if feats else np.zeros((0, 0), np.float16),
            "offsets": np.array(offsets, np.int64), "video_ids": ids}
