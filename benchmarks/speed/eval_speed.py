"""Evaluation speed of the TSN test protocol: 25 segments x 10 crops per video, in chunks.

    python -m benchmarks.speed.eval_speed [--device cuda] [--quick] [--out results/eval_speed]

Scores 340x256 rawframes (the UCF101 fixture clips, or generated clips where the fixtures are
absent) through the calls the engine's `evaluate_dataset` makes per batch (`to_device`, then
`score_views`: the backbone sees the 250 views of a video in chunks of `--max-snippets`, the
scores come back to the host), for ResNet-18 and ResNet-101, RGB and flow (5 fields), in fp32
and what `--amp auto` picks, with channels_last on CUDA, decoding in the loader workers
(`--decode cpu`) or with torchvision in the main process (`--decode gpu`). How it times: the
loader and its iterator are built before the clock starts; warm-up batches (as many as the
workers hold in flight) are excluded; the device is synchronised before every clock read;
`--videos` videos are timed per column. Videos/s and the seconds the 3783 test videos of
UCF101 split 1 would take at that rate. Writes OUT/table.md|csv and OUT/run.json, the table
after every row. `--quick` (2 CPU cores, a few minutes): ResNet-18, 25 x 1 views, 4 videos
(2 per batch).
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader

from benchmarks.speed.common import (
    add_speed_args,
    auto_amp,
    dtype_name,
    peak_memory_gib,
    reset_peak_memory,
    speed_rawframes,
    sync,
    write_rows,
)
from flow_tools.device import resolve_device
from two_stream.data.datasets import ClipConfig, VideoDataset, collate_for
from two_stream.data.jpeg_batch import to_device
from two_stream.engine.evaluate import score_views
from two_stream.models.tsn import TSN, ModelConfig
from two_stream.report import note_start, write_run_json

UCF101_TEST_VIDEOS = 3783  # split 1
PREFETCH = 2  # the DataLoader default, as evaluate_dataset's loader


@torch.no_grad()
def videos_per_s(model, ds: VideoDataset, *, device: torch.device, amp_dtype, workers: int,
                 batch_videos: int, max_snippets: int, videos: int) -> float:
    """Steady-state videos/s over `videos` videos (a multiple of `batch_videos`)."""
    warm = max(1, workers * PREFETCH)
    loader = DataLoader(ds, batch_size=batch_videos, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda",
                        prefetch_factor=PREFETCH if workers > 0 else None,
                        collate_fn=collate_for(ds.decode))
    it = iter(loader)

    def run(n: int) -> int:
        done = 0
        for _ in range(n):
            x, _, _ = next(it)
            v, s = score_views(model, to_device(x, device), max_snippets, device,
                               amp_dtype=amp_dtype)
            v.cpu(), s.cpu()  # evaluation keeps the scores on the host
            done += len(v)
        return done

    run(warm)
    sync(device)
    t = time.perf_counter()
    n = run(videos // batch_videos)
    sync(device)
    return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_speed_args(p)
    p.add_argument("--videos", type=int, default=96, help="videos timed per column")
    p.add_argument("--crops", type=int, default=10, choices=(1, 3, 10))
    p.add_argument("--batch-videos", type=int, default=4)
    p.add_argument("--max-snippets", type=int, default=500)
    p.add_argument("--decode", nargs="+", choices=["cpu", "gpu"], default=["cpu", "gpu"])
    p.add_argument("--size", type=int, default=224,
                   help="crop side in px (the short side is scaled to 8/7 of it first)")
    p.add_argument("--quick", action="store_true",
                   help="ResNet-18, 25 x 1 views, 2 videos per batch, 4 videos")
    p.add_argument("--out", default="results/eval_speed")
    args = p.parse_args(argv)
    note_start()
    if args.quick:
        args.archs, args.crops, args.videos, args.batch_videos = ["resnet18"], 1, 4, 2
    args.videos = max(args.batch_videos, args.videos // args.batch_videos * args.batch_videos)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    src, records, data_what = speed_rawframes(args.fixtures, args.work)
    warm = max(1, args.workers * PREFETCH) * args.batch_videos
    records = records * ((args.videos + warm) // len(records) + 2)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    title = f"TSN evaluation speed ({gpu})"
    note = (f"{args.videos} videos timed per column after {warm} warm-up videos (the batches "
            f"{args.workers} workers hold in flight), loader built before the clock; data: "
            f"{data_what}, repeated; views chunked by {args.max_snippets} snippets, "
            f"{args.batch_videos} videos per batch, crops of {args.size} px; device "
            "synchronised before every clock read. The UCF101 column extrapolates to 3783 "
            "videos. peak_gib: peak GPU memory of the row. Machine in run.json.")
    auto = auto_amp(device)  # what training and evaluation pick by default: its row first
    amps = [auto] + ([None] if auto is not None else [])
    rows = []
    for arch in args.archs:
        for modality, length in (("rgb", 1), ("flow", 5)):
            clip = ClipConfig(modality=modality, new_length=length, input_size=args.size,
                              scale_size=args.size * 8 // 7, test_segments=25,
                              test_crops=args.crops)
            for dtype in amps:  # channels_last is not a row: on CUDA every row runs in it
                reset_peak_memory(device)
                torch.manual_seed(0)
                model = TSN(ModelConfig(num_classes=101, arch=arch, modality=modality,
                                        new_length=length)).to(device).eval()
                if device.type == "cuda":
                    model = model.set_channels_last()
                row = {"device": device.type, "arch": arch, "modality": modality,
                       "precision": ("auto = " if dtype == auto else "")
                       + dtype_name(dtype, device), "views": f"25 x {args.crops}",
                       "videos": args.videos}
                for decode in args.decode:
                    ds = VideoDataset(records, src, clip, train=False, decode=decode)
                    rate = videos_per_s(model, ds, device=device, amp_dtype=dtype,
                                        workers=args.workers, batch_videos=args.batch_videos,
                                        max_snippets=args.max_snippets, videos=args.videos)
                    row[f"videos_per_s_{decode}"] = round(rate, 2)
                    row[f"ucf101_split1_s_{decode} (extrapolated)"] = round(
                        UCF101_TEST_VIDEOS / rate, 0)
                row["peak_gib"] = peak_memory_gib(device)
                rows.append(row)
                print(row, flush=True)
                write_rows(rows, args.out, title, note)
    print(write_rows(rows, args.out, title, note))
    write_run_json(args.out, options=vars(args), device_name=gpu, data=data_what,
                   load_average=os.getloadavg())


if __name__ == "__main__":
    main()
