"""Live two-stream recognition from a camera, a file or a stream.

    python -m two_stream.live --spatial RUN --temporal RUN --source 0|VIDEO|URL [--every 8]
        [--window 48] [--segments 8] [--out annotated.mp4] [--show] [--realtime]

Frames go into a ring buffer of `--window` frames (resized as each stream's training frames
were); the flow of each new frame pair is computed once, as it arrives, into a ring of flow
fields (quantised and JPEG-encoded like the rawframes). Every `--every` frames the last window
is scored with `--segments` segments per stream (centre crop) and fused as
`two_stream.predict` fuses; one line per update gives the source time, the fused top-3, the
processing rate and the latency (from the newest frame's arrival to the result). `--out` writes
the frames with the top-3 drawn on them; `--show` opens a window where OpenCV has a GUI (the
headless build we install has none: a clear error). With `--realtime` a file plays like a
camera: frames arrive at the source's fps whatever the processing speed, frames that arrive
while the previous one is processed are dropped (after a gap the next frame is taken too, so a
flow pair still forms), an update falls on the first processed frame of its period instead
of waiting, and no flow is ever computed across a dropped frame (it would be the motion of
several frames). Memory is bounded by the two rings.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from flow_tools.flow import make_flow_fn
from flow_tools.videos import target_size

from .data.sampling import test_indices
from .data.transforms import eval_sample, flow_snippets
from .engine.evaluate import score_views
from .errors import EXIT_CODES_HELP, UserError, run_cli
from .predict import (
    Stream,
    _jpeg,
    add_stream_args,
    encode_field,
    fuse,
    load_streams,
    stream_flows,
    top,
)

log = logging.getLogger("two_stream.live")


@dataclass
class Update:
    source_time: float  # s, of the newest frame in the window
    top3: list[tuple[str, float]]
    fps: float  # frames processed per second of wall time so far
    latency: float  # s, from that frame's arrival to this result


@dataclass
class LiveState:
    """The two rings and what has been computed (kept small: the rings bound memory)."""

    window: int
    frames: deque = field(default_factory=deque)  # (source index, BGR frame per extraction)
    fields: deque = field(default_factory=deque)  # (source index, (x, y) JPEG-decoded flow)
    prev: tuple[int, np.ndarray] | None = None  # last frame's (index, grey) for the next pair
    flow_pairs: list[tuple[int, int]] = field(default_factory=list)  # every pair computed

    def __post_init__(self):
        self.frames = deque(maxlen=self.window)
        self.fields = deque(maxlen=self.window - 1)


class Live:
    """Incremental two-stream scoring of a frame stream."""

    def __init__(self, streams: list[Stream], window: int, segments: int, fusion: str,
                 norm: str, weights: list[float]):
        self.streams, self.segments = streams, segments
        self.fusion, self.norm, self.weights = fusion, norm, weights
        self.flow_stream = next((s for s in streams if s.clip["modality"] == "flow"), None)
        self.rgb_stream = next((s for s in streams if s.clip["modality"] == "rgb"), None)
        self.state = LiveState(window)
        if self.flow_stream is not None:
            cfg = self.flow_stream.extraction
            self.flow_cfg = cfg
            st = self.flow_stream
            self.flow_fn = (make_flow_fn(cfg.flow) if cfg.flow.backend == "opencv" else
                            lambda a, b: stream_flows(a[None], b[None], cfg, st.device,
                                                      st.flow_compiled)[0])

    def _resized(self, frame: np.ndarray, stream: Stream) -> np.ndarray:
        size = target_size(frame.shape[1], frame.shape[0], stream.extraction)
        if (frame.shape[1], frame.shape[0]) == size:
            return frame
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    def push(self, index: int, frame: np.ndarray, contiguous: bool) -> None:
        """Add source frame `index`; `contiguous` is False after a dropped frame, and then no
        flow is computed to it from the frame before the gap."""
        s = self.state
        if self.rgb_stream is not None:
            s.frames.append((index, self._resized(frame, self.rgb_stream)))
        if self.flow_stream is not None:
            grey = cv2.cvtColor(self._resized(frame, self.flow_stream), cv2.COLOR_BGR2GRAY)
            if s.prev is not None and contiguous and s.prev[0] == index - 1:
                s.fields.append((index - 1, encode_field(self.flow_fn(s.prev[1], grey),
                                                         self.flow_cfg)))
                s.flow_pairs.append((index - 1, index))
            s.prev = (index, grey)

    def ready(self) -> bool:
        s = self.state
        rgb_ok = self.rgb_stream is None or len(s.frames) >= 1
        flow_ok = self.flow_stream is None or len(s.fields) >= 1
        return rgb_ok and flow_ok

    @torch.no_grad()
    def score(self) -> list[tuple[str, float]]:
        """Fused top-3 of the current window."""
        scores = {}
        for st in self.streams:
            c = st.clip
            if c["modality"] == "rgb":
                frames = [f for _, f in self.state.frames]
                idx = test_indices(len(frames), self.segments, 1)
                snippets = [[_jpeg(frames[i], st.extraction.jpeg_quality, False)]
                            for i in idx[:, 0]]
                views = eval_sample(snippets, "rgb", c["input_size"], c["scale_size"], 1,
                                    "live", bgr=True)
            else:
                fields = [f for _, f in self.state.fields]
                idx = test_indices(len(fields), self.segments, c["new_length"])
                views = eval_sample(flow_snippets([fields[i] for i in idx.reshape(-1)],
                                                  len(idx)), "flow", c["input_size"],
                                    c["scale_size"], 1, "live")
            out, _ = score_views(st.model, views[None], 256, st.device)
            scores[st.name] = out[0].double().cpu().numpy()
        fused = fuse(scores, self.fusion, self.norm,
                     self.weights if len(self.streams) == 2 else None)
        return top(fused, self.streams[0].classes, 3)


def open_source(source: str) -> tuple[cv2.VideoCapture, float, bool]:
    """(capture, fps, is_camera) of a camera index, a file or a URL."""
    camera = source.isdigit()
    cap = cv2.VideoCapture(int(source) if camera else source)
    if not cap.isOpened():
        raise UserError(f"{source}: cannot open the source (camera index, video file or URL)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    return cap, fps, camera


def draw(frame: np.ndarray, top3: list[tuple[str, float]] | None) -> np.ndarray:
    out = frame.copy()
    for i, (name, p) in enumerate(top3 or []):
        y = 20 + 18 * i
        cv2.putText(out, f"{p:5.1%} {name}", (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, f"{p:5.1%} {name}", (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return out


def check_display() -> None:
    try:
        cv2.namedWindow("two_stream.live")
    except cv2.error:
        raise UserError("--show needs a display and an OpenCV with GUI support; the installed "
                        "opencv-contrib-python-headless has none: use --out annotated.mp4 "
                        "(or install opencv-contrib-python where there is a display)") from None


def run_live(live: Live, cap: cv2.VideoCapture, fps: float, every: int, realtime: bool,
             out: Path | None = None, show: bool = False, quiet: bool = False,
             max_frames: int = 0, camera: bool = False) -> list[Update]:
    """Play the source; returns the updates (also printed unless quiet)."""
    writer = None
    updates: list[Update] = []
    start = time.perf_counter()
    index, processed, last_top, last_read, need_partner = -1, 0, None, None, False
    last_period = 0
    try:
        while True:
            if camera:  # the driver drops what we were too slow for: a gap breaks the chain
                contiguous = last_read is None or time.perf_counter() - last_read < 1.5 / fps
                last_read = time.perf_counter()
            elif realtime:  # a file as a camera: skip what arrived while we were busy,
                # but after a gap take the next frame too, so a flow pair forms every time
                due = int((time.perf_counter() - start) * fps)
                skipped = 0
                while index + 1 < due and not need_partner:
                    if not cap.grab():
                        return updates
                    index += 1
                    skipped += 1
                contiguous = skipped == 0
                need_partner = not contiguous
            else:
                contiguous = True
            ok, frame = cap.read()
            if not ok or (max_frames and index + 1 >= max_frames):
                return updates
            index += 1
            processed += 1
            arrival = (start + index / fps) if realtime and not camera else time.perf_counter()
            live.push(index, frame, contiguous)
            period = (index + 1) // every  # one update per period; missed ones are skipped
            if period > last_period and live.ready():
                last_period = period
                last_top = live.score()
                now = time.perf_counter()
                u = Update(index / fps, last_top, processed / (now - start), now - arrival)
                updates.append(u)
                if not quiet:
                    print(f"{u.source_time:7.2f} s  " + " | ".join(
                        f"{n} {p:.0%}" for n, p in u.top3) + f"  ({u.fps:.1f} fps, latency "
                        f"{1000 * u.latency:.0f} ms)", flush=True)
            if out is not None or show:
                annotated = draw(frame, last_top)
                if out is not None:
                    if writer is None:
                        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                 (frame.shape[1], frame.shape[0]))
                    writer.write(annotated)
                if show:
                    cv2.imshow("two_stream.live", annotated)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        return updates
    finally:
        cap.release()
        if writer is not None:
            writer.release()


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m two_stream.live",
                                description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_stream_args(p)
    p.add_argument("--source", required=True, help="camera index (0), video file or URL")
    p.add_argument("--every", type=int, default=8, help="frames between updates")
    p.add_argument("--window", type=int, default=48, help="frames scored per update")
    p.add_argument("--segments", type=int, default=8, help="segments per stream and update")
    p.add_argument("--out", help="write the annotated video here (mp4)")
    p.add_argument("--show", action="store_true", help="show the annotated video")
    p.add_argument("--realtime", action="store_true",
                   help="never lag behind the source (a file plays like a camera)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        if args.every < 1 or args.window < 2 or args.segments < 1:
            raise UserError("--every and --segments must be >= 1 and --window >= 2")
        if args.show:
            check_display()
        streams = load_streams(args)
        cap, fps, camera = open_source(args.source)
        live = Live(streams, args.window, args.segments, args.fusion, args.norm, args.weights)
        updates = run_live(live, cap, fps, args.every, args.realtime,
                           Path(args.out) if args.out else None, args.show, args.quiet,
                           camera=camera)
        if updates:
            lat = np.array([u.latency for u in updates])
            print(f"{len(updates)} updates, median latency {1000 * np.median(lat):.0f} ms, "
                  f"{updates[-1].fps:.1f} frames/s processed")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
