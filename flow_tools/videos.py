"""Source videos: which to extract (listing, sharding), decoding them at the output size, and
the per-video job and result both extraction backends share (`extract` runs a job per video
in worker processes, `batched` many at once on a device)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import UserError
from .params import ExtractConfig
from .rawframes import VIDEO_EXTENSIONS, VideoError


def list_videos(video_root: Path, list_file: Path | None = None) -> list[str]:
    """Relative video paths, sorted: every video under the root, or those named in a list
    file (first column, e.g. a UCF101 `trainlist01.txt`)."""
    if not video_root.is_dir():
        raise UserError(f"{video_root}: video folder not found")
    if list_file is None:
        return sorted(p.relative_to(video_root).as_posix() for p in video_root.rglob("*")
                      if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    try:
        text = Path(list_file).read_text()
    except FileNotFoundError:
        raise UserError(f"{list_file}: list file not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{list_file}: not a text file (one video path per line)") from None
    rels = []
    for line in text.splitlines():
        if line.strip():
            rels.append(line.split()[0].replace("\\", "/"))
    if not rels:
        raise UserError(f"{list_file}: empty list file")
    return sorted(set(rels))


def parse_shard(spec: str) -> tuple[int, int]:
    """`I/N` -> (I, N), 0 <= I < N."""
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise UserError(f"--shard must be I/N with integers, got {spec!r}") from None
    if not 0 <= i < n:
        raise UserError(f"--shard {spec}: need 0 <= I < N")
    return i, n


def shard(items: list[str], spec: str | None) -> list[str]:
    """`I/N`: every N-th item starting at I (0-based); the N shards partition the list."""
    if not spec:
        return items
    i, n = parse_shard(spec)
    return items[i::n]


def target_size(w: int, h: int, cfg: ExtractConfig) -> tuple[int, int]:
    """The output (W, H) of a W x H source under `new_size` / `new_short`."""
    if cfg.new_size:
        return cfg.new_size
    if cfg.new_short:
        s = cfg.new_short
        return (round(w * s / h), s) if h <= w else (s, round(h * s / w))
    return w, h


def iter_frames(src: Path, cfg: ExtractConfig, info: dict) -> Iterator[np.ndarray]:
    """Decode `src` and yield its BGR frames resized to the output size; `info` receives
    `declared_frames`, `fps`, `width`, `height`, `source_width`, `source_height`. A frame size
    that changes mid-stream is a VideoError."""
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise VideoError("cannot open (unreadable or unsupported file)")
    info["declared_frames"] = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    info["fps"] = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    first_shape = size = None
    n = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if first_shape is None:
                first_shape = frame.shape
                size = target_size(frame.shape[1], frame.shape[0], cfg)
                info.update(width=size[0], height=size[1], source_width=first_shape[1],
                            source_height=first_shape[0])
            elif frame.shape != first_shape:
                raise VideoError(f"frame size changed from {first_shape[1]}x{first_shape[0]} "
                                 f"to {frame.shape[1]}x{frame.shape[0]} at frame {n}")
            if (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            n += 1
            yield frame
    finally:
        cap.release()


def check_frame_count(n_frames: int, declared: int) -> None:
    """Too few frames, or a decoder that stopped well before the declared count."""
    if n_frames < 2:
        raise VideoError(f"{n_frames} decodable frames (need at least 2)")
    if declared > 0 and n_frames < 0.9 * declared:
        raise VideoError(f"decoder stopped after {n_frames} of {declared} declared frames "
                         "(damaged or truncated file)")


@dataclass(frozen=True)
class Job:
    """One video to extract: `rel` under `video_root`, into `out_root/<video_id>`."""

    rel: str
    video_root: str
    out_root: str
    cfg: ExtractConfig


@dataclass(frozen=True)
class VideoResult:
    """What became of one video: `status` 'done' (meta = its meta.json) or 'failed' (error =
    the reason for failures.csv); `flow_seconds` spent in the flow computation."""

    rel: str
    status: str
    meta: dict | None = None
    error: str | None = None
    flow_seconds: float = 0.0

    @classmethod
    def failed(cls, rel: str, error: str) -> "VideoResult":
        return cls(rel, "failed", error=error)
