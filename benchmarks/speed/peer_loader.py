"""Our loader and fusion numbers beside MMAction2 1.2.0's, measured in one run on one machine.

    python -m benchmarks.speed.peer_loader [--fixtures ../shared/fixtures] [--out results/peers]
    make peers

1. Builds (once, cached) a separate virtual environment with MMAction2 1.2.0 and its pins
   (`benchmarks/speed/peer_env.py`; never installed into the project's environment) and keeps
   one MMAction2 worker process running in it (`peer_worker.py`, JSON over a pipe).
2. Loader (`loader.md`): TSN training samples per second, 0 workers, one thread, batch 8,
   from the same 340x256 rawframes of the 13 real UCF101 fixture clips (72-189 frames: no
   clip repeats a frame, which MMAction2's RawFrameDecode would decode only once):
   MMAction2's RawframeDataset with its TSN pipeline (SampleFrames 3 clips of 1 / 5 frames,
   RawFrameDecode, MultiScaleCrop(224, (1, .875, .75, .66)), Resize(224, 224), Flip(0.5),
   FormatShape('NCHW'), PackActionInputs) against `two_stream.data.datasets.VideoDataset`
   (TSN train transforms, 3 segments). Each rate, per wall second and per second of the
   process's CPU time, is the best of `--repeats` passes taken in alternation with the other
   side's and with the bare `cv2.imdecode` bound (one thread, the same files from memory), so
   the ratios hold on a loaded machine.
3. Flip (`flip.md`): each side's flow (and RGB) flip against its unflipped sample, plane by
   plane: mirrored only, or mirrored and inverted (v -> 255 - v).
4. Fusion (`fusion.md`, `peer_fusion.py`): two real pairs of score files converted to
   MMAction2's 1.x test-dump format, MMAction2's own `report_accuracy.py` beside
   `benchmarks/fuse.py` on them.
`run.json`: both sides' versions, the load average before and after, the options.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from benchmarks.speed.common import ucf_rawframes
from benchmarks.speed.peer_env import DEFAULT_VENV, MARKER, ensure_peer_env
from benchmarks.speed.peer_flip import FLIP_CLAIMS, flip_table
from benchmarks.speed.peer_fusion import SETS, fusion_comparison, write_fixture
from two_stream.data.datasets import ClipConfig, VideoDataset, collate_samples
from two_stream.data.splits import VideoRecord
from two_stream.errors import EXIT_CODES_HELP, UserError, run_cli
from two_stream.report import note_start, write_run_json, write_table

WORKER = Path(__file__).with_name("peer_worker.py")
LENGTH = {"rgb": 1, "flow": 5}
JPEGS_PER_SAMPLE = {"rgb": 3, "flow": 30}  # 3 segments x (1 colour | 5 x 2 flow planes)


class PeerWorker:
    """The MMAction2 worker process: `call(op, **args)` -> its JSON answer."""

    def __init__(self, python: str | os.PathLike, log_path: str | os.PathLike):
        self.log = open(log_path, "w")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)  # nothing of ours in its path
        self.proc = subprocess.Popen([str(python), str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env, cwd=tempfile.gettempdir())

    def call(self, op: str, **args):
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the MMAction2 worker died during {op!r}; its log: "
                               f"{self.log.name}")
        res = json.loads(line)
        if not res.pop("ok"):
            raise RuntimeError(f"MMAction2 worker, {op}: {res['error']}\n{res['traceback']}")
        return res

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()

    def __enter__(self) -> "PeerWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ann_lines(records: list[VideoRecord], modality: str, repeat: int = 1) -> list[str]:
    """MMAction2 rawframe annotation lines (`video_id total_frames label`), the records
    `repeat` times in order: for flow, `total_frames` counts flow images (its RawframeDataset
    reads `flow_{x,y}_%05d` 1..total)."""
    lines = [f"{r.video_id} {r.num_frames if modality == 'rgb' else r.num_flows} {r.label}"
             for r in records]
    return lines * repeat


def clocks() -> tuple[float, float]:
    """(wall, this process's CPU) seconds. Both loaders run in one thread with 0 workers, so
    CPU time is the time each spent working: on a machine shared with other jobs it leaves
    out the time the scheduler gave to someone else, which the wall clock does not."""
    return time.perf_counter(), time.process_time()


def rates(n: int, start: tuple[float, float]) -> tuple[float, float]:
    """(per wall second, per CPU second) of `n` things since `start` (`clocks()`)."""
    wall, cpu = clocks()
    return n / (wall - start[0]), n / max(cpu - start[1], 1e-9)


def decode_rates(data: list[np.ndarray], grey: bool) -> tuple[float, float]:
    """JPEGs per wall / CPU second of one thread's cv2.imdecode of bytes in memory."""
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    t = clocks()
    for d in data:
        cv2.imdecode(d, flag)
    return rates(len(data), t)


def our_rates(ds: VideoDataset, batches: int, seed: int) -> tuple[float, float, tuple]:
    """Samples per wall / CPU second of `ds` over `batches` batches of 8 after a warm-up
    batch, and the sample shape: the loop the worker's `time` runs, with our collate (the same
    shuffle order for the same seed)."""
    ds.set_epoch(seed)
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=0,
                        collate_fn=collate_samples, generator=torch.Generator().manual_seed(seed))
    it = iter(loader)
    shape = tuple(next(it)[0].shape[1:])
    t = clocks()
    n = 0
    for _ in range(batches):
        n += len(next(it)[0])
    return (*rates(n, t), shape)


