"""Seconds per video of fused two-stream prediction, and where they go.

    python benchmarks/speed/inference_speed.py [--device cpu] [--out results/inference]

Two ResNet-18 streams at 224 (TSN test protocol: 25 segments, 1 crop; weights untrained: the
time does not depend on them) predict real clips of the fixtures through `two_stream.predict`'s
own steps, each timed: decoding and resizing the video (340x256, as the TV-L1 rawframes of the
checkpoints were made), the RGB views, the TV-L1 flow of the fields the 25 segments use, the
flow views (quantisation, JPEG, crops), each network, and the fusion. Writes OUT/table.md|csv
and OUT/run.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.speed.common import sync
from flow_tools.device import resolve_device
from flow_tools.params import ExtractConfig, FlowParams
from flow_tools.videos import iter_frames
from two_stream import predict
from two_stream.data.sampling import test_indices
from two_stream.data.transforms import eval_sample, flow_snippets
from two_stream.engine.checkpoint import save_checkpoint
from two_stream.engine.evaluate import score_views
from two_stream.models.tsn import TSN, ModelConfig
from two_stream.report import note_start, write_run_json, write_table

CLIPS = ["ucf101/v_TennisSwing_g14_c03.avi", "hmdb51/RATRACE_wave_f_nm_np1_fr_goo_37.avi"]


def checkpoint(path: Path, modality: str, extraction: ExtractConfig) -> Path:
    cfg = ModelConfig(num_classes=101, arch="resnet18", modality=modality,
                      new_length=1 if modality == "rgb" else 5)
    clip = {"modality": modality, "new_length": cfg.new_length, "num_segments": 3,
            "input_size": 224, "scale_size": 256, "test_segments": 25, "test_crops": 1}
    save_checkpoint(path, {"model": TSN(cfg).state_dict(),
                           "config": {"model": dataclasses.asdict(cfg), "clip": clip},
                           "classes": [f"class{i}" for i in range(101)], "epoch": 0,
                           "input": {"extraction": extraction.record(), "bound": 20.0}})
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", default="../shared/fixtures")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="results/inference")
    args = p.parse_args(argv)
    note_start()
    device = resolve_device(args.device)
    extraction = ExtractConfig(flow=FlowParams("tvl1"), new_size=(340, 256))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spatial = predict.load_stream("spatial", checkpoint(Path(tmp) / "s.pt", "rgb",
                                                            extraction), device)
        temporal = predict.load_stream("temporal", checkpoint(Path(tmp) / "t.pt", "flow",
                                                              extraction), device)
        for rel in CLIPS:
            video = Path(args.fixtures) / "videos" / rel
            t = {}
            t0 = time.perf_counter()
            frames = list(iter_frames(video, extraction, {}))
            t["decode + resize"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            rgb_views = predict.stream_input(spatial, video, frames)
            t["RGB views"] = time.perf_counter() - t0
            # the temporal input: TV-L1 of the fields the segments use, then the views
            idx = test_indices(len(frames) - 1, 25, 5)
            t0 = time.perf_counter()
            fields = predict.flow_fields(extraction, frames, np.unique(idx), device)
            sync(device)
            t["TV-L1 flow (+ quantise, JPEG)"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            flow_views = eval_sample(flow_snippets([fields[int(i)] for i in idx.reshape(-1)],
                                                   25), "flow", 224, 256, 1)
            t["flow views"] = time.perf_counter() - t0
            with torch.no_grad():  # synchronised: each network's time is its own row
                sync(device)
                t0 = time.perf_counter()
                a, _ = score_views(spatial.model, rgb_views[None], 256, device)
                sync(device)
                t["spatial network"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                b, _ = score_views(temporal.model, flow_views[None], 256, device)
                sync(device)
                t["temporal network"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            predict.fuse({"spatial": a[0].double().cpu().numpy(),
                          "temporal": b[0].double().cpu().numpy()}, "weighted", "none", [1.0, 1.5])
            t["fusion"] = time.perf_counter() - t0
            total = sum(t.values())
            rows.append({"clip": rel, "frames": len(frames), "flow_pairs": len(np.unique(idx)),
                         **{k: round(v, 2) for k, v in t.items()}, "total_s": round(total, 2)})
            print(rows[-1])
    df = pd.DataFrame(rows)
    print(write_table(df, args.out, title=f"Fused two-stream prediction of one video "
                      f"({device.type})", note="ResNet-18 streams at 224, 25 segments x 1 "
                      "crop, flow 5 fields per segment; TV-L1 (OpenCV, default parameters) at "
                      "340x256 for the fields the segments use only; seconds per step, one "
                      "run, torch and OpenCV with all cores. Machine in run.json."))
    write_run_json(args.out, options=vars(args))


if __name__ == "__main__":
    main()
