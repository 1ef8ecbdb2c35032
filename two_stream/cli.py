"""The command line shared by both streams: `train`, `evaluate`, `predict`.

`python -m two_stream.spatial ...` and `python -m two_stream.temporal ...` only choose the
modality and its TSN defaults; everything else is this one CLI.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from flow_tools.device import DEVICE_HELP

from .config import (
    MODALITY_DEFAULTS,
    Config,
    add_config_args,
    config_from_args,
    load_config_defaults,
    merge_concerns,
)
from .data.build import build_data
from .engine import distributed as dist
from .engine.checkpoint import find_checkpoint, load_checkpoint, run_lock
from .engine.settings import amp_settings
from .engine.train import fit
from .errors import EXIT_CODES_HELP, UserError, run_cli
from .metrics import class_mean, topk_accuracy, topk_correct
from .score_checkpoint import write_scores

log = logging.getLogger("two_stream")


def build_parser(stream: str, modality: str, defaults: dict) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m two_stream.{stream}",
        description=f"The {stream} stream ({modality}) of a two-stream / TSN network.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd, text in (("train", "train a stream in --run-dir (resumable with --resume)"),
                      ("evaluate", "score the test (or validation) videos into "
                                   "run_dir/scores_<split>.npz")):
        s = sub.add_parser(cmd, help=text, description=text)
        s.add_argument("--config", help="a saved config.json: its values become the defaults")
        if cmd == "evaluate":
            s.add_argument("--eval-split", choices=("test", "val"), default="test",
                           help="which records to score (default: %(default)s)")
        add_config_args(s, defaults)
    s = sub.add_parser("predict", help="top-5 classes of one video file (both streams fused: "
                                       "python -m two_stream.predict)")
    s.add_argument("video", help="a video file, a folder or a list file")
    s.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint")
    s.add_argument("--topk", type=int, default=5)
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    return p


def parse(argv: list[str] | None, stream: str, modality: str) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = MODALITY_DEFAULTS[modality]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--run-dir")
    known, _ = pre.parse_known_args(argv)
    config = known.config
    if config is None and argv and argv[0] == "evaluate" and known.run_dir:
        saved = Path(known.run_dir) / "config.json"  # evaluate a run as it was trained
        config = str(saved) if saved.exists() else None
    if config:
        defaults = merge_concerns(defaults, load_config_defaults(config))
    return build_parser(stream, modality, defaults).parse_args(argv)


def evaluate_cmd(args: argparse.Namespace, stream: str) -> Path | None:
    """Score --eval-split into the run directory and print its accuracy (rank 0)."""
    cfg = config_from_args(args)
    device = dist.local_device(cfg.run.device)
    dist.init_distributed(device)
    with run_lock(Path(cfg.run.run_dir), "evaluation"):  # no evaluation beside a training
        return _evaluate(cfg, args.eval_split, stream, device)


def _evaluate(cfg: Config, eval_split: str, stream: str, device) -> Path | None:
    d, clip, run = cfg.data, cfg.clip, cfg.run
    ck_path = find_checkpoint(run.checkpoint or run.run_dir)
    ck = load_checkpoint(ck_path)
    data = build_data(d, clip)
    if list(ck["classes"]) != data.split.classes:
        raise UserError(f"{ck_path}: trained on {len(ck['classes'])} classes that differ from "
                        f"the split's {len(data.split.classes)}")
    records = data.test if eval_split == "test" else data.val
    if not records:
        raise UserError(f"--eval-split {eval_split}: no videos to score"
                        + (" (--val-ratio is 0: no validation hold-out)"
                           if eval_split == "val" else ""))
    amp_dtype, _ = amp_settings(run, device)
    path, sf = write_scores(cfg, ck_path=ck_path, ck=ck, data=data, records=records,
                            split=eval_split, stream=stream, device=device,
                            amp_dtype=amp_dtype)
    if sf is None:  # not rank 0
        return None
    print(f"{path}: {len(sf)} videos, {clip.test_segments} segments x {clip.test_crops} crops")
    print(f"top-1 {100 * topk_accuracy(sf.scores, sf.labels, 1):.2f} %  (share of videos)\n"
          f"top-5 {100 * topk_accuracy(sf.scores, sf.labels, 5):.2f} %\n"
          f"mean class accuracy "
          f"{100 * class_mean(topk_correct(sf.scores, sf.labels), sf.labels, len(sf.classes)):.2f}"
          " %  (mean of per-class recall, what TSN reports)")
    return path


def predict_cmd(args: argparse.Namespace, stream: str) -> int:
    """`predict VIDEO --checkpoint CK`: this stream alone, through two_stream.predict."""
    from . import predict
    return predict.run(predict.PredictOptions(target=args.video, topk=args.topk,
                                              device=args.device,
                                              **{stream: args.checkpoint}))


def main(argv: list[str] | None = None, stream: str = "spatial", modality: str = "rgb") -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    def body() -> int | None:
        args = parse(argv, stream, modality)  # --config is read here: its errors are user errors
        if args.cmd == "predict":
            return predict_cmd(args, stream)
        try:
            if args.cmd == "train":
                run_dir = fit(config_from_args(args))
                if dist.is_main():
                    print(f"trained: {run_dir}/checkpoint_best.pt; next: python -m "
                          f"two_stream.{stream} evaluate --run-dir {run_dir}")
            else:
                evaluate_cmd(args, stream)
        finally:  # under torchrun: every rank leaves the process group before it exits
            dist.shutdown()
        return None
    return run_cli(body)
