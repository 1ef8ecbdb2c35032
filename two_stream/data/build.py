"""From a data configuration to records: the split, its frame source, the group-disjoint
validation hold-out and every video's frame counts. Training, evaluation, scoring and
prediction all start here (the way into the data layer does not pass through the engine).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from .datasets import ClipConfig
from .frames import FrameReadError, RawframeSource, VideoFileSource
from .splits import (
    Split,
    VideoRecord,
    folder_split,
    hmdb51_split,
    holdout_split,
    mmaction_split,
    resolve_records,
    ucf101_split,
)

if TYPE_CHECKING:  # config sits above the data package
    from ..config import DataConfig


def load_split(d: DataConfig) -> Split:
    """The official UCF101 / HMDB51 split, MMAction2 annotation lists, or a folder data
    set's split (generated once, saved)."""
    if d.dataset == "ucf101":
        return ucf101_split(d.split_dir, d.split)
    if d.dataset == "hmdb51":
        return hmdb51_split(d.split_dir, d.split)
    if d.dataset == "mmaction":
        return mmaction_split(d.split_dir, d.split)
    if not d.videos:
        raise UserError("--dataset folder needs --videos (a <Class>/<video> folder)")
    lists = Path(d.split_dir or Path(d.videos).parent / "splits")
    if (lists / "classInd.txt").exists():
        return ucf101_split(lists, 1)
    return folder_split(d.videos, lists, d.folder_test_ratio)


def make_source(d: DataConfig, modality: str) -> RawframeSource | VideoFileSource:
    """Rawframes when --frames is given, else RGB decoded from the videos."""
    if d.frames:
        return RawframeSource(d.frames, d.frame_layout)
    if modality == "flow":
        raise UserError("the flow stream needs --frames (run python -m flow_tools.extract)")
    if not d.videos:
        raise UserError("give --frames (rawframes) or --videos (RGB from video files)")
    return VideoFileSource(d.videos)


@dataclass
class Data:
    split: Split
    source: RawframeSource | VideoFileSource
    train: list[VideoRecord]
    val: list[VideoRecord]
    test: list[VideoRecord]


def build_data(d: DataConfig, clip: ClipConfig) -> Data:
    """Split -> (train, group-disjoint validation, test) records with frame counts. The
    hold-out depends on `d.val_seed` only, never on the training seed."""
    split = load_split(d)
    source = make_source(d, clip.modality)
    train, val = (holdout_split(split.train, d.val_ratio, d.val_seed) if d.val_ratio > 0
                  else (split.train, []))
    everything = train + val + split.test
    counts = source.counts([r.video_id for r in everything])
    res = {r.video_id: r for r in resolve_records(everything, counts)}
    attr = "num_frames" if clip.modality == "rgb" else "num_flows"
    empty = [v for v, r in res.items() if getattr(r, attr) < 1]
    if empty:
        what = "frames" if clip.modality == "rgb" else "flow fields"
        raise FrameReadError(f"{len(empty)} videos have no {what} under {d.frames or d.videos}, "
                             f"e.g. {empty[0]!r}; extract them first")
    return Data(split, source, [res[r.video_id] for r in train], [res[r.video_id] for r in val],
                [res[r.video_id] for r in split.test])
