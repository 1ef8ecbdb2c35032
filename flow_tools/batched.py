"""Extraction with a batched device backend (`--backend torch`): the GPU never waits on video
decoding or on disk.

Decoding threads read and resize whole videos (OpenCV releases the GIL while decoding); the
main thread gathers frame pairs from several videos into batches of `batch_pairs`, runs TV-L1
on the device and quantises there, so only uint8 flow crosses back to the host; a pool of
writer threads encodes the JPEGs and writes them. A video is finished (meta.json, then the
rename into place) once its last flow image is on disk, exactly as the per-video extractor
does, so resume, the layout and failures.csv are the same for both backends.

Batch size: a number, or `auto`: as many pairs as fit in the free device memory (CUDA:
`torch.cuda.mem_get_info`; a CPU: the stated `memory_budget_gb`) by the TV-L1 peak-memory
formula `tvl1_torch.peak_bytes_per_pair`, sized once per frame size. When the device runs out
of memory anyway, the batch is halved and retried (logged, and recorded in each affected
video's meta.json), and later batches of that frame size stay at the smaller size; out of
memory at a batch of one pair fails that video only. Each pair stops on its own, so the batch
size does not change a result.
"""
from __future__ import annotations

import logging
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

from . import tvl1_torch
from .device import resolve_device
from .errors import UserError
from .params import DEFAULT_MEMORY_BUDGET_GB, TVL1Params
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

log = logging.getLogger("flow_tools.batched")
AUTO_MAX_PAIRS = 256  # `auto` never batches more: the device is saturated long before
AUTO_MEMORY_SHARE = 0.8  # of the free device memory: headroom for the allocator and others


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
    oom_retries: int = 0  # batches with a pair of this video that ran out of memory
    error: str | None = None  # failed (out of memory at one pair): no further pairs


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
    """How the device backend runs: `batch_pairs` frame pairs per TV-L1 call on `device` (a
    number, or "auto"), `memory_budget_gb` what `auto` may use on a CPU (default
    DEFAULT_MEMORY_BUDGET_GB), `compiled` the compiled TV-L1 iterations, `workers` decoding
    threads (and twice as many JPEG writer threads)."""

    device: str = "cpu"
    batch_pairs: int | str = 16
    memory_budget_gb: float | None = None
    compiled: bool = False
    workers: int = 1


def free_device_bytes(dev: torch.device, memory_budget_gb: float | None = None) -> int:
    """Bytes a batch may use: on CUDA the free memory plus what torch's allocator holds
    unused; on a CPU the budget (a CPU's free memory says little about what else will run)."""
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    return int((memory_budget_gb or DEFAULT_MEMORY_BUDGET_GB) * 1024 ** 3)


