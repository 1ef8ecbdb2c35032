"""Extraction with a batched device backend (`--backend torch`): the GPU never waits on video
decoding or on disk.

Decoding threads read and resize whole videos (OpenCV releases the GIL while decoding); the
main thread gathers frame pairs from several videos into batches of `batch_pairs`, runs TV-L1
on the device and quantises there, so only uint8 flow crosses back to the host; a pool of
writer threads encodes the JPEGs and writes them. A video is finished (meta.json, then the
rename into place) once its last flow image is on disk, exactly as the per-video extractor
does, so resume, the layout and failures.csv are the same for both backends.
"""
from __future__ import annotations

import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from .device import resolve_device
from .quantize import quantize_torch
from .rawframes import (
    VideoError,
    finish_video,
    frame_name,
    new_tmp_dir,
    video_id,
    video_meta,
    write_jpeg,
)
from .tvl1_torch import tvl1
from .videos import Job, VideoResult, check_frame_count, iter_frames


@dataclass
class _Video:
    job: Job
    tmp: Path
    info: dict
    grey: np.ndarray  # uint8 [T, H, W]
    num_frames: int
    pairs_left: int
    writes: list[Future] = field(default_factory=list)
    flow_seconds: float = 0.0


def _decode(job: Job) -> tuple[Job, list[np.ndarray] | None, dict, str | None]:
    """(job, BGR frames at the output size, decoder info, None) or (job, None, info, error)."""
    info: dict = {}
    try:
        src = Path(job.video_root) / job.rel
        if not src.is_file():
            raise VideoError("file not found")
        frames = list(iter_frames(src, job.cfg, info))
        check_frame_count(len(frames), info.get("declared_frames", 0))
        return job, frames, info, None
    except (VideoError, cv2.error, OSError) as e:
        return job, None, info, str(e)


@dataclass(frozen=True)
class BatchOptions:
    """How the device backend runs: `batch_pairs` frame pairs per TV-L1 call on `device`,
    `workers` decoding threads (and twice as many JPEG writer threads)."""

    device: str = "cpu"
    batch_pairs: int = 16
    workers: int = 1


def extract_batched(jobs: list[Job], options: BatchOptions) -> Iterator[VideoResult]:
    """Yield one VideoResult per video (in the order they finish), like `run_job`."""
    dev = resolve_device(options.device)
    batch_pairs, workers = options.batch_pairs, max(options.workers, 1)
    if batch_pairs < 1:
        raise ValueError(f"batch_pairs must be >= 1, got {batch_pairs}")
    decoders = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="decode")
    writers = ThreadPoolExecutor(max(2 * workers, 2), thread_name_prefix="jpeg")
    pending_decodes: deque[Future] = deque()
    queue: deque[tuple[_Video, int]] = deque()  # (video, 0-based pair index) awaiting flow
    open_videos: list[_Video] = []
    todo = deque(jobs)
    lookahead = max(2 * workers, 2)  # videos decoded ahead: bounds memory

    def refill() -> None:
        while todo and len(pending_decodes) < lookahead:
            pending_decodes.append(decoders.submit(_decode, todo.popleft()))

    def start(job: Job, frames: list[np.ndarray], info: dict) -> _Video:
        cfg = job.cfg
        tmp = new_tmp_dir(Path(job.out_root) / video_id(job.rel))
        grey = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
        v = _Video(job, tmp, info, grey, len(frames), max(len(frames) - cfg.step, 0))
        if cfg.rgb:
            for i, f in enumerate(frames, 1):
                v.writes.append(writers.submit(write_jpeg, tmp / frame_name("img", i), f,
                                               cfg.jpeg_quality))
        queue.extend((v, i) for i in range(v.pairs_left))
        return v

    def run_batch(batch: list[tuple[_Video, int]]) -> None:
        step = batch[0][0].job.cfg.step
        prev = torch.from_numpy(np.stack([v.grey[i] for v, i in batch]))
        nxt = torch.from_numpy(np.stack([v.grey[i + step] for v, i in batch]))
        t = time.perf_counter()
        flow = tvl1(prev, nxt, batch[0][0].job.cfg.flow.tvl1, dev)
        q = quantize_torch(flow, batch[0][0].job.cfg.bound).cpu().numpy()  # [B, H, W, 2]
        seconds = (time.perf_counter() - t) / len(batch)
        for (v, i), qi in zip(batch, q):
            quality = v.job.cfg.jpeg_quality
            for c, kind in enumerate(("flow_x", "flow_y")):
                v.writes.append(writers.submit(write_jpeg, v.tmp / frame_name(kind, i + 1),
                                               np.ascontiguousarray(qi[..., c]), quality))
            v.pairs_left -= 1
            v.flow_seconds += seconds

    def finished(block: bool) -> Iterator[VideoResult]:
        for v in list(open_videos):
            if v.pairs_left or not (block or all(f.done() for f in v.writes)):
                continue
            open_videos.remove(v)
            try:
                for f in v.writes:
                    f.result()
                meta = video_meta(v.info, v.num_frames, v.num_frames - v.job.cfg.step
                                  if v.job.cfg.flow_images else 0, v.job.cfg)
                meta["flow_backend"] = {"backend": "torch", "device_type": dev.type,
                                        "torch": torch.__version__.split("+")[0]}
                meta = finish_video(v.tmp, Path(v.job.out_root) / video_id(v.job.rel), meta,
                                    v.job.rel)
                yield VideoResult(v.job.rel, "done", meta, flow_seconds=v.flow_seconds)
            except (VideoError, OSError) as e:
                shutil.rmtree(v.tmp, ignore_errors=True)
                yield VideoResult.failed(v.job.rel, str(e))

    try:
        refill()
        while pending_decodes or queue or open_videos:
            # take decoded videos until a batch is full (or nothing more will come)
            while pending_decodes and (len(queue) < batch_pairs or pending_decodes[0].done()):
                job, frames, info, err = pending_decodes.popleft().result()
                refill()
                if err is not None:
                    yield VideoResult.failed(job.rel, err)
                    continue
                open_videos.append(start(job, frames, info))
            if queue:
                n = min(batch_pairs, len(queue))
                # pairs of one batch share the frame size: cut the batch where it changes
                shape = queue[0][0].grey.shape[1:]
                batch = []
                while queue and len(batch) < n and queue[0][0].grey.shape[1:] == shape:
                    batch.append(queue.popleft())
                run_batch(batch)
            yield from finished(block=not queue and not pending_decodes)
    finally:
        decoders.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        for v in open_videos:  # interrupted: leave no half-written folder of ours behind
            shutil.rmtree(v.tmp, ignore_errors=True)
