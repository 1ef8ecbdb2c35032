"""How long a full fusion table takes at UCF101 scale (3783 videos x 101 classes x 2 streams).

    python benchmarks/fuse_speed.py [--videos 3783] [--classes 101] [--streams 2]

Scores are random with a planted signal (only the time matters); groups of 4-7 clips mimic
UCF101's. Times each stage (all fixed rules, the 5-fold weight search, the 5-fold stacking,
the bootstrap CIs) on one thread and writes results/fusion_speed/table.md|csv and run.json.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from two_stream.fusion import FIXED_METHODS, fusion_rows
from two_stream.report import write_run_json, write_table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=3783)
    p.add_argument("--classes", type=int, default=101)
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--out", default="results/fusion_speed")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.classes, args.videos)
    ids = [f"C{l}/v_C{l}_g{i // 5:02d}_c{i % 5:02d}" for i, l in enumerate(labels)]
    streams = {}
    for s in range(args.streams):
        x = rng.normal(0, 1, (args.videos, args.classes))
        x[np.arange(args.videos), labels] += 1.5 + s
        streams[f"stream{s}"] = x
    stages = [("fixed rules (6 methods x 2 norms) + CIs", dict(methods=FIXED_METHODS,
                                                              norms=("none", "softmax"),
                                                              weights=[1.0] * args.streams)),
              ("search, 5-fold group CV (1 norm) + CI", dict(methods=("search",))),
              ("stack, 5-fold group CV (1 norm) + CI", dict(methods=("stack",))),
              ("all methods x 2 norms (the default table)",
               dict(norms=("none", "softmax"), weights=[1.0] * args.streams))]
    rows = []
    for name, kw in stages:
        t = time.perf_counter()
        out = fusion_rows(streams, labels, ids, resamples=1000, **kw)
        rows.append({"stage": name, "rows": len(out), "seconds": round(time.perf_counter() - t, 2)})
        print(rows[-1])
    df = pd.DataFrame(rows)
    note = (f"{args.videos} videos x {args.classes} classes x {args.streams} streams, one "
            "thread, 1000 bootstrap resamples per row; machine in run.json.")
    print(write_table(df, args.out, title="Fusion table speed", note=note))
    write_run_json(args.out, options=vars(args))


if __name__ == "__main__":
    main()
