"""Two-stream prediction for videos: per-stream TSN scores fused by the rules of fuse.py.

    python -m two_stream.predict VIDEO_OR_FOLDER_OR_LIST --spatial RUN_OR_CKPT \
        --temporal RUN_OR_CKPT [--fusion weighted] [--norm none] [--weights 1 1.5] \
        [--device auto] [--out preds.csv]

Each stream's input is rebuilt from the video file exactly as its training rawframes were made:
the checkpoint stores the extraction parameters (`input`: resize, flow algorithm and backend,
bound, step, JPEG quality), so frames are resized, flow computed, quantised and JPEG-encoded the
same way, then sampled and cropped by the data layer's own test protocol (`eval_sample`).
Checkpoints from before that record warn once and use TV-L1 at the checkpoint's scale size.
One video prints each stream's and the fused top-k with probabilities (softmax of the scores);
a folder or a list file writes one CSV row per video (with a progress bar), and unreadable
videos are listed with the reason while the rest go on.
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from flow_tools.device import DEVICE_HELP, resolve_device
from flow_tools.flow import pair_flows
from flow_tools.params import ExtractConfig, FlowParams
from flow_tools.quantize import quantize
from flow_tools.rawframes import VIDEO_EXTENSIONS, VideoError, video_id
from flow_tools.tvl1_torch import FLOW_COMPILE_MODES, resolve_flow_compile, tvl1
from flow_tools.videos import iter_frames, list_videos

from .atomic import atomic_path
from .data.frames import FrameReadError
from .data.sampling import test_indices
from .data.transforms import eval_sample, flow_snippets
from .engine.checkpoint import build_model_from_checkpoint, find_checkpoint, load_checkpoint
from .engine.evaluate import score_views
from .errors import EXIT_CODES_HELP, EXIT_OK, EXIT_SOME_FAILED, UserError, run_cli
from .fuse import FusionOptions
from .fusion import NORMS, fuse_fixed, normalize
from .progress import progress

log = logging.getLogger("two_stream.predict")
FUSIONS = ("average", "max", "weighted", "product")


@dataclass
class Stream:
    """A trained stream ready to score videos."""

    name: str
    path: Path
    model: torch.nn.Module
    clip: dict
    classes: list[str]
    extraction: ExtractConfig  # how its training frames were made (or the old default)
    device: torch.device
    flow_compiled: bool = False  # torch TV-L1 through torch.compile (--flow-compile)


def load_stream(name: str, path: str | Path, device: torch.device) -> Stream:
    ck_path = find_checkpoint(path)
    ck = load_checkpoint(ck_path)
    clip = ck["config"]["clip"]
    if "input" in ck and ck["input"].get("extraction"):
        extraction = ExtractConfig.from_record(ck["input"]["extraction"])
    else:
        log.warning("%s: checkpoint without the extraction parameters of its frames (trained "
                    "before they were recorded): frames resized to short side %d, flow by "
                    "TV-L1, bound 20", ck_path, clip["scale_size"])
        extraction = ExtractConfig(flow=FlowParams("tvl1"), new_short=clip["scale_size"])
    model = build_model_from_checkpoint(ck).to(device).eval()
    return Stream(name, ck_path, model, clip, list(ck["classes"]), extraction, device)


def _jpeg(img: np.ndarray, quality: int, grey: bool) -> np.ndarray:
    """The rawframes' JPEG round trip (the network was trained on decoded JPEGs)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoError("cannot JPEG-encode a frame")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)


