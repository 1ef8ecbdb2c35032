"""How fast the data layer feeds a stream: training samples per second from rawframes.

    python benchmarks/loader_speed.py [--fixtures ../shared/fixtures] [--out results/loader]

Extracts the real UCF101 clips of the fixtures to 340x256 rawframes (DIS flow: only the files
matter here), then times `VideoDataset` in training mode (TSN: 3 segments, multi-scale crop to
224, flip) through a DataLoader with 0, 1 and 2 workers: RGB (3 JPEGs per sample) and flow
(L = 5: 30 JPEGs per sample), and one test-mode video (25 segments, centre crop). The numbers
say how many CPU cores a GPU needs to stay fed (see the README's UCF101 estimate).

Beside every row, measured in the same run: `decode_bound_samples_per_s`, the rate at which
one thread decodes a sample's JPEGs with `cv2.imdecode` from bytes already in memory (the same
rawframe files, colour for RGB, grey for flow), and `share_of_bound` = samples_per_s /
(bound x loader processes): how close the loader comes to doing nothing but decoding.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from flow_tools.extract import ExtractConfig, extract_all
from flow_tools.flow import FlowParams
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import RawframeSource
from two_stream.data.splits import VideoRecord, resolve_records
from two_stream.report import write_run_json, write_table


def time_loader(ds, workers: int, batches: int, batch_size: int = 8) -> float:
    """Samples per second over `batches` batches (after one warm-up batch)."""
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            x, _, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, _, _ = next(it)
        n += len(x)
    return n / (time.perf_counter() - t)


def decode_rate(files: list[Path], grey: bool, repeats: int = 3) -> float:
    """JPEGs per second decoded by one thread from bytes in memory (best of `repeats`)."""
    data = [np.frombuffer(f.read_bytes(), np.uint8) for f in files]
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for d in data:
            cv2.imdecode(d, flag)
        best = max(best, len(data) / (time.perf_counter() - t))
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", default="../shared/fixtures")
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--out", default="results/loader")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    videos = Path(args.fixtures) / "videos"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rels = sorted(p.relative_to(videos).as_posix() for p in (videos / "ucf101").glob("*.avi"))
        extract_all(videos, tmp, ExtractConfig(flow=FlowParams("dis"), new_size=(340, 256)),
                    rels, workers=2, quiet=True)
        src = RawframeSource(tmp)
        ids = [r[:-4] for r in rels]
        records = resolve_records([VideoRecord(v, 0) for v in ids], src.counts(ids))
        for modality, length in (("rgb", 1), ("flow", 5)):
            pattern = "img_*.jpg" if modality == "rgb" else "flow_[xy]_*.jpg"
            files = sorted(Path(tmp).glob(f"*/*/{pattern}"))
            jpegs_per_s = decode_rate(random.Random(0).sample(files, min(600, len(files))),
                                      grey=modality == "flow")
            clip = ClipConfig(modality=modality, new_length=length, input_size=224,
                              scale_size=256, test_segments=25)
            train = VideoDataset(records * 8, src, clip, train=True)
            for workers in (0, 1, 2):
                sps = time_loader(train, workers, args.batches)
                per_sample = 3 * length * (1 if modality == "rgb" else 2)
                bound = jpegs_per_s / per_sample
                rows.append({"modality": modality, "mode": "train (3 segments, 224 crop)",
                             "workers": workers, "jpegs_per_sample": per_sample,
                             "samples_per_s": round(sps, 1),
                             "decode_bound_samples_per_s": round(bound, 1),
                             "share_of_bound": round(sps / (bound * max(workers, 1)), 2)})
                print(rows[-1])
            test = VideoDataset(records, src, clip, train=False)
            t = time.perf_counter()
            for i in range(len(records)):
                test[i]
            sps = len(records) / (time.perf_counter() - t)
            per_sample = 25 * length * (1 if modality == "rgb" else 2)
            bound = jpegs_per_s / per_sample
            rows.append({"modality": modality, "mode": "test (25 segments, centre crop)",
                         "workers": 0, "jpegs_per_sample": per_sample,
                         "samples_per_s": round(sps, 1),
                         "decode_bound_samples_per_s": round(bound, 1),
                         "share_of_bound": round(sps / bound, 2)})
            print(rows[-1])
    df = pd.DataFrame(rows)
    print(write_table(df, args.out, title="Data loading speed (340x256 rawframes of 13 real "
                      "UCF101 clips)", note="One torch thread per process; a sample is one "
                      "video (train: K = 3 snippets; test: 25). decode bound: one thread "
                      "decoding the same rawframe JPEGs from memory with cv2.imdecode, in this "
                      "run; share_of_bound = samples_per_s / (bound x max(workers, 1)). "
                      "Samples are uint8; the model normalises the batch on its device. "
                      "Machine in run.json."))
    write_run_json(args.out, options=vars(args))


if __name__ == "__main__":
    main()