def keep_best(best: dict, key: tuple[str, str], measured) -> None:
    """best[key] = the elementwise maximum of it and `measured` (wall, cpu)."""
    best[key] = np.maximum(best.get(key, 0.0), np.asarray(measured, float))


LOADERS = {"ours": "two-stream VideoDataset", "mmaction2": "MMAction2 RawframeDataset, TSN"}


def compare_loaders(worker: PeerWorker, src, records: list[VideoRecord], work: Path, *,
                    batches: int, repeats: int, repeat_videos: int = 16) -> pd.DataFrame:
    """One row per (modality, loader): best-of-`repeats` samples per wall and per CPU
    second, with the decode bounds. Every pass measures, for each modality, both bounds and
    both loaders, the order of the two sides swapped every pass."""
    root = Path(src.root).resolve()  # the worker runs elsewhere
    short = [r.video_id for r in records if r.num_flows < 3 * LENGTH["flow"]]
    if short:  # a clip would repeat frames, which RawFrameDecode decodes once: flattering
        raise UserError(f"{root}: {len(short)} videos have fewer than {3 * LENGTH['flow']} "
                        f"flow fields (e.g. {short[0]}): too short for a fair comparison")
    ann = {}
    for m in LENGTH:
        ann[m] = str(work / f"ann_{m}.txt")
        Path(ann[m]).write_text("\n".join(ann_lines(records, m, repeat_videos)) + "\n")
    worker.call("setup", root=str(root), ann=ann)
    rows = []
    for m, length in LENGTH.items():
        pattern = "img_*.jpg" if m == "rgb" else "flow_[xy]_*.jpg"
        files = sorted(str(f) for f in root.glob(f"*/*/{pattern}"))
        files = random.Random(0).sample(files, min(600, len(files)))
        data = [np.fromfile(f, np.uint8) for f in files]
        clip = ClipConfig(modality=m, new_length=length, input_size=224)
        ours = VideoDataset(records * repeat_videos, src, clip, train=True)
        best: dict[tuple[str, str], np.ndarray] = {}  # (side, what) -> best [wall, cpu]
        shapes = {}

        for p in range(repeats):
            for side in (["ours", "mmaction2"] if p % 2 == 0 else ["mmaction2", "ours"]):
                if side == "ours":
                    keep_best(best, (side, "bound"), decode_rates(data, grey=m == "flow"))
                    *sps, shapes[side] = our_rates(ours, batches, seed=p)
                else:
                    res = worker.call("bound", files=files, grey=m == "flow")
                    keep_best(best, (side, "bound"), (res["jpegs_per_s"], res["jpegs_per_cpu_s"]))
                    res = worker.call("time", modality=m, batches=batches, seed=p)
                    sps = res["samples_per_s"], res["samples_per_cpu_s"]
                    shapes[side] = tuple(res["shape"])
                keep_best(best, (side, "loader"), sps)
            print(f"{m} pass {p + 1}/{repeats}: " + ", ".join(
                f"{s} {w} {v[0]:.1f}/s {v[1]:.1f}/cpu-s" for (s, w), v in best.items()),
                file=sys.stderr)
        bound = best["ours", "bound"] / JPEGS_PER_SAMPLE[m]  # [wall, cpu] samples/s
        theirs = best["mmaction2", "loader"]
        for side, name in LOADERS.items():
            sps, own = best[side, "loader"], best[side, "bound"] / JPEGS_PER_SAMPLE[m]
            rows.append({"modality": m, "loader": name,
                         "sample": "x".join(map(str, shapes[side])),
                         "samples_per_s": round(sps[0], 1),
                         "samples_per_cpu_s": round(sps[1], 1),
                         "decode_bound_samples_per_s": round(bound[0], 1),
                         "share_of_bound": round(sps[0] / bound[0], 3),
                         "share_of_bound_cpu": round(sps[1] / bound[1], 3),
                         "share_of_own_env_bound_cpu": round(sps[1] / own[1], 3),
                         "vs_mmaction2": round(sps[0] / theirs[0], 3),
                         "vs_mmaction2_cpu": round(sps[1] / theirs[1], 3)})
    return pd.DataFrame(rows)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--fixtures", default="../shared/fixtures",
                   help="the real clips (videos/ucf101) and score files (scores/)")
    p.add_argument("--work", default="data/speed_rawframes_tvl1",
                   help="rawframes made here once (shared with loader_speed)")
    p.add_argument("--peer-venv", default=str(DEFAULT_VENV),
                   help="the MMAction2 environment: built here once, reused after")
    p.add_argument("--batches", type=int, default=12, help="timed batches of 8 per pass")
    p.add_argument("--repeats", type=int, default=9, help="alternating passes; best kept")
    p.add_argument("--skip-loader", action="store_true",
                   help="only the fusion comparison (run.json then describes only it)")
    p.add_argument("--skip-fusion", action="store_true",
                   help="only loader and flip (run.json then describes only them)")
    p.add_argument("--write-fixture", metavar="DIR",
                   help="only write the MMAction2 1.x dump test fixture into DIR "
                        "(tests/data_files)")
    p.add_argument("--out", default="results/peers")
    return p


