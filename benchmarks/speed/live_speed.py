"""Live mode on a real clip played as a camera (`--realtime` at the clip's 25 fps).

    python benchmarks/speed/live_speed.py [--repeat 4] [--out results/inference]

Two ResNet-18 streams at 224 (weights untrained: the time does not depend on them), 8 segments
per stream over a 48-frame window, an update every 8 frames, on a real UCF101 clip repeated
`--repeat` times (so memory can be seen not to grow with the source), once with DIS flow and
once with TV-L1 (the checkpoints record which). Reports updates per second, the median and
maximum latency, frames processed and dropped, and the resident memory at the first and the
last update and at its peak. Writes OUT/live.md|csv and OUT/run_live.json.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.speed.inference_speed import checkpoint
from flow_tools.params import ExtractConfig, FlowParams
from two_stream import live, predict
from two_stream.data.frames import read_video_frames
from two_stream.data.synthetic import write_video
from two_stream.report import note_start, write_run_json, write_table

CLIP = "ucf101/v_TennisSwing_g14_c03.avi"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", default="../shared/fixtures")
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--out", default="results/inference")
    args = p.parse_args(argv)
    note_start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        frames = read_video_frames(Path(args.fixtures) / "videos" / CLIP)
        source = Path(tmp) / "source.avi"
        write_video(source, np.concatenate([frames] * args.repeat), 25)
        for name, flow in (("DIS", FlowParams("dis")), ("TV-L1", FlowParams("tvl1"))):
            extraction = ExtractConfig(flow=flow, new_size=(340, 256))
            ns = argparse.Namespace(
                spatial=str(checkpoint(Path(tmp) / f"s{name}.pt", "rgb", extraction)),
                temporal=str(checkpoint(Path(tmp) / f"t{name}.pt", "flow", extraction)),
                device="cpu")
            lv = live.Live(predict.load_streams(ns), 48, 8, "weighted", "none", [1.0, 1.5])
            memory = []
            score = lv.score

            def scored(score=score, memory=memory):
                out = score()
                memory.append(rss_mb())
                return out
            lv.score = scored
            cap, fps, _ = live.open_source(str(source))
            updates = live.run_live(lv, cap, fps, every=8, realtime=True, quiet=True)
            n_frames = len(frames) * args.repeat
            seen = len(lv.state.flow_pairs)
            lat = np.array([u.latency for u in updates]) if updates else np.array([np.nan])
            duration = n_frames / fps
            rows.append({"flow": name, "source_s": round(duration, 1), "updates": len(updates),
                         "updates_per_s": round(len(updates) / duration, 2),
                         "median_latency_ms": round(1000 * float(np.median(lat)), 0),
                         "max_latency_ms": round(1000 * float(np.max(lat)), 0),
                         "flow_pairs_computed": seen,
                         "rss_first_update_mb": round(memory[0], 0) if memory else None,
                         "rss_last_update_mb": round(memory[-1], 0) if memory else None,
                         "peak_rss_mb": round(resource.getrusage(
                             resource.RUSAGE_SELF).ru_maxrss / 1024, 0)})
            print(rows[-1])
    df = pd.DataFrame(rows)
    print(write_table(df, args.out, "live", "Live mode, --realtime at 25 fps (2 CPU cores)",
                      f"{CLIP} repeated {args.repeat} times, ResNet-18 streams at 224, window "
                      "48 frames, 8 segments, an update every 8 frames, frames resized to "
                      "340x256 as the checkpoints' rawframes. Frames that arrive while one is "
                      "processed are dropped; updates fall on the first processed frame of "
                      "their period. rss_*: resident memory at the first and last update: the "
                      "rings bound it. Machine in run_live.json."))
    write_run_json(args.out, "run_live.json", options=vars(args))


if __name__ == "__main__":
    main()
