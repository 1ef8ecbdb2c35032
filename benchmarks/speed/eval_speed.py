"""Evaluation speed of the TSN test protocol: 25 segments x 10 crops per video, in chunks.

    python benchmarks/speed/eval_speed.py [--device cuda] [--quick] [--out results/eval_speed]

Scores real 340x256 rawframes of the UCF101 fixture clips with the engine's own
`evaluate_dataset` (the loader decodes, resizes and crops; the backbone sees the 250 views of a
video in chunks of `--max-snippets`), for ResNet-18 and ResNet-101, RGB and flow (5 fields), in
fp32 and AMP (bf16 on a CPU with fast bf16, fp16 on CUDA) with channels_last on CUDA. Videos/s
and the seconds the 3783 test videos of UCF101 split 1 would take at that rate (an
extrapolation from the videos timed: the table says how many). Writes OUT/table.md|csv and
OUT/run.json. `--quick` (2 CPU cores, a couple of minutes): ResNet-18, 25 x 1 views, 4 videos.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from benchmarks.speed.common import add_speed_args, precisions, ucf_rawframes
from flow_tools.device import resolve_device
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.engine.evaluate import evaluate_dataset
from two_stream.models.tsn import TSN, ModelConfig
from two_stream.report import note_start, write_run_json, write_table

UCF101_TEST_VIDEOS = 3783  # split 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_speed_args(p)
    p.add_argument("--videos", type=int, default=52, help="videos timed per row")
    p.add_argument("--crops", type=int, default=10, choices=(1, 3, 10))
    p.add_argument("--batch-videos", type=int, default=4)
    p.add_argument("--max-snippets", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="ResNet-18, 25 x 1 views, 4 videos")
    p.add_argument("--out", default="results/eval_speed")
    args = p.parse_args(argv)
    note_start()
    if args.quick:
        args.archs, args.crops, args.videos = ["resnet18"], 1, 4
    device = resolve_device(args.device)
    src, records = ucf_rawframes(args.fixtures, args.work)
    records = (records * (args.videos // len(records) + 1))[: args.videos]
    rows = []
    for arch in args.archs:
        for modality, length in (("rgb", 1), ("flow", 5)):
            clip = ClipConfig(modality=modality, new_length=length, input_size=224,
                              scale_size=256, test_segments=25, test_crops=args.crops)
            ds = VideoDataset(records, src, clip, train=False)
            # channels_last is not a row here: on CUDA every row runs in it
            for name, dtype in [(n, d) for n, d, nhwc in precisions(device) if not nhwc]:
                model = TSN(ModelConfig(num_classes=101, arch=arch, modality=modality,
                                        new_length=length)).to(device)
                if device.type == "cuda":
                    model = model.set_channels_last()
                evaluate_dataset(model, VideoDataset(records[:1], src, clip, train=False),
                                 device, 1, args.max_snippets, 0, dtype, True)  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t = time.perf_counter()
                evaluate_dataset(model, ds, device, args.batch_videos, args.max_snippets,
                                 args.workers, dtype, True)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                secs = time.perf_counter() - t
                rows.append({"device": device.type, "arch": arch, "modality": modality,
                             "precision": name, "views": f"25 x {args.crops}",
                             "videos": len(ds), "videos_per_s": round(len(ds) / secs, 2),
                             "ucf101_split1_s (extrapolated)": round(
                                 UCF101_TEST_VIDEOS * secs / len(ds), 0)})
                print(rows[-1])
    df = pd.DataFrame(rows)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(write_table(df, args.out, title=f"TSN evaluation speed ({gpu})",
                      note=f"{args.videos} videos timed per row (the 13 real UCF101 clips as "
                      "340x256 rawframes, repeated), one warm-up video first; views chunked "
                      f"by {args.max_snippets} snippets; {args.workers} loader workers; the "
                      "UCF101 column extrapolates to 3783 videos. Machine in run.json."))
    write_run_json(args.out, options=vars(args), device_name=gpu)


if __name__ == "__main__":
    main()