LOADER_NOTE = (
    "TSN training samples (3 segments; RGB 3x3x224x224, flow 3x10x224x224, uint8), 0 loader "
    "workers, one torch / OpenCV thread per process, batches of 8 from a shuffled list of the "
    "13 real UCF101 fixture clips x 16 (340x256 rawframes: RGB JPEGs and TV-L1 flow JPEGs, "
    "72-189 frames, so no clip repeats a frame), the same files for both. MMAction2: "
    "RawframeDataset + SampleFrames(clip_len 1 | 5, num_clips 3), RawFrameDecode, "
    "MultiScaleCrop(224, (1, .875, .75, .66), max_wh_scale_gap 1), Resize((224, 224), "
    "keep_ratio False), Flip(0.5), FormatShape('NCHW'), PackActionInputs, mmengine's "
    "pseudo_collate, in its own virtual environment (versions in run.json), driven from this "
    "run over a pipe. Ours: VideoDataset (TSN train transforms) with collate_samples. "
    "decode bound: one thread decoding 600 random rawframe JPEGs of the modality from memory "
    "with the project's cv2.imdecode (share_of_bound = samples_per_s / bound); own_env: the "
    "same with the OpenCV of each loader's own environment. *_cpu columns: per second of the "
    "process's CPU time instead of the wall clock (one thread, 0 workers: the time it spent "
    "working, without what the scheduler gave other jobs on this shared machine). "
    "vs_mmaction2: samples/s over MMAction2's. Every figure is the best of the passes, taken "
    "in alternation (the two sides swap order every pass): compare the ratios, which one run "
    "measures side by side, not the "
    "absolute rates (load average in run.json).")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> int:
        note_start()
        load_before = os.getloadavg()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        fixtures = Path(args.fixtures)
        need = ([] if args.skip_loader else [fixtures / "videos" / "ucf101"]) + (
            [] if args.skip_fusion else [fixtures / "scores" / ss.name for ss in SETS])
        missing = [str(d) for d in need if not d.is_dir()]
        if missing and not args.write_fixture:
            raise UserError(f"{missing[0]}: fixture folder not found (the real clips and score "
                            "files this comparison runs on; --fixtures names their root)")
        python = ensure_peer_env(args.peer_venv)
        extra: dict = {"peer_env": json.loads((Path(args.peer_venv).expanduser()
                                               / MARKER).read_text())}
        failed = 0
        with tempfile.TemporaryDirectory(prefix="peers_") as tmp, \
                PeerWorker(python, Path(tmp) / "worker.log") as worker:
            extra["mmaction2_side"] = worker.call("versions")
            if args.write_fixture:
                print(json.dumps(write_fixture(worker, Path(args.write_fixture)), indent=2))
                return 0
            if not args.skip_loader:
                src, records = ucf_rawframes(args.fixtures, args.work)
                df = compare_loaders(worker, src, records, Path(tmp), batches=args.batches,
                                     repeats=args.repeats)
                print(write_table(df, out, "loader", "Data loading: two-stream vs MMAction2 "
                                  "1.2.0 (one run)", LOADER_NOTE))
                flips, ok = flip_table(worker, src, records, Path(tmp))
                failed += not ok
                print(write_table(flips, out, "flip", "Horizontal flip, plane by plane",
                                  FLIP_CLAIMS))
            if not args.skip_fusion:
                fusion, ok, info = fusion_comparison(worker, python, Path(args.fixtures),
                                                     Path(tmp), out)
                failed += not ok
                extra["fusion"] = info
        write_run_json(out, options=vars(args), loadavg_before=load_before,
                       loadavg_after=os.getloadavg(), **extra)
        if failed:
            print("some checks did not hold: see flip.md's 'as claimed' and fusion.md's "
                  "'equal' columns", file=sys.stderr)
        return 1 if failed else 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
