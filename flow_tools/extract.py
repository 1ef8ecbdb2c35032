"""Extract RGB frames and quantised optical flow from videos into the rawframe layout.

    python -m flow_tools.extract VIDEOS OUT [--list split.txt] [--algorithm tvl1|dis|farneback]
        [--backend opencv|torch --device cpu|cuda[:N] --batch-pairs N]
        [--bound 20] [--new-short 256 | --new-size 340 256] [--step 1] [--workers N]
        [--shard I/N] [--rgb-only | --flow-only] [--jpeg-quality 95] [--overwrite]

Output per video (`video_id` = path under VIDEOS without extension, class folder kept):
`OUT/<video_id>/img_%05d.jpg`, `flow_x_%05d.jpg`, `flow_y_%05d.jpg` (the denseflow / MMAction2
layout and encoding) and `meta.json`, written last. A video is built in a temporary folder and
renamed into place, so a kill leaves either nothing or a complete video; a rerun skips complete
videos whose parameters match and finishes the rest. Videos that cannot be read go to
`OUT/failures.csv` (`OUT/failures.shard-I-of-N.csv` with --shard) and the run goes on; the exit
code is 1 when any failed. Shards of one list may run at the same time into one folder: a run
only removes temporary folders whose owner process is gone, and each shard keeps its own
failures file. `--backend torch` computes TV-L1 in batches of frame pairs from several videos
on `--device` (flow_tools.batched).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .device import resolve_device
from .errors import EXIT_CODES_HELP, EXIT_OK, EXIT_SOME_FAILED, UserError, run_cli
from .flow import (
    ALGORITHMS,
    BACKENDS,
    DIS_PRESETS,
    FlowParams,
    TVL1Params,
    make_flow_fn,
)
from .quantize import DEFAULT_BOUND, quantize
from .tmpfiles import TMP_MARK, tmp_name, tmp_owner_gone

log = logging.getLogger("flow_tools.extract")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
FORMAT_VERSION = 1


class VideoError(Exception):
    """A video that cannot be extracted (the message goes to failures.csv)."""


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that determines the output files (compared against meta.json on reruns)."""

    flow: FlowParams = FlowParams()
    bound: float = DEFAULT_BOUND
    new_short: int = 0  # resize so the short side is this (0: keep)
    new_size: tuple[int, int] | None = None  # (W, H), overrides new_short
    step: int = 1
    rgb: bool = True
    flow_images: bool = True
    jpeg_quality: int = 95

    @classmethod
    def from_record(cls, rec: dict) -> "ExtractConfig":
        """The inverse of `record`: the configuration some rawframes were made with."""
        return cls(flow=FlowParams.from_record(rec["flow"]) if rec.get("flow") else FlowParams(),
                   bound=float(rec.get("bound", DEFAULT_BOUND)),
                   new_short=int(rec.get("new_short") or 0),
                   new_size=tuple(rec["new_size"]) if rec.get("new_size") else None,
                   step=int(rec.get("step", 1)), rgb=bool(rec.get("rgb", True)),
                   flow_images=bool(rec.get("flow_images", True)),
                   jpeg_quality=int(rec.get("jpeg_quality", 95)))

    def record(self) -> dict:
        """The parameters a rerun must match, as plain JSON."""
        return {"format_version": FORMAT_VERSION,
                "flow": self.flow.record() if self.flow_images else None,
                "bound": self.bound, "new_short": self.new_short,
                "new_size": list(self.new_size) if self.new_size else None, "step": self.step,
                "rgb": self.rgb, "flow_images": self.flow_images,
                "jpeg_quality": self.jpeg_quality}


