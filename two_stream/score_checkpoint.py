"""Score a trained checkpoint on a set of videos and write its score file (and, if asked, its
snippet features): evaluate's core, shared by the stream CLIs and the experiment commands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .atomic import atomic_path, atomic_replace
from .config import Config
from .data.build import Data
from .data.datasets import VideoDataset
from .engine import distributed as dist
from .engine.checkpoint import build_model_from_checkpoint, run_lock
from .engine.evaluate import dataset_features, evaluate_dataset
from .engine.settings import decode_mode, use_channels_last
from .report import git_commit
from .scores import ScoreFile, save_scores


def write_scores(cfg: Config, *, ck_path: Path, ck: dict, data: Data, records: list,
                 split: str, stream: str, device: torch.device,
                 amp_dtype: torch.dtype | None = None) -> tuple[Path, ScoreFile | None]:
    """TSN test protocol on `records` with the checkpoint `ck` (loaded from `ck_path`) ->
    `<run_dir>/scores_<split>.npz` (rank 0 writes; other ranks get None). `cfg` gives the
    data, test protocol and run settings; the network comes from the checkpoint."""
    with run_lock(Path(cfg.run.run_dir), "evaluation"):
        return _write_scores(cfg, ck_path=ck_path, ck=ck, data=data, records=records,
                             split=split, stream=stream, device=device, amp_dtype=amp_dtype)


def _write_scores(cfg: Config, *, ck_path: Path, ck: dict, data: Data, records: list,
                  split: str, stream: str, device: torch.device,
                  amp_dtype: torch.dtype | None) -> tuple[Path, ScoreFile | None]:
    d, clip, run = cfg.data, cfg.clip, cfg.run
    model = build_model_from_checkpoint(ck).to(device)
    if use_channels_last(run, device):  # the same memory format as training
        model = model.set_channels_last()
    ds = VideoDataset(records, data.source, clip, train=False, seed=run.seed,
                      decode=decode_mode(d, device, data.source))
    out = evaluate_dataset(model, ds, device, batch_videos=d.eval_batch_size,
                           max_snippets=run.max_snippets, workers=d.workers, amp_dtype=amp_dtype,
                           quiet=run.quiet)
    path = Path(run.run_dir) / f"scores_{split}.npz"
    if not dist.is_main():
        return path, None
    meta = {"stream": stream, "modality": clip.modality, "arch": model.cfg.arch,
            "consensus": model.cfg.consensus, "segments": clip.test_segments,
            "crops": clip.test_crops, "average_views": clip.average_views,
            "checkpoint": str(ck_path), "epoch": ck["epoch"],
            "split": f"{d.dataset} split {d.split} {split}", "data_root": d.frames or d.videos,
            "code_version": f"{__version__} ({git_commit() or 'no git'})"}
    sf = ScoreFile(out["scores"], out["labels"], out["video_ids"], data.split.classes,
                   out["snippet_scores"], meta)
    save_scores(path, sf)
    if run.save_features:
        write_features(cfg, ck_path=ck_path, model=model, data=data, records=records,
                       split=split, device=device, amp_dtype=amp_dtype)
    return path, sf


def write_features(cfg: Config, *, ck_path: Path, model, data: Data, records: list,
                   split: str, device: torch.device, amp_dtype: torch.dtype | None = None
                   ) -> Path:
    """`<run_dir>/features_<split>.npz`: `features` float16 [total snippets, D], `offsets`
    int64 [N + 1] (video i owns rows offsets[i]:offsets[i + 1]), `video_ids`, and `meta`
    (checkpoint, stride or segments, crops). With the test segments every video has S rows."""
    d, clip, run = cfg.data, cfg.clip, cfg.run
    ds = VideoDataset(records, data.source, clip, train=False, seed=run.seed,
                      decode=decode_mode(d, device, data.source),
                      feature_stride=run.feature_stride)
    out = dataset_features(model, ds, device, max_snippets=run.max_snippets, workers=d.workers,
                           amp_dtype=amp_dtype, quiet=run.quiet)
    path = Path(run.run_dir) / f"features_{split}.npz"
    meta = {"checkpoint": str(ck_path), "modality": clip.modality, "arch": model.cfg.arch,
            "feature_stride": run.feature_stride,
            "segments": None if run.feature_stride else clip.test_segments,
            "crops": clip.test_crops, "new_length": clip.new_length, "split": split}
    tmp = atomic_path(path)
    with open(tmp, "wb") as f:
        np.savez(f, features=out["features"], offsets=out["offsets"],
                 video_ids=np.array(out["video_ids"], dtype=str), meta=np.array(json.dumps(meta)))
    atomic_replace(tmp, path)
    return path
