"""Training speed: the model alone vs the whole pipeline (rawframes -> loader -> model).

    python -m benchmarks.speed.train_speed [--device cuda] [--quick] [--out results/train_speed]

For each backbone (ResNet-18, ResNet-101 at `--size` 224), modality (RGB: 3 segments x 1
frame; flow: 3 segments x 5 fields) and precision (`common.precisions`: on CUDA fp32 with
cuDNN's TF32 convolutions, bf16, fp16, and what `--amp auto` picks with channels_last), times
training steps through the engine's own `train_one_epoch`:
- `model_only`: batches already on the device (random uint8 snippets): what the device can do;
- `pipeline_cpu` / `pipeline_gpu`: the same model fed by the real loader (`VideoDataset` over
  340x256 rawframes, `--workers` processes, pinned memory on CUDA), decoding JPEGs in the
  workers (`--decode cpu`) or in the trainer with torchvision (`--decode gpu`: nvJPEG on CUDA,
  libjpeg-turbo on a CPU).
How it times: cudnn.benchmark on (as training), the device synchronised before every clock
read, warm-up steps excluded: for the pipeline one iterator per row, warmed for as many steps
as the loader holds batches in flight (workers x prefetch), so the timed steps are fed by the
workers' steady state, not by batches prefetched while the model warmed up. `ratio` = pipeline /
model_only: 1.0 means the data path keeps the device busy. Images/s count snippets (batch x
segments). A last row per stream runs the default-training settings under `torch.compile`
(`first_step_s`: the first warm-up step, which compiles). `peak_gib`: peak GPU memory of the
row. The table is rewritten after every row. Writes OUT/table.md|csv and OUT/run.json.
`--quick` (2 CPU cores, a few minutes): ResNet-18 only, batch 4, 3 timed steps, no compiled
rows unless `--compile on`.
"""
from __future__ import annotations

import argparse
import itertools
import os
import time

import torch
from torch.utils.data import DataLoader

from benchmarks.speed.common import (
    add_speed_args,
    auto_amp,
    peak_memory_gib,
    precisions,
    reset_peak_memory,
    speed_rawframes,
    sync,
    write_rows,
)
from flow_tools.device import resolve_device
from two_stream.config import OptimConfig
from two_stream.data.datasets import ClipConfig, VideoDataset, collate_for
from two_stream.engine.optim import build_optimizer, build_scheduler
from two_stream.engine.sampler import EpochSampler
from two_stream.engine.train import train_one_epoch
from two_stream.models.tsn import TSN, ModelConfig
from two_stream.report import note_start, write_run_json

SEGMENTS, FLOW_LENGTH = 3, 5




class Live:
    """A running iterator that `train_one_epoch` can take as its loader: `steps` batches
    further on, never a restart (re-iterating a persistent DataLoader inside a timing drains
    and refills every worker's prefetched batches)."""

    def __init__(self, it, steps: int):
        self.it, self.steps = it, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return itertools.islice(self.it, self.steps)


def time_steps(model, batches, *, device: torch.device, amp_dtype: torch.dtype | None,
               warmup: int, steps: int, batch: int) -> tuple[float, float]:
    """(snippet images per second over `steps` training steps, seconds of the first of the
    `warmup` steps before them: where a compiled model compiles). `batches`: an iterator of
    loader batches (or of batches already on the device)."""
    o = OptimConfig(lr=0.001, epochs=1, clip_grad=0.0)
    opt = build_optimizer(model, o)
    sched = build_scheduler(opt, o, warmup + steps)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    kw = dict(opt=opt, scheduler=sched, scaler=scaler, device=device, optim=o,
              amp_dtype=amp_dtype, quiet=True)
    sync(device)
    t = time.perf_counter()
    train_one_epoch(model, Live(batches, 1), epoch=0, **kw)
    sync(device)
    first = time.perf_counter() - t
    if warmup > 1:
        train_one_epoch(model, Live(batches, warmup - 1), epoch=0, **kw)
    sync(device)
    t = time.perf_counter()
    train_one_epoch(model, Live(batches, steps), epoch=1, **kw)
    sync(device)
    return steps * batch * SEGMENTS / (time.perf_counter() - t), first


def selected(row: tuple, names: list[str] | None, device: torch.device) -> bool:
    """Whether `--rows` asks for this precision row: its name starts with one of `names`;
    "auto" also names the row with training's default settings (on a CPU: fp32)."""
    if names is None or row[0].startswith(tuple(names)):
        return True
    return "auto" in names and row[1:] == (auto_amp(device), device.type == "cuda")


def build_model(arch: str, modality: str, length: int, device: torch.device,
                channels_last: bool, compiled: bool):
    torch.manual_seed(0)
    model = TSN(ModelConfig(num_classes=101, arch=arch, modality=modality,
                            new_length=length)).to(device)
    if channels_last:
        model = model.set_channels_last()
    return torch.compile(model) if compiled else model


