"""Optical-flow speed and accuracy of the extractor's algorithms, on real footage.

    python -m benchmarks.speed.flow_speed [--fixtures ../shared/fixtures] [--frames 17]
        [--out results/flow] [--quick] [--threads 2]
        [--sections quality speed agreement kernels latency compile] [--device cpu|cuda]

Speed: `flow_tools.extract` (decode, resize, flow, quantise, JPEG, write) on the first
`--frames` frames of real clips (UCF101, HMDB51, the slipping set), for each algorithm at
340x256 and at short side 128 (the demo's), with 1 and 2 workers; frame pairs per second and
the share of the time spent outside the flow computation.
Accuracy: mean end-point error (EPE) and share of pixels within 0.5 px on the Middlebury
RubberWhale pair (ground truth .flo) and on real UCF101 frames warped by a known smooth flow
field (first(y) = frame(y + h(y)), so the flow from first to frame is exactly h), before and
after the bound-20 quality-95 JPEG quantisation the rawframes store; for OpenCV's TV-L1 and
the PyTorch port (`--backend torch`).
Compiled TV-L1 (`--flow-compile on`): torch rows eager and compiled in the speed table (the
compile done by a warm-up at each frame size, reported apart), kernels per inner iteration
(eager: computing aten ops in torch.profiler; compiled: kernels inductor generates), single-pair
latency (what `live` computes per frame) and compile seconds with a cold and a warm cache.
Where OpenCV lacks `cv2.optflow` (the lent GPU machine) its TV-L1 rows say `skipped`.
Agreement: the torch backend against OpenCV's TV-L1 with the same (default) parameters on 8
frame pairs of every real clip, at short side 128 and at 340x256, after the quantisation:
share of pixels whose two components both lie within 3 grey levels (0.5 px), on moving pixels
(OpenCV flow > 1 px) and on the whole image, per clip and pooled over the clips where at least
1 % of the pixels move.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from benchmarks.speed import tvl1_compiled
from flow_tools.device import resolve_device
from flow_tools.extraction import extract_all
from flow_tools.flow import compute_flow, endpoint_error, read_flo
from flow_tools.params import ALGORITHMS, ExtractConfig, FlowParams
from flow_tools.quantize import dequantize, quantize
from flow_tools.tvl1_torch import tvl1
from flow_tools.videos import target_size
from two_stream.data.frames import read_video_frames
from two_stream.data.synthetic import write_video
from two_stream.report import note_start, write_run_json, write_table

CLIPS = ["ucf101/v_Diving_g03_c07.avi", "ucf101/v_TennisSwing_g14_c03.avi",
         "hmdb51/TrumanShow_wave_f_nm_np1_fr_med_26.avi", "slipping/6100_2.mp4"]


def cut_clips(fixtures: Path, dst: Path, frames: int, clips: list[str] = CLIPS) -> int:
    """First `frames` frames of each real clip, re-encoded as MJPG .avi; returns pairs."""
    for rel in clips:
        f = read_video_frames(fixtures / "videos" / rel, np.arange(frames))
        write_video(dst / (Path(rel).stem + ".avi"), f, 25)
    return len(clips) * (frames - 1)


SIZES = {"340x256": {"new_size": (340, 256)}, "short 128": {"new_short": 128}}
HAS_TVL1 = hasattr(cv2, "optflow")  # opencv-contrib; the lent GPU machine's OpenCV lacks it


def _warm_up(src: Path, size_name: str, device: torch.device, single: bool) -> float:
    """Compile the TV-L1 graphs of every frame size the clips have at this size setting (at
    short side 128 the clips' aspect ratios differ: one set of graphs each), a batch of 2
    pairs and of 1 where a batch of one pair will occur, outside every timed row; returns the
    seconds it took."""
    shapes = {}
    for clip in sorted(src.glob("*.avi")):
        grey = clip_frames(clip, 2, size_name)
        shapes.setdefault(grey.shape[1:], grey)
    t = time.perf_counter()
    for grey in shapes.values():
        for n in (2, 1) if single else (2,):
            tvl1(torch.from_numpy(grey[:n]), torch.from_numpy(grey[1:n + 1]), device=device,
                 compiled=True)
    tvl1_compiled.sync(device)
    return time.perf_counter() - t


def speed_table(fixtures: Path, frames: int, device: torch.device, *, quick: bool = False,
                sizes: list[str] | None = None, torch_paths: tuple[str, ...] = ("off", "on")
                ) -> tuple[pd.DataFrame, dict]:
    """Extraction rows (torch eager / compiled, OpenCV algorithms) and the warm-up seconds."""
    rows, warm = [], {}
    sizes = sizes or (["short 128"] if quick else list(SIZES))
    batch = 8 if quick else 16
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clips"
        pairs = cut_clips(fixtures, src, frames, CLIPS[:2] if quick else CLIPS)
        if device.type == "cuda":  # context creation and the first kernels stay out
            tvl1(torch.zeros(1, 32, 32, dtype=torch.uint8), torch.zeros(1, 32, 32,
                 dtype=torch.uint8), device=device)
            tvl1_compiled.sync(device)
        opencv_2 = {}
        algorithms = ["tvl1"] if quick else list(ALGORITHMS)
        for algorithm in algorithms:
            for size_name in sizes:
                for workers in (1, 2):
                    row = {"algorithm": algorithm, "size": size_name, "workers": workers}
                    if algorithm == "tvl1" and not HAS_TVL1:
                        rows.append({**row, "status": "skipped: this OpenCV has no cv2.optflow"})
                        continue
                    out = Path(tmp) / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    cfg = ExtractConfig(flow=FlowParams(algorithm), **SIZES[size_name])
                    s = extract_all(src, out, cfg, workers=workers, quiet=True)
                    outside = 1 - s.flow_seconds / (workers * s.seconds)
                    rows.append({**row, "status": "ok", "pairs": s.pairs,
                                 "seconds": round(s.seconds, 2),
                                 "pairs_per_s": round(s.pairs / s.seconds, 2),
                                 "share_outside_flow": round(max(outside, 0.0), 3)})
                    if algorithm == "tvl1" and workers == 2:
                        opencv_2[size_name] = s.pairs / s.seconds
                    print(rows[-1], flush=True)
        for size_name in sizes:
            if "on" in torch_paths:
                warm[size_name] = round(_warm_up(src, size_name, device,
                                                 single=pairs % batch == 1), 1)
            for compile_mode in torch_paths:
                out = Path(tmp) / "out"
                shutil.rmtree(out, ignore_errors=True)
                cfg = ExtractConfig(flow=FlowParams("tvl1", backend="torch"), **SIZES[size_name])
                s = extract_all(src, out, cfg, workers=2, quiet=True, device=str(device),
                                batch_pairs=batch, flow_compile=compile_mode)
                name = "compiled" if compile_mode == "on" else "eager"
                rate = s.pairs / s.seconds
                rows.append({"algorithm": f"tvl1 (torch {name}, {device.type}, batch {batch})",
                             "size": size_name, "workers": 2, "status": "ok", "pairs": s.pairs,
                             "seconds": round(s.seconds, 2), "pairs_per_s": round(rate, 2),
                             "share_outside_flow": round(max(1 - s.flow_seconds / s.seconds,
                                                             0), 3),
                             "vs_opencv_tvl1_2_workers": round(rate / opencv_2[size_name], 2)
                             if size_name in opencv_2 else float("nan")})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows), warm


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


def _jpeg_grey(q: np.ndarray, quality: int = 95) -> np.ndarray:
    """uint8 [H, W, 2] grey levels -> the same after each component's JPEG round trip."""
    return np.stack([cv2.imdecode(cv2.imencode(".jpg", q[..., c], [
        cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE) for c in range(2)], -1)


def jpeg_round_trip(flow: np.ndarray, bound: float = 20.0, quality: int = 95) -> np.ndarray:
    return dequantize(_jpeg_grey(quantize(flow, bound), quality), bound)


def quality_table(fixtures: Path, device: torch.device) -> pd.DataFrame:
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
            flow = compute_flow(np.stack([first, second]), params, device=str(device))[0]
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
    dsize = target_size(w, h, ExtractConfig(**SIZES[size]))
    return np.stack([cv2.cvtColor(cv2.resize(f, dsize, interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_RGB2GRAY) for f in frames])


def jpeg_levels(flows: np.ndarray) -> np.ndarray:
    """[N, H, W, 2] px -> int grey levels after quantisation and the JPEG round trip."""
    return np.stack([_jpeg_grey(f) for f in quantize(flows)]).astype(np.int16)


def _agreement(ref: np.ndarray, ours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agree, moving) [N, H, W]: both components within 3 grey levels after the JPEG round
    trip; OpenCV flow > 1 px."""
    agree = (np.abs(jpeg_levels(ref) - jpeg_levels(ours)) <= 3).all(-1)
    return agree, np.linalg.norm(ref, axis=-1) > 1


def agreement_table(fixtures: Path, pairs: int, device: torch.device, *, quick: bool = False
                    ) -> pd.DataFrame:
    """Per clip and pooled: torch eager and compiled against OpenCV's TV-L1."""
    clips = sorted((fixtures / "videos").glob("*/*"))[:2 if quick else None]
    rows = []
    for size in ("short 128",) if quick else ("short 128", "340x256"):
        pooled = {k: 0 for k in ("moving", "all", "eager_m", "eager_a", "comp_m", "comp_a")}
        for clip in clips:
            grey = clip_frames(clip, pairs, size)
            t = time.perf_counter()
            ref = compute_flow(grey, "tvl1")
            t_cv = time.perf_counter() - t
            prev, nxt = torch.from_numpy(grey[:-1]), torch.from_numpy(grey[1:])
            t = time.perf_counter()
            eager = tvl1(prev, nxt, device=device).cpu().numpy()
            t_pt = time.perf_counter() - t
            comp = tvl1(prev, nxt, device=device, compiled=True).cpu().numpy()
            agree, moving = _agreement(ref, eager)
            agree_c, _ = _agreement(ref, comp)
            counted = moving.mean() >= 0.01
            if counted:
                for key, n in (("moving", moving.sum()), ("all", agree.size),
                               ("eager_m", agree[moving].sum()), ("eager_a", agree.sum()),
                               ("comp_m", agree_c[moving].sum()), ("comp_a", agree_c.sum())):
                    pooled[key] += int(n)
            share = (lambda a, m: round(float(a[m].mean()), 4) if m.any() else float("nan"))
            rows.append({"size": size, "clip": f"{clip.parent.name}/{clip.stem}",
                         "pairs": len(ref), "moving_share": round(float(moving.mean()), 4),
                         "pooled": counted, "agree_moving": share(agree, moving),
                         "agree_all": round(float(agree.mean()), 4),
                         "agree_moving_compiled": share(agree_c, moving),
                         "agree_all_compiled": round(float(agree_c.mean()), 4),
                         "mean_abs_diff_px": round(float(np.abs(ref - eager).mean()), 4),
                         "opencv_s_per_pair": round(t_cv / len(ref), 3),
                         "torch_eager_s_per_pair": round(t_pt / len(ref), 3)})
            print(rows[-1], flush=True)
        m, a = max(pooled["moving"], 1), max(pooled["all"], 1)
        rows.append({"size": size, "clip": "POOLED (clips with >= 1 % moving pixels)",
                     "pairs": sum(r["pairs"] for r in rows if r["size"] == size and r["pooled"]),
                     "moving_share": round(pooled["moving"] / a, 4), "pooled": True,
                     "agree_moving": round(pooled["eager_m"] / m, 4),
                     "agree_all": round(pooled["eager_a"] / a, 4),
                     "agree_moving_compiled": round(pooled["comp_m"] / m, 4),
                     "agree_all_compiled": round(pooled["comp_a"] / a, 4)})
    return pd.DataFrame(rows)


def compiled_tables(args: argparse.Namespace, device: torch.device, fixtures: Path
                    ) -> list[tuple[str, pd.DataFrame, str, str]]:
    """The kernels, latency and compile sections: (name, table, title, note) each."""
    out = []
    if "kernels" in args.sections:
        n_compiled, secs = tvl1_compiled.compiled_kernels_per_iteration(device)
        df = pd.DataFrame([{"path": "eager", "kernels_per_inner_iteration":
                            tvl1_compiled.eager_kernels_per_iteration(device)},
                           {"path": "compiled (inductor)", "kernels_per_inner_iteration":
                            n_compiled, "compile_s": round(secs, 1)}])
        out.append(("kernels", df, "TV-L1: kernels per inner iteration",
                    f"{device.type}. eager: computing aten ops of one inner iteration in "
                    "torch.profiler (views left out); compiled: kernels inductor generates for "
                    "a one-iteration chunk (fresh compile, FX cache off). Goal <= 4."))
    if "latency" in args.sections:
        size = "short 128" if args.quick else "340x256"
        grey = clip_frames(fixtures / "videos" / CLIPS[0], 1, size)
        row = {"size": size, **tvl1_compiled.single_pair_latency(grey, device)}
        out.append(("latency", pd.DataFrame([row]), "TV-L1: one pair (what live computes)",
                    f"{device.type}, {torch.get_num_threads()} threads, OpenCV's default "
                    "parameters, a real UCF101 pair; first_call: includes compiling (or the "
                    "cache load). Seconds per pair: mean of 2 warm calls."))
    if "compile" in args.sections:
        h, w = (128, 171) if args.quick else (256, 340)
        row = {"size": f"{w}x{h}", **tvl1_compiled.compile_seconds(
            h, w, device=str(device), threads=args.threads)}
        out.append(("compile", pd.DataFrame([row]), "TV-L1: compile time",
                    "The first compiled tvl1 call (2 pairs, all pyramid levels: compiling plus "
                    "one run) in a fresh process with an empty inductor cache (cold), then in "
                    "another fresh process with that cache (warm)."))
    return out


SECTIONS = ("quality", "speed", "agreement", "kernels", "latency", "compile")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", default="../shared/fixtures", help="the real test files")
    p.add_argument("--frames", type=int, default=17, help="frames cut from each clip")
    p.add_argument("--pairs", type=int, default=8, help="frame pairs per clip (agreement)")
    p.add_argument("--device", default="cpu", help="device of the torch backend")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quick", action="store_true",
                   help="a short run (2 clips, short side 128, 5 frames, 2 agreement pairs, "
                        "TV-L1 only) that checks the script end to end")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="which tables to (re)compute; each writes its own run_<section>.json")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=None,
                   help="speed: frame sizes (default: both; --quick: short 128)")
    p.add_argument("--torch-paths", nargs="+", choices=["eager", "compiled"],
                   default=["eager", "compiled"], help="speed: which torch rows")
    p.add_argument("--out", default="results/flow")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the sections; returns 0 (a missing cv2.optflow skips the OpenCV TV-L1 rows and the
    agreement table, it does not fail)."""
    args = get_args_parser().parse_args(argv)
    if args.quick:
        args.frames, args.pairs = min(args.frames, 5), min(args.pairs, 2)
    note_start()
    fixtures = Path(args.fixtures)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    load = {"loadavg_at_start": os.getloadavg()}
    if "agreement" in args.sections and not HAS_TVL1:
        print("agreement: skipped (this OpenCV has no cv2.optflow)")
    elif "agreement" in args.sections:
        agreement = agreement_table(fixtures, args.pairs, device, quick=args.quick)
        print(write_table(agreement, args.out, "agreement",
                          "TV-L1: PyTorch port (eager and compiled) vs OpenCV, same parameters",
                          f"{args.pairs} consecutive frame pairs from the start of "
                          f"{'2' if args.quick else 'every'} real clip(s) in the fixtures, "
                          "OpenCV's default TV-L1 parameters in both backends (torch on "
                          f"{device}). Both flows quantised with bound 20 and stored as JPEG "
                          "quality 95 (as the rawframes are); a pixel agrees when both "
                          "components are within 3 grey levels (0.47 px). moving: OpenCV flow "
                          "> 1 px. Pooled over the clips where >= 1 % of the pixels move. "
                          "Seconds per pair: one run, sequential."))
        write_run_json(args.out, "run_agreement.json", options=vars(args), **load)
    if "quality" in args.sections and not HAS_TVL1:
        print("quality: skipped (this OpenCV has no cv2.optflow)")
    elif "quality" in args.sections:
        quality = quality_table(fixtures, device)
        print(write_table(quality, args.out, "quality", "Flow accuracy against known flow",
                          "EPE: mean end-point error over known pixels, 8 px border excluded. "
                          "after_jpeg: quantised with bound 20 to 8 bits and stored as JPEG "
                          "quality 95, as the rawframes are. tvl1 (torch): the PyTorch port, "
                          f"same parameters, on {device}."))
        write_run_json(args.out, "run_quality.json", options=vars(args), **load)
    for name, df, title, note in compiled_tables(args, device, fixtures):
        print(write_table(df, args.out, name, title, note))
        write_run_json(args.out, f"run_{name}.json", options=vars(args), **load,
                       loadavg_at_end=os.getloadavg())
    if "speed" in args.sections:
        paths = tuple({"eager": "off", "compiled": "on"}[x] for x in args.torch_paths)
        speed, warm = speed_table(fixtures, args.frames, device, quick=args.quick,
                                  sizes=args.sizes, torch_paths=paths)
        clips = CLIPS[:2] if args.quick else CLIPS
        print(write_table(speed, args.out, "speed", "Flow extraction speed (real clips)",
                          f"{len(clips)} real clips x {args.frames} frames ({', '.join(clips)}),"
                          " full extraction (decode, resize, flow, quantise, JPEG, write); "
                          "OpenCV one thread per worker; share_outside_flow = 1 - flow time / "
                          "(workers x wall time). torch rows: the PyTorch TV-L1 (OpenCV's "
                          f"default parameters) on {device}, {args.threads} torch threads, 2 "
                          "decoding threads, pairs of several videos batched; compiled: "
                          "--flow-compile on, its graphs compiled before the row by a warm-up "
                          f"(seconds per size: {warm}); vs_opencv_tvl1_2_workers: pairs/s over "
                          "the 2-worker OpenCV TV-L1 row of the same size, same run. Machine "
                          "and load in run_speed.json."))
        write_run_json(args.out, "run_speed.json", options=vars(args), clips=clips,
                       warm_up_s=warm, **load, loadavg_at_end=os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