def stream_input(stream: Stream, video: str | Path,
                 frames: list[np.ndarray] | None = None) -> torch.Tensor:
    """uint8 [crops, S, C, H, W]: the test views of `video` for this stream, built as its
    training rawframes were (resize, flow, quantisation, JPEG) and sampled as evaluation does.
    `frames` (BGR, already resized by `stream.extraction`) skips decoding."""
    cfg, c = stream.extraction, stream.clip
    if frames is None:
        frames = list(iter_frames(Path(video), cfg, {}))
    if len(frames) < 2:
        raise VideoError(f"{len(frames)} decodable frames (need at least 2)")
    if c["modality"] == "rgb":
        idx = test_indices(len(frames), c["test_segments"], 1)
        snippets = [[_jpeg(frames[i], cfg.jpeg_quality, False)] for i in idx[:, 0]]
        return eval_sample(snippets, "rgb", c["input_size"], c["scale_size"], c["test_crops"],
                           str(video), bgr=True)
    idx = test_indices(len(frames) - cfg.step, c["test_segments"], c["new_length"])
    fields = flow_fields(cfg, frames, np.unique(idx), stream.device, stream.flow_compiled)
    snippets = flow_snippets([fields[int(i)] for i in idx.reshape(-1)], len(idx))
    return eval_sample(snippets, "flow", c["input_size"], c["scale_size"], c["test_crops"],
                       str(video))


