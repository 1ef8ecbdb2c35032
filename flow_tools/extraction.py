"""The extraction library behind `python -m flow_tools.extract` (see that module for the
layout, resume and failure rules): one video with OpenCV (`extract_video`, `run_job` in worker
processes), a whole list with either backend (`extract_all`), and the failures files."""
from __future__ import annotations

import csv
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .device import resolve_device
from .errors import UserError
from .flow import make_flow_fn
from .params import ExtractConfig
from .quantize import quantize
from .rawframes import (
    VideoError,
    clean_stale_tmp,
    finish_video,
    frame_name,
    invalidate_frame_index,
    new_tmp_dir,
    read_done,
    video_id,
    video_meta,
    write_jpeg,
)
from .tmpfiles import tmp_name
from .videos import Job, VideoResult, check_frame_count, iter_frames, list_videos, parse_shard

log = logging.getLogger("flow_tools.extract")


def extract_video(src: Path, dst: Path, cfg: ExtractConfig) -> tuple[dict, float]:
    """Decode `src`, write frames and flow into `dst` (a fresh folder).

    Returns (meta, seconds spent in the flow computation). Meta holds nothing that varies
    between runs, so a re-extraction is byte-identical.
    """
    flow_fn = make_flow_fn(cfg.flow) if cfg.flow_images else None
    history: deque[np.ndarray] = deque(maxlen=cfg.step)
    info: dict = {}
    n_frames = n_flows = 0
    flow_seconds = 0.0
    for frame in iter_frames(src, cfg, info):
        n_frames += 1
        if cfg.rgb:
            write_jpeg(dst / frame_name("img", n_frames), frame, cfg.jpeg_quality)
        if flow_fn is not None:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if len(history) == cfg.step:
                t = time.perf_counter()
                flow = flow_fn(history[0], grey)
                flow_seconds += time.perf_counter() - t
                n_flows += 1
                q = quantize(flow, cfg.bound)
                write_jpeg(dst / frame_name("flow_x", n_flows), q[..., 0], cfg.jpeg_quality)
                write_jpeg(dst / frame_name("flow_y", n_flows), q[..., 1], cfg.jpeg_quality)
            history.append(grey)
    check_frame_count(n_frames, info.get("declared_frames", 0))
    return video_meta(info, n_frames, n_flows, cfg), flow_seconds