def auto_batch_pairs(height: int, width: int, params: TVL1Params, available_bytes: int) -> int:
    """Pairs of H x W that fit in AUTO_MEMORY_SHARE of `available_bytes`, in 1..AUTO_MAX_PAIRS,
    by the TV-L1 peak-memory formula."""
    per_pair = tvl1_torch.peak_bytes_per_pair(height, width, params)
    return max(1, min(AUTO_MAX_PAIRS, int(AUTO_MEMORY_SHARE * available_bytes) // per_pair))


def _check_batch_pairs(batch_pairs: int | str) -> None:
    if batch_pairs != "auto" and (not isinstance(batch_pairs, int) or batch_pairs < 1):
        raise UserError(f"--batch-pairs must be a number >= 1 or auto, got {batch_pairs!r}")


def extract_batched(jobs: list[Job], options: BatchOptions) -> Iterator[VideoResult]:
    """Yield one VideoResult per video (in the order they finish), like `run_job`."""
    dev = resolve_device(options.device)
    _check_batch_pairs(options.batch_pairs)
    workers = max(options.workers, 1)
    decoders = ThreadPoolExecutor(workers, thread_name_prefix="decode")
    writers = ThreadPoolExecutor(2 * workers, thread_name_prefix="jpeg")
    pending_decodes: deque[Future] = deque()
    queue: deque[tuple[_Video, int]] = deque()  # (video, 0-based pair index) awaiting flow
    open_videos: list[_Video] = []
    todo = deque(jobs)
    lookahead = 2 * workers  # videos decoded ahead: bounds memory
    limits: dict[tuple[int, int], int] = {}  # frame size -> pairs per batch

    def limit(v: _Video) -> int:
        shape = v.grey.shape[1:]
        if shape not in limits:
            limits[shape] = options.batch_pairs if options.batch_pairs != "auto" else \
                auto_batch_pairs(*shape, v.job.cfg.flow.tvl1,
                                 free_device_bytes(dev, options.memory_budget_gb))
            if options.batch_pairs == "auto":
                log.info("--batch-pairs auto: %d pairs per batch at %dx%d on %s",
                         limits[shape], shape[1], shape[0], dev)
        return limits[shape]

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

    def fail(v: _Video, error: str) -> None:
        """This video only: its remaining pairs leave the queue, finished() reports it."""
        v.error, v.pairs_left = error, 0
        rest = [item for item in queue if item[0] is not v]
        queue.clear()
        queue.extend(rest)

    def run_batch(batch: list[tuple[_Video, int]]) -> None:
        batch = [(v, i) for v, i in batch if v.error is None]
        if not batch:
            return
        cfg = batch[0][0].job.cfg
        prev = torch.from_numpy(np.stack([v.grey[i] for v, i in batch]))
        nxt = torch.from_numpy(np.stack([v.grey[i + cfg.step] for v, i in batch]))
        t = time.perf_counter()
        oom = None
        try:
            flow = tvl1(prev, nxt, cfg.flow.tvl1, dev, compiled=options.compiled)
            q = quantize_torch(flow, cfg.bound).cpu().numpy()  # [B, H, W, 2]
        except torch.cuda.OutOfMemoryError as e:
            oom = (str(e).strip() or "out of memory").splitlines()[0]
        if oom is not None:  # retried outside the except: its traceback held the memory
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            shape = batch[0][0].grey.shape[1:]
            if len(batch) == 1:
                fail(batch[0][0], f"out of device memory for one pair at {shape[1]}x"
                                  f"{shape[0]} on {dev}: {oom}")
                return
            half = (len(batch) + 1) // 2
            limits[shape] = min(limits.get(shape, half), half)
            log.warning("out of device memory at a batch of %d pairs (%dx%d) on %s: retrying "
                        "at %d pairs per batch (and so for the rest of this frame size)",
                        len(batch), shape[1], shape[0], dev, limits[shape])
            for v in {id(v): v for v, _ in batch}.values():
                v.oom_retries += 1
            rest = batch
            while rest:  # at the size now known to fit (a retry may lower it again)
                n = limits[shape]
                run_batch(rest[:n])
                rest = rest[n:]
            return
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
                if v.error is not None:
                    raise VideoError(v.error)
                meta = video_meta(v.info, v.num_frames, v.num_frames - v.job.cfg.step
                                  if v.job.cfg.flow_images else 0, v.job.cfg)
                meta["flow_backend"] = {"backend": "torch", "device_type": dev.type,
                                        "torch": torch.__version__.split("+")[0]}
                if v.oom_retries:  # how the run got here; the flow is the same either way
                    meta["flow_backend"]["out_of_memory"] = {
                        "retries": v.oom_retries, "batch_pairs": limits[v.grey.shape[1:]]}
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
            while pending_decodes and (not queue or len(queue) < limit(queue[0][0])
                                       or pending_decodes[0].done()):
                job, frames, info, err = pending_decodes.popleft().result()
                refill()
                if err is not None:
                    yield VideoResult.failed(job.rel, err)
                    continue
                open_videos.append(start(job, frames, info))
            if queue:
                n = min(limit(queue[0][0]), len(queue))
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
