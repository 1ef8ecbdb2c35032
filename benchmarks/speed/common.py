"""What the speed benchmarks share: UCF101-shaped rawframes made from the real fixture clips."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from flow_tools.extract import ExtractConfig, extract_all
from flow_tools.flow import LIGHT_TVL1, FlowParams
from two_stream.data.frames import RawframeSource
from two_stream.data.splits import VideoRecord, resolve_records


def ucf_rawframes(fixtures: str | Path, out: str | Path
                  ) -> tuple[RawframeSource, list[VideoRecord]]:
    """340x256 rawframes (RGB JPEGs and flow JPEGs) of the 13 real UCF101 clips, made once in
    `out`. The flow is TV-L1 with the demo's light parameters: its images have the texture (so
    the JPEG decoding cost) of real TV-L1 flow, which DIS's much smoother fields do not
    (they decode 2-3x faster), at a fraction of default TV-L1's time."""
    videos = Path(fixtures) / "videos"
    rels = sorted(p.relative_to(videos).as_posix() for p in (videos / "ucf101").glob("*.avi"))
    extract_all(videos, out, ExtractConfig(flow=FlowParams("tvl1", LIGHT_TVL1),
                                           new_size=(340, 256)),
                rels, workers=2, quiet=True)
    src = RawframeSource(out)
    ids = [r[: r.rindex(".")] for r in rels]
    return src, resolve_records([VideoRecord(v, 0) for v in ids], src.counts(ids))


def add_speed_args(p: argparse.ArgumentParser) -> None:
    """What the model speed benchmarks (train_speed, eval_speed) share."""
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fixtures", default="../shared/fixtures")
    p.add_argument("--work", default="data/speed_rawframes_tvl1",
                   help="rawframes made here once")
    p.add_argument("--archs", nargs="+", default=["resnet18", "resnet101"])
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 autocast on a CPU is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precisions(device: torch.device) -> list[tuple[str, torch.dtype | None, bool]]:
    """(name, autocast dtype, channels_last) rows a speed benchmark runs on this device: fp32,
    then AMP (fp16 on CUDA, bf16 on a CPU with fast bf16) with and without channels_last."""
    rows = [("fp32", None, False)]
    amp = torch.float16 if device.type == "cuda" else torch.bfloat16
    if device.type == "cuda" or cpu_has_fast_bf16():
        name = "amp fp16" if device.type == "cuda" else "amp bf16"
        rows += [(name, amp, False), (f"{name} + channels_last", amp, True)]
    return rows
