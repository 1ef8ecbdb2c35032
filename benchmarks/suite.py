"""The benchmark suite: from videos to the fusion table in one resumable command.

`make demo` runs it on the embedded default (the synthetic data set). Each step is skipped
when its outputs are complete, so a rerun after a kill resumes where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import VideoFileSource
from two_stream.data.splits import resolve_records, validation_split
from two_stream.data.synthetic import SyntheticConfig, generate

log = logging.getLogger("suite")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--work-dir", default="data/demo", help="generated data, frames and runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def step_data(args: argparse.Namespace):
    """Generate the synthetic set (skipped when complete) and read one sample back."""
    root = Path(args.work_dir) / "synthetic"
    split = generate(root, SyntheticConfig(seed=args.seed), quiet=args.quiet)
    train, val = validation_split(split.train, 0.15, seed=args.seed)
    print(f"synthetic data set at {root}: {len(split.classes)} classes, "
          f"{len(train)} train / {len(val)} validation (group-disjoint) / "
          f"{len(split.test)} test videos")
    src = VideoFileSource(root / "videos")
    records = resolve_records(train[:1], src.counts([train[0].video_id]))
    ds = VideoDataset(records, src, ClipConfig(modality="rgb", num_segments=3, input_size=80),
                      train=True, seed=args.seed)
    x, label, vid = ds[0]
    print(f"RGB sample of {vid} (label {split.classes[label]}), read straight from its video "
          f"file: tensor {list(x.shape)} [K, C, H, W]")
    return split


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    step_data(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
