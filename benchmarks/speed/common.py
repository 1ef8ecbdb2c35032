"""What the speed benchmarks share: UCF101-shaped rawframes (made from the real fixture clips,
or generated where the fixtures are absent, as on a lent GPU machine), the precision rows,
and timing that synchronises the device before every clock read."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import pandas as pd
import torch

from flow_tools.extraction import extract_all
from flow_tools.params import LIGHT_TVL1, ExtractConfig, FlowParams
from two_stream.data.frames import RawframeSource
from two_stream.data.splits import VideoRecord, resolve_records
from two_stream.data.synthetic import SyntheticConfig, generate
from two_stream.report import write_table


def _records(out: str | Path, rels: list[str]) -> tuple[RawframeSource, list[VideoRecord]]:
    """The rawframes extracted to `out` from the videos `rels` (relative paths with their
    extension): their source and one record each (label 0), with its frame count."""
    src = RawframeSource(out)
    ids = [r[: r.rindex(".")] for r in rels]
    return src, resolve_records([VideoRecord(v, 0) for v in ids], src.counts(ids))


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
    return _records(out, rels)


def synthetic_rawframes(work: str | Path, videos: int = 8, frames: int = 24
                        ) -> tuple[RawframeSource, list[VideoRecord], str]:
    """340x256 rawframes of `videos` generated clips (moving shapes on textured ground), made
    once under `work`: for machines without the fixtures. Flow: light TV-L1 where OpenCV
    has it (`cv2.optflow`), else DIS (smoother fields, which decode faster: the table says
    which)."""
    work = Path(work)
    generate(work / "synthetic", SyntheticConfig(num_groups=2, clips_per_group=1,
                                                  test_groups=1, num_frames=frames, width=340,
                                                  height=256), quiet=True)
    root = work / "synthetic" / "videos"
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.avi"))[:videos]
    tvl1 = hasattr(cv2, "optflow")
    flow = FlowParams("tvl1", LIGHT_TVL1) if tvl1 else FlowParams("dis")
    out = work / ("synthetic_tvl1" if tvl1 else "synthetic_dis")
    extract_all(root, out, ExtractConfig(flow=flow, new_size=(340, 256)), rels, workers=2,
                quiet=True)
    what = (f"{len(rels)} generated clips of {frames} frames as 340x256 rawframes, flow "
            + ("light TV-L1" if tvl1 else "DIS (this OpenCV has no TV-L1)"))
    return *_records(out, rels), what


def speed_rawframes(fixtures: str | Path, work: str | Path
                    ) -> tuple[RawframeSource, list[VideoRecord], str]:
    """(source, records, what they are): the real UCF101 fixture clips when `fixtures` has
    them, else generated clips (`synthetic_rawframes`)."""
    if (Path(fixtures) / "videos" / "ucf101").is_dir():
        src, records = ucf_rawframes(fixtures, work)
        return src, records, (f"the {len(records)} real UCF101 fixture clips as 340x256 "
                              "rawframes, light TV-L1 flow")
    return synthetic_rawframes(work)


def add_speed_args(p: argparse.ArgumentParser) -> None:
    """What the model speed benchmarks (train_speed, eval_speed) share."""
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fixtures", default="../shared/fixtures",
                   help="real clips; where absent, clips are generated")
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


def auto_amp(device: torch.device) -> torch.dtype | None:
    """The autocast dtype training's `--amp auto` picks on `device` (the engine's rule)."""
    from two_stream.config import RunConfig
    from two_stream.engine.settings import amp_settings
    return amp_settings(RunConfig(amp="auto"), device)[0]


def dtype_name(dtype: torch.dtype | None, device: torch.device) -> str:
    if dtype is None:  # cuDNN convolutions run TF32 by default on Ampere and later
        return "fp32 (TF32 conv)" if device.type == "cuda" else "fp32"
    return "bf16" if dtype == torch.bfloat16 else "fp16"


def precisions(device: torch.device) -> list[tuple[str, torch.dtype | None, bool]]:
    """(name, autocast dtype, channels_last) rows a speed benchmark runs on this device.
    CUDA: fp32 (TF32 convolutions, cuDNN's default), bf16 and fp16 AMP, then what training
    picks by default (`--amp auto`, channels_last on). A CPU: fp32, and bf16 with and without
    channels_last where the CPU has fast bf16."""
    if device.type == "cuda":
        auto = auto_amp(device)
        return [(dtype_name(None, device), None, False), ("bf16", torch.bfloat16, False),
                ("fp16", torch.float16, False),
                (f"auto = {dtype_name(auto, device)} + channels_last", auto, True)]
    rows = [("fp32", None, False)]
    if cpu_has_fast_bf16():
        rows += [("bf16", torch.bfloat16, False), ("bf16 + channels_last", torch.bfloat16, True)]
    return rows


def sync(device: torch.device) -> None:
    """Wait for the device's queued work: before every clock read of a timing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak GPU memory allocated since the last reset, GiB (None on a CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def write_rows(rows: list[dict], out: str | Path, title: str, note: str) -> str:
    """The table so far (OUT/table.md|csv), rewritten after every row: a run stopped by a time
    budget keeps the rows it finished."""
    return write_table(pd.DataFrame(rows), out, title=title, note=note)
