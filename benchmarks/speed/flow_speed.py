"""Optical-flow speed and accuracy of the extractor's algorithms, on real footage.

    python -m benchmarks.speed.flow_speed [--fixtures ../shared/fixtures] [--frames 17]
        [--out results/flow]
        [--sections quality speed agreement] [--device cpu|cuda]

Speed: `flow_tools.extract` (decode, resize, flow, quantise, JPEG, write) on the first
`--frames` frames of real clips (UCF101, HMDB51, the slipping set), for each algorithm at
340x256 and at short side 128 (the demo's), with 1 and 2 workers; frame pairs per second and
the share of the time spent outside the flow computation.
Accuracy: mean end-point error (EPE) and share of pixels within 0.5 px on the Middlebury
RubberWhale pair (ground truth .flo) and on real UCF101 frames warped by a known smooth flow
field (first(y) = frame(y + h(y)), so the flow from first to frame is exactly h), before and
after the bound-20 quality-95 JPEG quantisation the rawframes store; for OpenCV's TV-L1 and
the PyTorch port (`--backend torch`).
Agreement: the torch backend against OpenCV's TV-L1 with the same (default) parameters on 8
frame pairs of every real clip, at short side 128 and at 340x256, after the quantisation:
share of pixels whose two components both lie within 3 grey levels (0.5 px), on moving pixels
(OpenCV flow > 1 px) and on the whole image, per clip and pooled over the clips where at least
1 % of the pixels move.
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

from flow_tools.device import resolve_device
from flow_tools.extract import ExtractConfig, extract_all
from flow_tools.flow import (
    ALGORITHMS,
    FlowParams,
    compute_flow,
    endpoint_error,
    read_flo,
)
from flow_tools.quantize import dequantize, quantize
from two_stream.data.frames import read_video_frames
from two_stream.data.synthetic import write_video
from two_stream.report import note_start, write_run_json, write_table

CLIPS = ["ucf101/v_Diving_g03_c07.avi", "ucf101/v_TennisSwing_g14_c03.avi",
         "hmdb51/TrumanShow_wave_f_nm_np1_fr_med_26.avi", "slipping/6100_2.mp4"]


def cut_clips(fixtures: Path, dst: Path, frames: int) -> int:
    """First `frames` frames of each real clip, re-encoded as MJPG .avi; returns pairs."""
    for rel in CLIPS:
        f = read_video_frames(fixtures / "videos" / rel, np.arange(frames))
        write_video(dst / (Path(rel).stem + ".avi"), f, 25)
    return len(CLIPS) * (frames - 1)


TORCH_ROWS = [("340x256", 16), ("short 128", 4), ("short 128", 16)]  # (size, batch pairs)


def speed_table(fixtures: Path, frames: int, device: str = "cpu") -> pd.DataFrame:
    rows = []
    sizes = {"340x256": {"new_size": (340, 256)}, "short 128": {"new_short": 128}}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clips"
        cut_clips(fixtures, src, frames)
        for size_name, batch in TORCH_ROWS:
            out = Path(tmp) / "out"
            shutil.rmtree(out, ignore_errors=True)
            cfg = ExtractConfig(flow=FlowParams("tvl1", backend="torch"), **sizes[size_name])
            s = extract_all(src, out, cfg, workers=2, quiet=True, device=device,
                            batch_pairs=batch)
            rows.append({"algorithm": f"tvl1 (torch, {device}, batch {batch})",
                         "size": size_name, "workers": 2, "pairs": s.pairs,
                         "seconds": round(s.seconds, 2),
                         "pairs_per_s": round(s.pairs / s.seconds, 2),
                         "share_outside_flow": round(max(1 - s.flow_seconds / s.seconds, 0), 3)})
            print(rows[-1])
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
    variants = [(a, FlowParams(a)) for a in ALGORITHMS]
    variants.insert(1, ("tvl1 (torch)", FlowParams("tvl1", backend="torch")))
    for algorithm, params in variants:
        for name, first, second, truth in pairs:
            t = time.perf_counter()
            flow = compute_flow(np.stack([first, second]), params)[0]
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


def clip_frames(path: Path, pairs: int, size: str) -> np.ndarray:
    """uint8 grey [pairs + 1, H, W]: the first frames of a clip, resized as the extractor does
    (INTER_AREA) to 340x256 or to short side 128."""
    frames = read_video_frames(path, np.arange(pairs + 1))
    h, w = frames.shape[1:3]
    if size == "340x256":
        dsize = (340, 256)
    else:
        dsize = (round(w * 128 / h), 128) if h <= w else (128, round(h * 128 / w))
    return np.stack([cv2.cvtColor(cv2.resize(f, dsize, interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_RGB2GRAY) for f in frames])


def jpeg_levels(flows: np.ndarray) -> np.ndarray:
    """[N, H, W, 2] px -> int grey levels after quantisation and the JPEG round trip."""
    q = quantize(flows)
    return np.stack([np.stack([cv2.imdecode(cv2.imencode(".jpg", f[..., c], [
        cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_GRAYSCALE) for c in range(2)], -1)
        for f in q]).astype(np.int16)


def agreement_table(fixtures: Path, pairs: int, device: str) -> pd.DataFrame:
    clips = sorted((fixtures / "videos").glob("*/*"))
    rows = []
    for size in ("short 128", "340x256"):
        pooled_agree = pooled_moving = pooled_all_agree = pooled_all = 0
        for clip in clips:
            grey = clip_frames(clip, pairs, size)
            t = time.perf_counter()
            ref = compute_flow(grey, "tvl1")
            t_cv = time.perf_counter() - t
            t = time.perf_counter()
            ours = compute_flow(grey, FlowParams("tvl1", backend="torch"), device=device,
                                batch_pairs=pairs)
            t_pt = time.perf_counter() - t
            agree = (np.abs(jpeg_levels(ref) - jpeg_levels(ours)) <= 3).all(-1)
            moving = np.linalg.norm(ref, axis=-1) > 1
            counted = moving.mean() >= 0.01
            if counted:
                pooled_agree += int(agree[moving].sum())
                pooled_moving += int(moving.sum())
                pooled_all_agree += int(agree.sum())
                pooled_all += agree.size
            rows.append({"size": size, "clip": f"{clip.parent.name}/{clip.stem}",
                         "pairs": len(ref), "moving_share": round(float(moving.mean()), 4),
                         "pooled": counted,
                         "agree_moving": round(float(agree[moving].mean()), 4)
                         if moving.any() else float("nan"),
                         "agree_all": round(float(agree.mean()), 4),
                         "mean_abs_diff_px": round(float(np.abs(ref - ours).mean()), 4),
                         "opencv_s_per_pair": round(t_cv / len(ref), 3),
                         "torch_s_per_pair": round(t_pt / len(ref), 3)})
            print(rows[-1])
        rows.append({"size": size, "clip": "POOLED (clips with >= 1 % moving pixels)",
                     "pairs": sum(r["pairs"] for r in rows if r["size"] == size and r["pooled"]),
                     "moving_share": round(pooled_moving / max(pooled_all, 1), 4),
                     "pooled": True, "agree_moving": round(pooled_agree / max(pooled_moving, 1), 4),
                     "agree_all": round(pooled_all_agree / max(pooled_all, 1), 4),
                     "mean_abs_diff_px": float("nan"), "opencv_s_per_pair": float("nan"),
                     "torch_s_per_pair": float("nan")})
    return pd.DataFrame(rows)


SECTIONS = ("quality", "speed", "agreement")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", default="../shared/fixtures", help="the real test files")
    p.add_argument("--frames", type=int, default=17, help="frames cut from each clip")
    p.add_argument("--pairs", type=int, default=8, help="frame pairs per clip (agreement)")
    p.add_argument("--device", default="cpu", help="device of the torch backend")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="which tables to (re)compute; each writes its own run_<section>.json")
    p.add_argument("--out", default="results/flow")
    args = p.parse_args(argv)
    note_start()
    fixtures = Path(args.fixtures)
    resolve_device(args.device)
    cv2.setNumThreads(1)
    if "agreement" in args.sections:
        agreement = agreement_table(fixtures, args.pairs, args.device)
        print(write_table(agreement, args.out, "agreement",
                          "TV-L1: PyTorch port vs OpenCV, same parameters (real clips)",
                          f"{args.pairs} consecutive frame pairs from the start of every real "
                          "clip in the fixtures, OpenCV's default TV-L1 parameters in both "
                          "backends (torch on " + args.device + "). Both flows quantised with "
                          "bound 20 and stored as JPEG quality 95 (as the rawframes are); a "
                          "pixel agrees when both components are within 3 grey levels "
                          "(0.47 px). moving: OpenCV flow > 1 px. Targets: >= 90 % of the "
                          "moving pixels and >= 97 % of all pixels, pooled over the clips "
                          "where >= 1 % of the pixels move. Seconds per pair: one run, "
                          "sequential, machine in run_agreement.json."))
        write_run_json(args.out, "run_agreement.json", options=vars(args))
    if "quality" in args.sections:
        quality = quality_table(fixtures)
        print(write_table(quality, args.out, "quality", "Flow accuracy against known flow",
                          "EPE: mean end-point error over known pixels, 8 px border excluded. "
                          "after_jpeg: quantised with bound 20 to 8 bits and stored as JPEG "
                          "quality 95, as the rawframes are. tvl1 (torch): the PyTorch port, "
                          "same parameters."))
        write_run_json(args.out, "run_quality.json", options=vars(args))
    if "speed" not in args.sections:
        return
    speed = speed_table(fixtures, args.frames, args.device)
    print(write_table(speed, args.out, "speed", "Flow extraction speed (real clips)",
                      f"{len(CLIPS)} real clips x {args.frames} frames ({', '.join(CLIPS)}), "
                      "full extraction (decode, resize, flow, quantise, JPEG, write); OpenCV "
                      "one thread per worker; share_outside_flow = 1 - flow time / (workers x "
                      "wall time). With only 4 short clips the 2-worker rows of the fast "
                      "algorithms mostly measure starting the worker processes (~0.5 s); "
                      "TV-L1 is where parallelism pays. torch rows: the PyTorch TV-L1 "
                      "(OpenCV's default parameters), 2 decoding threads, pairs of several "
                      "videos batched; on a CPU torch uses all cores for one batch, so compare "
                      "them with the 2-worker OpenCV rows; share_outside_flow = 1 - flow time / "
                      "wall time. Machine in run_speed.json."))
    write_run_json(args.out, "run_speed.json", options=vars(args), clips=CLIPS)


if __name__ == "__main__":
    main()