def run_job(job: Job) -> VideoResult:
    """Extract one video into its folder (the OpenCV backend; runs in a worker process)."""
    final = Path(job.out_root) / video_id(job.rel)
    tmp = new_tmp_dir(final)
    try:
        src = Path(job.video_root) / job.rel
        if not src.is_file():
            raise VideoError("file not found")
        meta, flow_seconds = extract_video(src, tmp, job.cfg)
        return VideoResult(job.rel, "done", finish_video(tmp, final, meta, job.rel),
                           flow_seconds=flow_seconds)
    except (VideoError, cv2.error, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return VideoResult.failed(job.rel, str(e))


def _init_worker() -> None:
    cv2.setNumThreads(1)  # N workers use N cores, no oversubscription


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    pairs: int = 0
    frames: int = 0
    seconds: float = 0.0
    flow_seconds: float = 0.0

    def line(self) -> str:
        rate = self.pairs / self.seconds if self.seconds else 0.0
        return (f"{self.done} videos done, {self.skipped} skipped (complete), {self.failed} "
                f"failed; {self.frames} frames, {self.pairs} flow pairs in {self.seconds:.1f} s "
                f"({rate:.1f} pairs/s)")


def pending(out_root: Path, rels: list[str], cfg: ExtractConfig, overwrite: bool = False
            ) -> list[str]:
    """The videos of `rels` not complete under `out_root` with these parameters (the resume
    rule: complete = meta.json present with the same parameters). A video done with other
    parameters is a UserError unless `overwrite`."""
    want = cfg.record()
    todo = []
    for rel in rels:
        meta = read_done(out_root, rel)
        if meta is not None and meta.get("params") == want:
            continue
        if meta is not None and not overwrite:
            diff = sorted(k for k in set(want) | set(meta.get("params", {}))
                          if want.get(k) != meta.get("params", {}).get(k))
            raise UserError(f"{out_root / video_id(rel)}: already extracted with other "
                            f"parameters ({', '.join(diff)} differ); use --overwrite or "
                            "another output folder")
        todo.append(rel)
    return todo


def extract_all(video_root: str | os.PathLike, out_root: str | os.PathLike,
                cfg: ExtractConfig, rels: list[str] | None = None, *, workers: int = 1,
                overwrite: bool = False, quiet: bool = False, shard_spec: str | None = None,
                device: str = "cpu", batch_pairs: int | str = 16,
                memory_budget_gb: float | None = None, flow_compile: str = "off") -> Summary:
    """Extract every video in `rels` (default: all under the root); see the module doc.

    `shard_spec` (I/N) only names this run's failures file. The rest is for the torch
    backend: `device`, `batch_pairs` (a number, or "auto": sized from free device memory, on
    a CPU from `memory_budget_gb`), `flow_compile` (auto | on | off: the compiled TV-L1
    iterations; the library default stays the eager reference, the command's is auto).
    """
    video_root, out_root = Path(video_root), Path(out_root)
    if not video_root.is_dir():
        raise UserError(f"{video_root}: video folder not found")
    rels = list_videos(video_root) if rels is None else rels
    out_root.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out_root)
    todo = pending(out_root, rels, cfg, overwrite)
    summary = Summary(skipped=len(rels) - len(todo))
    jobs = [Job(rel, str(video_root), str(out_root), cfg) for rel in todo]
    failures: list[tuple[str, str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=True if quiet else None,
               dynamic_ncols=True)
    pool = None
    if cfg.flow_images and cfg.flow.backend == "torch":
        from .batched import BatchOptions, extract_batched
        from .tvl1_torch import resolve_flow_compile
        compiled = resolve_flow_compile(flow_compile, resolve_device(device), interactive=False)
        results = extract_batched(jobs, BatchOptions(
            device=device, batch_pairs=batch_pairs, memory_budget_gb=memory_budget_gb,
            compiled=compiled, workers=max(workers, 1)))
    elif workers <= 1 or len(jobs) <= 1:  # no process pool for nothing (a rerun) or one video
        _init_worker()
        results = map(run_job, jobs)
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker)
        results = pool.imap_unordered(run_job, jobs)
    try:
        for r in results:
            if r.status == "done":
                summary.done += 1
                summary.frames += r.meta["num_frames"]
                summary.pairs += r.meta["num_flows"]
                summary.flow_seconds += r.flow_seconds
            else:
                summary.failed += 1
                failures.append((r.rel, r.error))
                log.warning("%s: %s", r.rel, r.error)
            elapsed = time.perf_counter() - start
            bar.set_postfix(pairs_per_s=f"{summary.pairs / max(elapsed, 1e-9):.1f}",
                            failed=summary.failed)
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    summary.seconds = time.perf_counter() - start
    if summary.done:  # the frame counts cached by the data layer may be stale now
        invalidate_frame_index(out_root)
    write_failures(out_root, failures, shard_spec)
    return summary


def failures_path(out_root: Path, shard_spec: str | None = None) -> Path:
    """`failures.csv`, or `failures.shard-I-of-N.csv` for one shard, so shards running at
    the same time never overwrite each other's list."""
    if not shard_spec:
        return out_root / "failures.csv"
    i, n = parse_shard(shard_spec)
    return out_root / f"failures.shard-{i}-of-{n}.csv"


def write_failures(out_root: Path, failures: list[tuple[str, str]],
                   shard_spec: str | None = None) -> None:
    """This run's failures file (path, reason); removed when nothing failed."""
    path = failures_path(out_root, shard_spec)
    if not failures:
        path.unlink(missing_ok=True)
        return
    tmp = tmp_name(path)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        w.writerows(sorted(failures))
    os.replace(tmp, path)