def pipeline(model, ds: VideoDataset, *, decode: str, device: torch.device, amp_dtype,
             workers: int, prefetch: int, batch: int, steps: int) -> float:
    """Pipeline images/s: a fresh loader and one iterator for the row (start-up excluded)."""
    ds.decode = decode
    loader = DataLoader(ds, batch_size=batch, sampler=EpochSampler(len(ds), 0),
                        num_workers=workers, pin_memory=device.type == "cuda",
                        prefetch_factor=prefetch if workers > 0 else None, drop_last=True,
                        collate_fn=collate_for(decode))
    warmup = max(2, workers * prefetch)
    rate, _ = time_steps(model, iter(loader), device=device, amp_dtype=amp_dtype,
                         warmup=warmup, steps=steps, batch=batch)
    return rate


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_speed_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="videos per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--size", type=int, default=224, help="input side in px")
    p.add_argument("--prefetch", type=int, default=4,
                   help="batches per worker in flight (training's loaders: 4)")
    p.add_argument("--quick", action="store_true",
                   help="ResNet-18, batch 4, 3 steps")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="add a row per stream with the fastest settings under torch.compile "
                   "(auto: on, off with --quick: compiling takes about a minute per row on 2 "
                   "CPU cores)")
    p.add_argument("--out", default="results/train_speed")
    p.add_argument("--decode", nargs="+", choices=["cpu", "gpu"], default=["cpu", "gpu"],
                   help="pipeline rows: JPEGs decoded in the workers (cpu) or by torchvision "
                   "in the trainer (gpu)")
    p.add_argument("--rows", nargs="+", default=None,
                   help="only the precision rows whose name starts with one of these "
                   "(e.g. 'auto' for what training picks)")
    args = p.parse_args(argv)
    note_start()
    if args.quick:
        args.archs, args.batch_size, args.steps = ["resnet18"], 4, 3
    device = resolve_device(args.device)
    if device.type == "cuda":  # as training (engine.settings.configure_cudnn)
        torch.backends.cudnn.benchmark = True
    compiled = args.compile == "on" or (args.compile == "auto" and not args.quick)
    src, records, data_what = speed_rawframes(args.fixtures, args.work)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    title = f"Training speed ({gpu})"
    warm = max(2, args.workers * args.prefetch)
    note = (f"{SEGMENTS} segments x {args.size} px per video, images = snippets; batch "
            f"{args.batch_size}; {args.steps} timed steps per column, after warm-up steps "
            f"that are not timed ({warm} for both: the batches {args.workers} workers x "
            f"{args.prefetch} prefetch hold in flight; each pipeline a fresh loader); device "
            f"synchronised before every clock read; cudnn.benchmark on CUDA. fp32 on CUDA: "
            f"convolutions in TF32 (cuDNN's default, allow_tf32="
            f"{torch.backends.cudnn.allow_tf32}), matmuls in fp32. Pipeline data: {data_what}; "
            "pipeline_cpu decodes in the workers, pipeline_gpu with torchvision in the trainer "
            "(--decode gpu). first_step_s: the first warm-up step (compiling, for the + "
            "compile rows). peak_gib: peak GPU memory of the row. Machine in run.json.")
    rows = []
    for arch in args.archs:
        for modality, length in (("rgb", 1), ("flow", FLOW_LENGTH)):
            clip = ClipConfig(modality=modality, new_length=length, num_segments=SEGMENTS,
                              input_size=args.size)
            need = (warm + args.steps + 2) * args.batch_size
            ds = VideoDataset(records * (need // len(records) + 1), src, clip, train=True)
            rows_here = [(*r, False) for r in precisions(device) if selected(r, args.rows,
                                                                              device)]
            if compiled and rows_here:  # the last (default-training) settings, compiled
                name, amp, channels_last, _ = rows_here[-1]
                rows_here.append((f"{name} + compile", amp, channels_last, True))
            for name, amp, channels_last, compile_it in rows_here:
                reset_peak_memory(device)
                model = build_model(arch, modality, length, device, channels_last, compile_it)
                c = 3 if modality == "rgb" else 2 * length
                g = torch.Generator().manual_seed(0)
                shape = (args.batch_size, SEGMENTS, c, args.size, args.size)
                on_device = [(torch.randint(0, 256, shape, dtype=torch.uint8,
                                            generator=g).to(device),
                              torch.randint(0, 101, (args.batch_size,), generator=g).to(device),
                              None) for _ in range(4)]
                alone, first = time_steps(model, itertools.cycle(on_device), device=device,
                                          amp_dtype=amp, warmup=warm, steps=args.steps,
                                          batch=args.batch_size)
                del on_device
                row = {"device": device.type, "arch": arch, "modality": modality,
                       "precision": name, "batch": args.batch_size, "workers": args.workers,
                       "model_only_images_per_s": round(alone, 1)}
                for decode in args.decode:
                    piped = pipeline(model, ds, decode=decode, device=device, amp_dtype=amp,
                                     workers=args.workers, prefetch=args.prefetch,
                                     batch=args.batch_size,
                                     steps=args.steps)
                    row[f"pipeline_{decode}_images_per_s"] = round(piped, 1)
                    row[f"ratio_{decode}"] = round(piped / alone, 2)
                row["first_step_s"] = round(first, 1)
                row["peak_gib"] = peak_memory_gib(device)
                rows.append(row)
                print(row, flush=True)
                write_rows(rows, args.out, title, note)
                del model
    print(write_rows(rows, args.out, title, note))
    write_run_json(args.out, options=vars(args), device_name=gpu, data=data_what,
                   load_average=os.getloadavg())


if __name__ == "__main__":
    main()
