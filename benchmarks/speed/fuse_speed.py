"""How long a full fusion table takes at UCF101 scale (3783 videos x 101 classes x 2 streams).

    python benchmarks/speed/fuse_speed.py [--videos 3783] [--classes 101] [--streams 2]

Two kinds of generated scores, groups of 5 clips as in UCF101: `small` (unit-variance noise
with a planted signal: small, well-conditioned logits) and `realistic` (like ResNet-101 stream
logits: a shared per-video latent, so the two streams are strongly correlated, scaled to
logits in the hundreds, per-video offsets, ~80-85 % top-1 per stream). Times each stage (all
fixed rules, the 5-fold weight search, the 5-fold stacking, the bootstrap CIs) on one thread
and writes results/fusion_speed/table.md|csv and run.json.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from two_stream.fusion import FIXED_METHODS, fusion_rows
from two_stream.report import note_start, write_run_json, write_table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=3783)
    p.add_argument("--classes", type=int, default=101)
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--out", default="results/fusion_speed")
    args = p.parse_args(argv)
    note_start()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    for kind in ("small", "realistic"):
        labels, ids, streams = generate(kind, args.videos, args.classes, args.streams)
        for row in time_stages(streams, labels, ids, args.streams):
            rows.append({"scores": kind, **row})
            print(rows[-1])
    df = pd.DataFrame(rows)
    note = (f"{args.videos} videos x {args.classes} classes x {args.streams} streams, one "
            "thread, 1000 bootstrap resamples per row; max |logit| and single-stream top-1 "
            "of each kind in run.json; machine in run.json.")
    print(write_table(df, args.out, title="Fusion table speed", note=note))
    write_run_json(args.out, options=vars(args), inputs={
        kind: describe(*generate(kind, args.videos, args.classes, args.streams))
        for kind in ("small", "realistic")})


def generate(kind: str, videos: int, classes: int, num_streams: int, seed: int = 0):
    """(labels, video ids, {stream: scores [N, C]}) of one kind (see the module doc)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, videos)
    ids = [f"C{l}/v_C{l}_g{i // 5:02d}_c{i % 5:02d}" for i, l in enumerate(labels)]
    streams = {}
    if kind == "small":
        for s in range(num_streams):
            x = rng.normal(0, 1, (videos, classes))
            x[np.arange(videos), labels] += 1.5 + s
            streams[f"stream{s}"] = x
        return labels, ids, streams
    latent = rng.normal(0, 1, (videos, classes))  # what both streams see
    latent[np.arange(videos), labels] += rng.gamma(4.0, 1.5, videos)  # per-video difficulty
    for s in range(num_streams):
        scale, own = 70.0 + 40.0 * s, 0.5 + 0.2 * s
        streams[f"stream{s}"] = (scale * (latent + own * rng.normal(0, 1, (videos, classes)))
                                 + rng.normal(0, 30, (videos, 1))).astype(np.float32)
    return labels, ids, streams


def describe(labels, ids, streams) -> dict:
    return {n: {"max_abs_logit": round(float(np.abs(x).max()), 1),
                "top1": round(float((x.argmax(1) == labels).mean()), 4)}
            for n, x in streams.items()}


def time_stages(streams, labels, ids, num_streams: int) -> list[dict]:
    stages = [("fixed rules (6 methods x 2 norms) + CIs", dict(methods=FIXED_METHODS,
                                                              norms=("none", "softmax"),
                                                              weights=[1.0] * num_streams)),
              ("search, 5-fold group CV (1 norm) + CI", dict(methods=("search",))),
              ("stack, 5-fold group CV (1 norm) + CI", dict(methods=("stack",))),
              ("all methods x 2 norms (the default table)",
               dict(norms=("none", "softmax"), weights=[1.0] * num_streams))]
    rows = []
    for name, kw in stages:
        t = time.perf_counter()
        out = fusion_rows(streams, labels, ids, resamples=1000, **kw)
        rows.append({"stage": name, "rows": len(out),
                     "seconds": round(time.perf_counter() - t, 2)})
    return rows


if __name__ == "__main__":
    main()