def flow_fields(cfg: ExtractConfig, frames: list[np.ndarray], needed: np.ndarray,
                device: torch.device, compiled: bool = False
                ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The (x, y) flow images of the fields `needed` (only those: not the whole video), as the
    rawframes hold them: flow by the extraction's algorithm, quantised with its bound, JPEG."""
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    prev = np.stack([grey[i] for i in needed])
    nxt = np.stack([grey[i + cfg.step] for i in needed])
    flows = stream_flows(prev, nxt, cfg, device, compiled)
    return {int(i): encode_field(f, cfg) for i, f in zip(needed, flows)}


def stream_flows(prev: np.ndarray, nxt: np.ndarray, cfg: ExtractConfig, device: torch.device,
                 compiled: bool = False, batch_pairs: int = 32) -> np.ndarray:
    """float32 [N, H, W, 2] flow from prev[i] to nxt[i] (grey uint8 [N, H, W]) by the
    extraction's algorithm; the torch TV-L1 runs `compiled` where asked (predict and live on
    CUDA by default)."""
    if cfg.flow.backend != "torch":
        return pair_flows(prev, nxt, cfg.flow, str(device), batch_pairs=batch_pairs)
    a, b = torch.from_numpy(prev), torch.from_numpy(nxt)
    return torch.cat([tvl1(a[i:i + batch_pairs], b[i:i + batch_pairs], cfg.flow.tvl1, device,
                           compiled=compiled).cpu()
                      for i in range(0, len(a), batch_pairs)]).numpy()


def encode_field(flow: np.ndarray, cfg: ExtractConfig) -> tuple[np.ndarray, np.ndarray]:
    """One flow field [H, W, 2] in px -> its (x, y) images as the rawframes hold them:
    quantised with the extraction's bound, then the JPEG round trip."""
    q = quantize(flow, cfg.bound)
    return (_jpeg(np.ascontiguousarray(q[..., 0]), cfg.jpeg_quality, True),
            _jpeg(np.ascontiguousarray(q[..., 1]), cfg.jpeg_quality, True))


@torch.no_grad()
def stream_scores(stream: Stream, video: str | Path,
                  frames: list[np.ndarray] | None = None) -> np.ndarray:
    """Video logits [C] of one stream (consensus over segments, crops averaged)."""
    views = stream_input(stream, video, frames)
    scores, _ = score_views(stream.model, views[None], 256, stream.device)
    return scores[0].double().cpu().numpy()


def fuse(scores: dict[str, np.ndarray], fusion: str, norm: str,
         weights: list[float] | None) -> np.ndarray:
    """Fused scores [C] by the rules and normalisations of benchmarks/fuse.py."""
    names = list(scores)
    if len(names) == 1:
        return scores[names[0]]
    raw = np.stack([scores[n][None] for n in names])  # [S, 1, C]
    if fusion == "product":
        return fuse_fixed(raw, "product")[0]
    stack = np.stack([normalize(s, norm) for s in raw])
    return fuse_fixed(stack, fusion, np.asarray(weights, float) if weights else None)[0]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def top(scores: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    p = softmax(scores)
    order = np.argsort(-p, kind="stable")[:k]
    return [(classes[i], float(p[i])) for i in order]


def video_list(target: Path) -> list[tuple[Path, str]]:
    """(path, video id) of a video, of every video under a folder (ids keep the class
    folder, as extraction names them), or of the paths in a list file (first column, relative
    to the list's folder)."""
    if target.is_dir():
        return [(target / r, video_id(r)) for r in list_videos(target)]
    if target.suffix.lower() in VIDEO_EXTENSIONS:
        if not target.is_file():
            raise UserError(f"{target}: video not found")
        return [(target, target.stem)]
    if not target.is_file():
        raise UserError(f"{target}: no such video, folder or list file")
    try:
        lines = target.read_text().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{target}: not a video extension and not a text list file") from None
    rels = [ln.split()[0] for ln in lines if ln.strip()]
    return [(Path(r) if Path(r).is_absolute() else target.parent / r, video_id(r))
            for r in rels]


def add_stream_args(p: argparse.ArgumentParser) -> None:
    """The streams, how to fuse them and the device: the same for predict and live."""
    p.add_argument("--spatial", help="run folder or checkpoint of the spatial stream")
    p.add_argument("--temporal", help="run folder or checkpoint of the temporal stream")
    p.add_argument("--fusion", choices=FUSIONS, default="weighted")
    p.add_argument("--norm", choices=NORMS, default="none",
                   help="per-stream normalisation before fusing (product: log-softmax)")
    p.add_argument("--weights", nargs=2, type=float, default=[1.0, 1.5],
                   help="spatial and temporal weights of `weighted` (TSN: 1 1.5)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--flow-compile", choices=FLOW_COMPILE_MODES, default="auto",
                   help="torch TV-L1 backend: compile its iterations (auto: on CUDA only; a "
                        "CPU would compile for a minute or more before the first result)")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m two_stream.predict",
                                description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("target", help="a video file, a folder of videos, or a list file")
    add_stream_args(p)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--out", help="CSV of the predictions (default for a folder or list: "
                                 "predictions.csv)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def load_streams(args: argparse.Namespace | PredictOptions) -> list[Stream]:
    """The streams named by `args.spatial` / `args.temporal` on `args.device`."""
    device = resolve_device(args.device)  # cuda:N is that GPU, not the local rank's
    streams = [load_stream(n, getattr(args, n), device) for n in ("spatial", "temporal")
               if getattr(args, n)]
    if any(s.extraction.flow.backend == "torch" for s in streams if s.clip["modality"] == "flow"):
        compiled = resolve_flow_compile(getattr(args, "flow_compile", "auto"), device,
                                        interactive=True)
        for s in streams:
            s.flow_compiled = compiled
    if not streams:
        raise UserError("give --spatial and/or --temporal (a run folder or a checkpoint)")
    for s in streams[1:]:
        if s.classes != streams[0].classes:
            raise UserError(f"{s.path}: {len(s.classes)} classes that differ from those of "
                            f"{streams[0].path} ({len(streams[0].classes)}): the streams must "
                            "be trained on one class list")
    return streams


def _default_fusion() -> FusionOptions:
    return FusionOptions(methods=("weighted",), norms=("none",), weights=[1.0, 1.5])


@dataclass
class PredictOptions:
    """Everything `run` needs (what the command's flags give; two_stream.cli builds it too).

    `fusion`: the fusion tables' options type, with one method (average, max, weighted or
    product) and one normalisation: the rule applied to each video's stream scores."""

    target: str  # a video file, a folder of videos, or a list file
    spatial: str | None = None  # run folder or checkpoint
    temporal: str | None = None
    fusion: FusionOptions = field(default_factory=_default_fusion)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    flow_compile: str = "auto"  # auto | on | off (torch TV-L1 backend)
    topk: int = 5
    out: str | None = None  # CSV (default for a folder or list: predictions.csv)
    quiet: bool = False

    def __post_init__(self):
        f = self.fusion
        if len(f.methods) != 1 or f.methods[0] not in FUSIONS:
            raise UserError(f"predict fuses by one rule of {', '.join(FUSIONS)}; got "
                            f"{', '.join(f.methods) or 'none'}")
        if len(f.norms) != 1 or f.norms[0] not in NORMS:
            raise UserError(f"predict takes one normalisation of {', '.join(NORMS)}; got "
                            f"{', '.join(f.norms) or 'none'}")
        if f.weights is not None and len(f.weights) != 2:
            raise UserError(f"--weights: one per stream (spatial, temporal), got {f.weights}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PredictOptions":
        return cls(target=args.target, spatial=args.spatial, temporal=args.temporal,
                   fusion=FusionOptions(methods=(args.fusion,), norms=(args.norm,),
                                        weights=list(args.weights)),
                   device=args.device, flow_compile=args.flow_compile, topk=args.topk,
                   out=args.out, quiet=args.quiet)


def predict_video(streams: list[Stream], video: Path, fusion: FusionOptions
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(per-stream scores, fused scores) of one video; frames are decoded once per distinct
    extraction configuration."""
    decoded: dict[ExtractConfig, list[np.ndarray]] = {}
    scores = {}
    for s in streams:
        if s.extraction not in decoded:
            decoded[s.extraction] = list(iter_frames(video, s.extraction, {}))
        scores[s.name] = stream_scores(s, video, decoded[s.extraction])
    weights = fusion.weights if len(streams) == 2 else None
    return scores, fuse(scores, fusion.methods[0], fusion.norms[0], weights)


def run(args: PredictOptions) -> int:
    """Predict `args.target`; prints (one video) or writes a CSV; the exit code."""
    videos = video_list(Path(args.target))
    streams = load_streams(args)
    classes = streams[0].classes
    single = len(videos) == 1 and not Path(args.target).is_dir() and not args.out
    if single:
        try:
            scores, fused = predict_video(streams, videos[0][0], args.fusion)
        except (VideoError, FrameReadError, cv2.error) as e:
            raise UserError(f"{videos[0][0]}: {e}") from None
        for name, s in scores.items():
            print(f"{name}:")
            for c, p in top(s, classes, args.topk):
                print(f"  {p:6.1%}  {c}")
        if len(streams) > 1:
            method, w = args.fusion.methods[0], args.fusion.weights
            rule = method + (f" {w[0]:g}:{w[1]:g}" if method == "weighted" and w else "")
            print(f"fused ({rule}, norm {args.fusion.norms[0]}):")
            for c, p in top(fused, classes, args.topk):
                print(f"  {p:6.1%}  {c}")
        return EXIT_OK
    out = Path(args.out or "predictions.csv")
    k = args.topk
    header = ["video_id", *[f"top{i + 1}" for i in range(k)],
              *[f"p{i + 1}" for i in range(k)], *[f"{s.name}_top1" for s in streams], "error"]
    rows, failed = [], 0
    for video, vid in progress(videos, desc="predict", unit="video", quiet=args.quiet):
        try:
            scores, fused = predict_video(streams, video, args.fusion)
        except (VideoError, FrameReadError, cv2.error) as e:
            failed += 1
            log.warning("%s: %s", video, e)
            rows.append([vid, *[""] * (2 * k + len(streams)), str(e)])
            continue
        best = top(fused, classes, k)
        rows.append([vid, *[c for c, _ in best], *[f"{p:.4f}" for _, p in best],
                     *[top(s, classes, 1)[0][0] for s in scores.values()], ""])
    tmp = atomic_path(out)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(out)
    print(f"{out}: {len(videos) - failed} videos predicted, {failed} unreadable (listed with "
          "the reason in the error column)")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = get_args_parser().parse_args(argv)
    return run_cli(lambda: run(PredictOptions.from_args(args)))


if __name__ == "__main__":
    sys.exit(main())