def list_videos(video_root: Path, list_file: Path | None = None) -> list[str]:
    """Relative video paths, sorted: every video under the root, or those named in a list
    file (first column, e.g. a UCF101 `trainlist01.txt`)."""
    if list_file is None:
        if not video_root.is_dir():
            raise UserError(f"{video_root}: video folder not found")
        return sorted(p.relative_to(video_root).as_posix() for p in video_root.rglob("*")
                      if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not video_root.is_dir():
        raise UserError(f"{video_root}: video folder not found")
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


def shard(items: list[str], spec: str | None) -> list[str]:
    """`I/N`: every N-th item starting at I (0-based); the N shards partition the list."""
    if not spec:
        return items
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise UserError(f"--shard must be I/N with integers, got {spec!r}") from None
    if not 0 <= i < n:
        raise UserError(f"--shard {spec}: need 0 <= I < N")
    return items[i::n]


def target_size(w: int, h: int, cfg: ExtractConfig) -> tuple[int, int]:
    if cfg.new_size:
        return cfg.new_size
    if cfg.new_short:
        s = cfg.new_short
        return (round(w * s / h), s) if h <= w else (s, round(h * s / w))
    return w, h


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise VideoError(f"{path}: cannot write JPEG")


def iter_frames(src: Path, cfg: ExtractConfig, info: dict):
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


def video_meta(info: dict, n_frames: int, n_flows: int, cfg: ExtractConfig) -> dict:
    return {"num_frames": n_frames, "num_flows": n_flows, **info, "bound": cfg.bound,
            "params": cfg.record()}


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
            _write_jpeg(dst / f"img_{n_frames:05d}.jpg", frame, cfg.jpeg_quality)
        if flow_fn is not None:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if len(history) == cfg.step:
                t = time.perf_counter()
                flow = flow_fn(history[0], grey)
                flow_seconds += time.perf_counter() - t
                n_flows += 1
                q = quantize(flow, cfg.bound)
                _write_jpeg(dst / f"flow_x_{n_flows:05d}.jpg", q[..., 0], cfg.jpeg_quality)
                _write_jpeg(dst / f"flow_y_{n_flows:05d}.jpg", q[..., 1], cfg.jpeg_quality)
            history.append(grey)
    check_frame_count(n_frames, info.get("declared_frames", 0))
    return video_meta(info, n_frames, n_flows, cfg), flow_seconds


@dataclass(frozen=True)
class Job:
    rel: str
    video_root: str
    out_root: str
    cfg: ExtractConfig


def video_id(rel: str) -> str:
    """`Class/v_Class_g08_c01.avi` -> `Class/v_Class_g08_c01`: the key of every later file."""
    rel = rel.replace("\\", "/")
    stem, ext = os.path.splitext(rel)
    return stem if ext.lower() in VIDEO_EXTENSIONS else rel


def new_tmp_dir(final: Path) -> Path:
    """The folder a video is built in: its owner (host and pid) is in the name, so a
    concurrent shard can tell a folder being written from one left by a killed run."""
    tmp = tmp_name(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def finish_video(tmp: Path, final: Path, meta: dict, rel: str) -> dict:
    """meta.json written last into the temporary folder, then the folder renamed into
    place: a complete video appears at once or not at all."""
    meta["source"] = rel
    meta["video_id"] = video_id(rel)
    meta_tmp = tmp / ".meta.json.tmp"
    meta_tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(meta_tmp, tmp / "meta.json")  # its presence = complete
    if final.exists():  # an incomplete folder (no meta.json) or --overwrite
        shutil.rmtree(final)
    os.replace(tmp, final)
    return meta


def run_job(job: Job) -> tuple[str, str, dict | None, str | None, float]:
    """(rel, status, meta, error, flow seconds): status 'done' or 'failed'. Runs in a worker
    process."""
    final = Path(job.out_root) / video_id(job.rel)
    tmp = new_tmp_dir(final)
    try:
        src = Path(job.video_root) / job.rel
        if not src.is_file():
            raise VideoError("file not found")
        meta, flow_seconds = extract_video(src, tmp, job.cfg)
        return job.rel, "done", finish_video(tmp, final, meta, job.rel), None, flow_seconds
    except (VideoError, cv2.error, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return job.rel, "failed", None, str(e), 0.0


def _init_worker() -> None:
    cv2.setNumThreads(1)  # N workers use N cores, no oversubscription


def read_done(out_root: Path, rel: str) -> dict | None:
    p = out_root / video_id(rel) / "meta.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None  # treated as incomplete and redone


def clean_stale_tmp(out_root: Path) -> int:
    """Remove temporary folders left by killed runs on this host; never those of a live
    process (another shard writing into the same folder)."""
    n = 0
    if out_root.exists():
        for p in out_root.rglob(f".*{TMP_MARK}*"):
            if p.is_dir() and tmp_owner_gone(p):
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


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


def extract_all(video_root: str | os.PathLike, out_root: str | os.PathLike,
                cfg: ExtractConfig, rels: list[str] | None = None, workers: int = 1,
                overwrite: bool = False, quiet: bool = False, shard_spec: str | None = None,
                device: str = "cpu", batch_pairs: int = 16) -> Summary:
    """Extract every video in `rels` (default: all under the root); see the module doc.
    `shard_spec` (I/N) only names this run's failures file; `device` and `batch_pairs` are
    for the torch backend."""
    video_root, out_root = Path(video_root), Path(out_root)
    if not video_root.is_dir():
        raise UserError(f"{video_root}: video folder not found")
    rels = list_videos(video_root) if rels is None else rels
    out_root.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out_root)
    want = cfg.record()
    todo, summary = [], Summary()
    for rel in rels:
        meta = read_done(out_root, rel)
        if meta is not None and meta.get("params") == want:
            summary.skipped += 1
        elif meta is not None and not overwrite:
            diff = sorted(k for k in set(want) | set(meta.get("params", {}))
                          if want.get(k) != meta.get("params", {}).get(k))
            raise UserError(f"{out_root / video_id(rel)}: already extracted with other "
                            f"parameters ({', '.join(diff)} differ); use --overwrite or "
                            "another output folder")
        else:
            todo.append(rel)
    jobs = [Job(rel, str(video_root), str(out_root), cfg) for rel in todo]
    failures: list[tuple[str, str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=True if quiet else None,
               dynamic_ncols=True)
    if cfg.flow_images and cfg.flow.backend == "torch":
        from .batched import extract_batched
        results = extract_batched(jobs, device, batch_pairs, max(workers, 1))
        pool = None
    elif workers <= 1 or len(jobs) <= 1:  # no process pool for nothing (a rerun) or one video
        _init_worker()
        results = map(run_job, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker)
        results = pool.imap_unordered(run_job, jobs)
    try:
        for rel, status, meta, err, flow_seconds in results:
            if status == "done":
                summary.done += 1
                summary.frames += meta["num_frames"]
                summary.pairs += meta["num_flows"]
                summary.flow_seconds += flow_seconds
            else:
                summary.failed += 1
                failures.append((rel, err))
                log.warning("%s: %s", rel, err)
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
        (out_root / "frame_index.json").unlink(missing_ok=True)
    write_failures(out_root, failures, shard_spec)
    return summary


def failures_path(out_root: Path, shard_spec: str | None = None) -> Path:
    """`failures.csv`, or `failures.shard-I-of-N.csv` for one shard, so shards running at
    the same time never overwrite each other's list."""
    if not shard_spec:
        return out_root / "failures.csv"
    i, n = shard_spec.split("/")
    return out_root / f"failures.shard-{int(i)}-of-{int(n)}.csv"


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


def get_args_parser() -> argparse.ArgumentParser:
    d, t = ExtractConfig(), TVL1Params()
    p = argparse.ArgumentParser(prog="python -m flow_tools.extract",
                                description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("videos", help="folder of videos (searched recursively; class sub-folders "
                                  "are kept in the video id)")
    p.add_argument("out", help="output rawframe folder")
    p.add_argument("--list", help="only the videos in this list file (paths relative to "
                                  "VIDEOS, first column), e.g. a split list")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="tvl1")
    p.add_argument("--backend", choices=BACKENDS, default="opencv",
                   help="opencv: one pair at a time per worker process; torch: TV-L1 in "
                        "PyTorch, pairs of several videos batched on --device")
    p.add_argument("--device", default="cpu", help="torch backend: cpu, cuda or cuda:N")
    p.add_argument("--batch-pairs", type=int, default=16,
                   help="torch backend: frame pairs per batch on the device")
    p.add_argument("--dis-preset", choices=sorted(DIS_PRESETS), default="medium")
    p.add_argument("--tvl1-nscales", type=int, default=t.nscales)
    p.add_argument("--tvl1-warps", type=int, default=t.warps)
    p.add_argument("--tvl1-inner-iterations", type=int, default=t.inner_iterations)
    p.add_argument("--tvl1-outer-iterations", type=int, default=t.outer_iterations)
    p.add_argument("--tvl1-epsilon", type=float, default=t.epsilon)
    p.add_argument("--bound", type=float, default=d.bound, help="flow clipped to +-bound px")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--new-short", type=int, default=0, help="resize the short side (0: keep)")
    g.add_argument("--new-size", type=int, nargs=2, metavar=("W", "H"),
                   help="resize to W x H (e.g. 340 256)")
    p.add_argument("--step", type=int, default=1, help="flow between frame i and i+step")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--rgb-only", action="store_true")
    m.add_argument("--flow-only", action="store_true")
    p.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    p.add_argument("--workers", type=int, default=1,
                   help="parallel processes (torch backend: decoding threads)")
    p.add_argument("--shard", help="I/N: process only shard I (0-based) of N")
    p.add_argument("--overwrite", action="store_true",
                   help="re-extract videos done with other parameters")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    tvl1 = replace(TVL1Params(), nscales=args.tvl1_nscales, warps=args.tvl1_warps,
                   inner_iterations=args.tvl1_inner_iterations,
                   outer_iterations=args.tvl1_outer_iterations, epsilon=args.tvl1_epsilon)
    return ExtractConfig(flow=FlowParams(args.algorithm, tvl1, args.dis_preset,
                                         backend=args.backend),
                         bound=args.bound, new_short=args.new_short,
                         new_size=tuple(args.new_size) if args.new_size else None,
                         step=args.step, rgb=not args.flow_only,
                         flow_images=not args.rgb_only, jpeg_quality=args.jpeg_quality)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def body() -> int:
        cfg = config_from_args(args)
        rels = shard(list_videos(Path(args.videos), Path(args.list) if args.list else None),
                     args.shard)
        if args.backend == "torch":
            resolve_device(args.device)  # a clear error before any work
            if args.batch_pairs < 1:
                raise UserError(f"--batch-pairs must be >= 1, got {args.batch_pairs}")
        summary = extract_all(args.videos, args.out, cfg, rels, args.workers, args.overwrite,
                              args.quiet, args.shard, args.device, args.batch_pairs)
        print(summary.line())
        if summary.failed:
            print(f"failures listed in {failures_path(Path(args.out), args.shard)}",
                  file=sys.stderr)
        return EXIT_SOME_FAILED if summary.failed else EXIT_OK
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
