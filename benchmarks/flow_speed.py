"""Optical-flow speed and accuracy of the extractor's algorithms, on real footage.

    python benchmarks/flow_speed.py [--fixtures ../shared/fixtures] [--frames 17] [--out results/flow]

Speed: `flow_tools.extract` (decode, resize, flow, quantise, JPEG, write) on the first
`--frames` frames of real clips (UCF101, HMDB51, the slipping set), for each algorithm at
340x256 and at short side 128 (the demo's), with 1 and 2 workers; frame pairs per second and
the share of the time spent outside the flow computation.
Accuracy: mean end-point error (EPE) and share of pixels within 0.5 px on the Middlebury
RubberWhale pair (ground truth .flo) and on real UCF101 frames warped by a known smooth flow
field (first(y) = frame(y + h(y)), so the flow from first to frame is exactly h), before and
after the bound-20 quality-95 JPEG quantisation the rawframes store.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from flow_tools.extract import ExtractConfig, extract_all
from flow_tools.flow import ALGORITHMS, FlowParams, compute_flow, endpoint_error, read_flo
from flow_tools.quantize import dequantize, quantize
from two_stream.data.frames import read_video_frames
from two_stream.data.synthetic import write_video
from two_stream.report import write_run_json, write_table

CLIPS = ["ucf101/v_Diving_g03_c07.avi", "ucf101/v_TennisSwing_g14_c03.avi",
         "hmdb51/TrumanShow_wave_f_nm_np1_fr_med_26.avi", "slipping/6100_2.mp4"]


def cut_clips(fixtures: Path, dst: Path, frames: int) -> int:
    """First `frames` frames of each real clip, re-encoded as MJPG .avi; returns pairs."""
    for rel in CLIPS:
        f = read_video_frames(fixtures / "videos" / rel, np.arange(frames))
        write_video(dst / (Path(rel).stem + ".avi"), f, 25)
    return len(CLIPS) * (frames - 1)


def speed_table(fixtures: Path, frames: int) -> pd.DataFrame:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clips"
        cut_clips(fixtures, src, frames)
        for algorithm in ALGORITHMS:
            for size_name, kw in (("340x256", {"new_size": (340, 256)}),
                                  ("short 128", {"new_short": 128})):
                for workers in (1, 2):
                    out = Path(tmp) / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    cfg = ExtractConfig(flow=FlowParams(algorithm), **kw)
                    s = extract_all(src, out, cfg, workers=workers, quiet=True)
                    outside = 1 - s.flow_seconds / (workers * s.seconds)
                    rows.append({"algorithm": algorithm, "size": size_name, "workers": workers,
                                 "pairs": s.pairs, "seconds": round(s.seconds, 2),
                                 "pairs_per_s": round(s.pairs / s.seconds, 2),
                                 "share_outside_flow": round(max(outside, 0.0), 3)})
                    print(rows[-1])
    return pd.DataFrame(rows)


def smooth_field(h: int, w: int, amplitude: float, seed: int) -> np.ndarray:
    """A smooth flow field float32 [H, W, 2], |h| <= amplitude."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 2), np.float32)
    for c in range(2):
        for _ in range(3):
            fx, fy = rng.uniform(0.5, 2.0, 2) * 2 * np.pi / np.array([w, h])
            field[..., c] += np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
    return amplitude * field / np.abs(field).max()


def warped_pair(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """first(y) = frame(y + flow(y)): the flow from `first` to `frame` is exactly `flow`."""
    h, w = frame.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(frame, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)


def jpeg_round_trip(flow: np.ndarray, bound: float = 20.0, quality: int = 95) -> np.ndarray:
    q = quantize(flow, bound)
    dec = [cv2.imdecode(cv2.imencode(".jpg", q[..., c], [cv2.IMWRITE_JPEG_QUALITY, quality])[1],
                        cv2.IMREAD_GRAYSCALE) for c in range(2)]
    return dequantize(np.stack(dec, axis=-1), bound)


def quality_table(fixtures: Path) -> pd.DataFrame:
    pairs = []
    d = fixtures / "flow_gt" / "middlebury_RubberWhale"
    a = cv2.imread(str(d / "frame10.png"), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(d / "frame11.png"), cv2.IMREAD_GRAYSCALE)
    pairs.append(("Middlebury RubberWhale (584x388)", a, b, read_flo(d / "flow10.flo")))
    for i, rel in enumerate(CLIPS[:2] + ["ucf101/v_WritingOnBoard_g11_c02.avi"]):
        frame = cv2.cvtColor(read_video_frames(fixtures / "videos" / rel, np.array([10]))[0],
                             cv2.COLOR_RGB2GRAY)
        truth = smooth_field(*frame.shape, amplitude=4.0, seed=i)
        pairs.append((f"warped {Path(rel).stem} (320x240, |h|<=4 px)",
                      warped_pair(frame, truth), frame, truth))
    rows = []
    for algorithm in ALGORITHMS:
        for name, first, second, truth in pairs:
            t = time.perf_counter()
            flow = compute_flow(np.stack([first, second]), algorithm)[0]
            secs = time.perf_counter() - t
            m = 8  # ignore the border, where warped pairs have no true correspondence
            crop = (slice(m, -m), slice(m, -m))
            epe, within = endpoint_error(flow[crop], truth[crop])
            q_epe, q_within = endpoint_error(jpeg_round_trip(flow)[crop], truth[crop])
            rows.append({"algorithm": algorithm, "pair": name, "epe_px": round(epe, 3),
                         "within_0.5px": round(within, 3),
                         "epe_after_jpeg_px": round(q_epe, 3),
                         "within_0.5px_after_jpeg": round(q_within, 3),
                         "extra_epe_from_quantisation_px": round(q_epe - epe, 3),
                         "seconds_one_thread": round(secs, 3)})
            print(rows[-1])
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", default="../shared/fixtures", help="the real test files")
    p.add_argument("--frames", type=int, default=17, help="frames cut from each clip")
    p.add_argument("--out", default="results/flow")
    args = p.parse_args(argv)
    fixtures = Path(args.fixtures)
    cv2.setNumThreads(1)
    quality = quality_table(fixtures)
    speed = speed_table(fixtures, args.frames)
    print(write_table(speed, args.out, "speed", "Flow extraction speed (real clips)",
                      f"{len(CLIPS)} real clips x {args.frames} frames ({', '.join(CLIPS)}), "
                      "full extraction (decode, resize, flow, quantise, JPEG, write); OpenCV "
                      "one thread per worker; share_outside_flow = 1 - flow time / (workers x "
                      "wall time). With only 4 short clips the 2-worker rows of the fast "
                      "algorithms mostly measure starting the worker processes (~0.5 s); "
                      "TV-L1 is where parallelism pays. Machine in run.json."))
    print(write_table(quality, args.out, "quality", "Flow accuracy against known flow",
                      "EPE: mean end-point error over known pixels, 8 px border excluded. "
                      "after_jpeg: quantised with bound 20 to 8 bits and stored as JPEG quality "
                      "95, as the rawframes are."))
    write_run_json(args.out, options=vars(args), clips=CLIPS)


if __name__ == "__main__":
    main()
