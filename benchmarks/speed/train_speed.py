"""Training speed: the model alone vs the whole pipeline (rawframes -> loader -> model).

    python benchmarks/speed/train_speed.py [--device cuda] [--quick] [--out results/train_speed]

For each backbone (ResNet-18, ResNet-101 at 224), modality (RGB: 3 segments x 1 frame; flow:
3 segments x 5 fields) and precision (fp32; AMP; AMP + channels_last), times training steps
through the engine's own `train_one_epoch`:
- `model_only`: batches already on the device (random uint8 snippets): what the device can do;
- `pipeline`: the same model fed by the real loader (`VideoDataset` over 340x256 rawframes of
  the real UCF101 fixture clips, `--workers` processes, pinned memory on CUDA).
`ratio` = pipeline / model_only: 1.0 means the data path keeps the device busy. Images/s count
snippets (batch x segments) per second. AMP is bf16 on a CPU (rows skipped where the CPU has no
fast bf16) and fp16 with a gradient scaler on CUDA. A last row per stream runs the fastest of
these under `torch.compile` (inductor; the training option `--compile`); `first_step_s` is the
warm-up step, which includes compiling. Writes OUT/table.md|csv and OUT/run.json.
`--quick` (2 CPU cores, a couple of minutes): ResNet-18 only, batch 4, 3 timed steps, no
compiled rows unless `--compile on`.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from torch.utils.data import DataLoader

from benchmarks.speed.common import add_speed_args, precisions, ucf_rawframes
from flow_tools.device import resolve_device
from two_stream.config import OptimConfig
from two_stream.data.datasets import ClipConfig, VideoDataset, collate_samples
from two_stream.engine.train import EpochSampler, build_optimizer, build_scheduler, train_one_epoch
from two_stream.models.tsn import TSN, ModelConfig
from two_stream.report import note_start, write_run_json, write_table

SEGMENTS, FLOW_LENGTH, SIZE = 3, 5, 224


def time_steps(model, batches, device, amp_dtype, steps: int) -> tuple[float, float]:
    """(snippet images per second over `steps` training steps, seconds of the warm-up step
    before them: where a compiled model compiles)."""
    o = OptimConfig(lr=0.001, epochs=1, clip_grad=0.0)
    opt = build_optimizer(model, o)
    sched = build_scheduler(opt, o, steps + 1)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    it = iter(batches)
    warm = [next(it)]
    t = time.perf_counter()
    train_one_epoch(model, warm, opt, sched, scaler, device, o, amp_dtype, 0, True)
    warmup = time.perf_counter() - t
    timed = [next(it) for _ in range(steps)] if isinstance(batches, list) else None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    if timed is not None:  # model only: the batches are already on the device
        train_one_epoch(model, timed, opt, sched, scaler, device, o, amp_dtype, 1, True)
    else:  # the loader runs inside the timing
        train_one_epoch(model, batches, opt, sched, scaler, device, o, amp_dtype, 1, True,
                        steps=steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    n = sum(len(x) * x.shape[1] for x, _, _ in (timed or warm * steps))
    return n / (time.perf_counter() - t), warmup


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_speed_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="videos per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--quick", action="store_true", help="ResNet-18, batch 4, 3 steps")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="add a row per stream with the fastest settings under torch.compile "
                   "(auto: on, off with --quick: compiling takes about a minute per row on 2 "
                   "CPU cores)")
    p.add_argument("--out", default="results/train_speed")
    args = p.parse_args(argv)
    note_start()
    if args.quick:
        args.archs, args.batch_size, args.steps = ["resnet18"], 4, 3
    device = resolve_device(args.device)
    compiled = args.compile == "on" or (args.compile == "auto" and not args.quick)
    src, records = ucf_rawframes(args.fixtures, args.work)
    rows = []
    for arch in args.archs:
        for modality, length in (("rgb", 1), ("flow", FLOW_LENGTH)):
            clip = ClipConfig(modality=modality, new_length=length, num_segments=SEGMENTS,
                              input_size=SIZE)
            ds = VideoDataset(records * 64, src, clip, train=True)
            rows_here = [(*r, False) for r in precisions(device)]
            if compiled:  # the fastest eager settings, compiled
                name, amp, channels_last, _ = rows_here[-1]
                rows_here.append((f"{name} + compile", amp, channels_last, True))
            for name, amp, channels_last, compile_it in rows_here:
                torch.manual_seed(0)
                model = TSN(ModelConfig(num_classes=101, arch=arch, modality=modality,
                                        new_length=length)).to(device)
                if channels_last:
                    model = model.set_channels_last()
                if compile_it:
                    model = torch.compile(model)
                c = 3 if modality == "rgb" else 2 * length
                g = torch.Generator().manual_seed(0)
                on_device = [(torch.randint(0, 256, (args.batch_size, SEGMENTS, c, SIZE, SIZE),
                                            dtype=torch.uint8, generator=g).to(device),
                              torch.randint(0, 101, (args.batch_size,), generator=g).to(device),
                              None) for _ in range(args.steps + 1)]
                alone, warmup = time_steps(model, on_device, device, amp, args.steps)
                del on_device
                loader = DataLoader(ds, batch_size=args.batch_size, sampler=EpochSampler(
                    len(ds), 0), num_workers=args.workers, pin_memory=device.type == "cuda",
                    persistent_workers=args.workers > 0,
                    prefetch_factor=4 if args.workers > 0 else None, drop_last=True,
                    collate_fn=collate_samples)
                piped, _ = time_steps(model, loader, device, amp, args.steps)
                rows.append({"device": device.type, "arch": arch, "modality": modality,
                             "precision": name, "batch": args.batch_size,
                             "workers": args.workers,
                             "model_only_images_per_s": round(alone, 1),
                             "pipeline_images_per_s": round(piped, 1),
                             "ratio": round(piped / alone, 2),
                             "first_step_s": round(warmup, 1)})
                print(rows[-1])
    df = pd.DataFrame(rows)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(write_table(df, args.out, title=f"Training speed ({gpu})",
                      note=f"{SEGMENTS} segments x {SIZE} px per video, images = snippets; "
                      f"{args.steps} timed steps after one warm-up; pipeline: real 340x256 "
                      "rawframes of 13 UCF101 clips through VideoDataset and a DataLoader with "
                      f"{args.workers} workers. first_step_s: the warm-up step (compiling, for "
                      "the + compile rows). Machine in run.json."))
    write_run_json(args.out, options=vars(args), device_name=gpu)


if __name__ == "__main__":
    main()
