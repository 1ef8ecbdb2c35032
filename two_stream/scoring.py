"""Score a trained checkpoint on a set of videos and write the score file (evaluate's core,
shared by the stream CLIs and the benchmark suite)."""
from __future__ import annotations

from pathlib import Path

import torch

from . import __version__
from .data.datasets import VideoDataset
from .engine import distributed as dist
from .engine.evaluate import evaluate_dataset
from .data.build import Data
from .engine.train import build_model_from_checkpoint, decode_mode, use_channels_last
from .report import git_commit
from .scores import ScoreFile, save_scores


def write_scores(cfgs: dict, ck_path: Path, ck: dict, data: Data, records: list, split: str,
                 stream: str, device: torch.device, amp_dtype=None
                 ) -> tuple[Path, ScoreFile | None]:
    """TSN test protocol on `records` -> `<run_dir>/scores_<split>.npz` (rank 0 writes; other
    ranks get None)."""
    d, clip, run = cfgs["data"], cfgs["clip"], cfgs["run"]
    model = build_model_from_checkpoint(ck).to(device)
    if use_channels_last(run, device):  # the same memory format as training
        model = model.set_channels_last()
    ds = VideoDataset(records, data.source, clip, train=False, seed=run.seed,
                      decode=decode_mode(d, device, data.source))
    out = evaluate_dataset(model, ds, device, d.eval_batch_size, run.max_snippets, d.workers,
                           amp_dtype, run.quiet)
    path = Path(run.run_dir) / f"scores_{split}.npz"
    if not dist.is_main():
        return path, None
    meta = {"stream": stream, "modality": clip.modality, "arch": model.cfg.arch,
            "consensus": model.cfg.consensus, "segments": clip.test_segments,
            "crops": clip.test_crops, "checkpoint": str(ck_path), "epoch": ck["epoch"],
            "split": f"{d.dataset} split {d.split} {split}", "data_root": d.frames or d.videos,
            "code_version": f"{__version__} ({git_commit() or 'no git'})"}
    sf = ScoreFile(out["scores"], out["labels"], out["video_ids"], data.split.classes,
                   out["snippet_scores"], meta)
    save_scores(path, sf)
    return path, sf
