"""The benchmark suite: videos -> frames and flow -> both streams x every consensus -> fusion.

    python -m benchmarks.suite                        # the embedded synthetic set (make demo)
    python -m benchmarks.suite --dataset ucf101 --videos UCF-101 --split-dir ucfTrainTestlist \
        --split 1 --preset tsn --name ucf101_split1

Steps, each skipped when its outputs are complete (a rerun after a kill resumes; changing only
fusion options reruns only fusion): generate the synthetic set (default only) -> extract frames
and TV-L1 flow -> for each stream x consensus: train (validation on a group-disjoint hold-out of
the training list), score the validation and test videos -> fusion tables (learned fusion
weights fit on the validation scores, never on test labels) -> results/<name>/.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import fuse
from flow_tools.extract import ExtractConfig, extract_all
from flow_tools.flow import LIGHT_TVL1, FlowParams
from two_stream.config import MODALITY_DEFAULTS, DataConfig, OptimConfig, RunConfig, merge_concerns
from two_stream.data.build import build_data
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import VideoFileSource
from two_stream.data.splits import resolve_records
from two_stream.data.synthetic import MANIFEST, SyntheticConfig, generate
from two_stream.engine import distributed as dist
from two_stream.engine.checkpoint import load_checkpoint
from two_stream.engine.train import fit, identity_diff, saved_config
from two_stream.errors import EXIT_CODES_HELP, UserError, run_cli
from two_stream.fusion import fuse_fixed
from two_stream.metrics import class_mean, topk_accuracy, topk_correct
from two_stream.models.tsn import ModelConfig
from two_stream.report import (
    atomic_write_text,
    markdown_table,
    note_start,
    write_run_json,
    write_table,
)
from two_stream.scores import ScoreFile, load_scores
from two_stream.scoring import write_scores

log = logging.getLogger("suite")
STREAMS = {"spatial": "rgb", "temporal": "flow"}
CONSENSUS = ("mean", "max", "var", "lstm")

# Presets: per-stream overrides of the stream CLIs' TSN defaults. `tsn` is the published
# recipe for a GPU; `cpu-demo` trains from scratch on the synthetic set in minutes on 2 cores.
PRESETS = {
    "cpu-demo": {
        "common": {"clip": {"input_size": 64, "scale_size": 72, "num_segments": 3,
                            "test_segments": 10, "test_crops": 1},
                   "model": {"arch": "resnet18", "weights": "none", "dropout": 0.5,
                             "lstm_hidden": 128},
                   "optim": {"epochs": 10, "lr": 0.01, "schedule": "cosine",
                             "warmup_epochs": 1, "clip_grad": 20.0, "lr_mult_first_conv": 1.0},
                   "data": {"batch_size": 16, "workers": 2, "val_ratio": 0.15,
                            "eval_batch_size": 8}},
        "flow": FlowParams("tvl1", LIGHT_TVL1),
        "new_short": 0, "new_size": None,
    },
    "tsn": {
        "common": {"clip": {"input_size": 224, "scale_size": 256, "num_segments": 3,
                            "test_segments": 25, "test_crops": 10},
                   "model": {"arch": "resnet101", "weights": "imagenet", "partial_bn": True},
                   "data": {"batch_size": 32, "workers": 8, "val_ratio": 0.1}},
        "flow": FlowParams("tvl1"), "new_short": 0, "new_size": (340, 256),
    },
}
# Per-data-set variants of a preset, merged over it. HMDB51 `tsn`: the RGB stream takes the
# values of MMAction2 0.x's configs/recognition/tsn/tsn_r50_1x1x8_50e_hmdb51_imagenet_rgb.py
# (with its _base_ tsn_r50.py, hmdb51_1x1x8_rgb.py, sgd_50e.py): ResNet-50 from ImageNet,
# BatchNorm not frozen (norm_eval=False), dropout 0.4, 8 segments, batch 32, SGD lr 0.025
# momentum 0.9 weight decay 1e-4, 50 epochs with steps at 20 and 40, gradient clipping at 20,
# 8 test segments, raw scores averaged (average_clips=None). Two differences: training crops
# are TSN's multi-scale crops, not RandomResizedCrop, and the test crop is 224 (MMAction2
# centre-crops 256). MMAction2 0.x has no HMDB51 flow config: the flow stream keeps the TSN
# recipe (MODALITY_DEFAULTS) with the same backbone.
DATASET_PRESETS = {
    ("tsn", "hmdb51"): {
        "common": {"model": {"arch": "resnet50", "partial_bn": False}},
        "modality": {"rgb": {
            "clip": {"num_segments": 8, "test_segments": 8, "test_crops": 1,
                     "average_views": "score"},
            "model": {"dropout": 0.4},
            "optim": {"lr": 0.025, "momentum": 0.9, "weight_decay": 1e-4, "epochs": 50,
                      "schedule": "step", "milestones": (20, 40), "gamma": 0.1,
                      "clip_grad": 20.0}}},
    },
}


def preset_for(name: str, dataset: str) -> dict:
    """A preset with its per-data-set variant merged in: `common` (both streams) and
    `modality` (`rgb` / `flow` stream only) overrides."""
    base, extra = PRESETS[name], DATASET_PRESETS.get((name, dataset), {})
    out = dict(base, common=merge_concerns(base["common"], extra.get("common", {})))
    out["modality"] = {m: merge_concerns(base.get("modality", {}).get(m, {}),
                                         extra.get("modality", {}).get(m, {}))
                       for m in ("rgb", "flow")}
    return out


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The data set, preset and training overrides (shared with benchmarks/sweep.py)."""
    p.add_argument("--dataset", default="synthetic",
                   choices=("synthetic", "ucf101", "hmdb51", "mmaction"),
                   help="mmaction: MMAction2 annotation lists in --split-dir")
    p.add_argument("--videos", help="video root (ucf101/hmdb51: <Class>/<video>)")
    p.add_argument("--frames", help="existing rawframes (skips extraction)")
    p.add_argument("--split-dir", help="official split files (ucf101/hmdb51), or MMAction2 "
                                       "annotation lists (mmaction)")
    p.add_argument("--split", nargs="+", default=["1"], metavar="N",
                   help="split(s) 1..3, or all: each is run, then a table over the splits")
    p.add_argument("--preset", default="cpu-demo", choices=sorted(PRESETS))
    p.add_argument("--arch", help="override the preset's backbone")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--input-size", type=int, help="override the preset's input size")
    p.add_argument("--num-segments", type=int, help="override the preset's segments")
    p.add_argument("--synthetic-clips-per-group", type=int, help="smaller synthetic set")
    p.add_argument("--synthetic-groups", type=int, help="smaller synthetic set (a third of the "
                                                        "groups are the test split)")
    p.add_argument("--synthetic-frames", type=int, help="shorter synthetic clips")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the synthetic set and of the validation hold-out (fixed while "
                        "--seed varies training)")
    p.add_argument("--work-dir", default="data/demo", help="generated data, frames and runs")
    p.add_argument("--results-root", default="results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p)
    p.add_argument("--consensus", nargs="+", default=list(CONSENSUS), choices=CONSENSUS)
    p.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    p.add_argument("--fusion-weights", nargs=2, type=float, default=[1.0, 1.5],
                   help="spatial:temporal weights of the `weighted` row, fixed in advance")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--name", help="results/<name>/ (default: demo for synthetic)")
    p.add_argument("--seed", type=int, default=0, help="seed of training (initialisation, "
                                                       "sampling, augmentation)")
    return p


class Timer:
    """Wall time per step, for the report."""

    def __init__(self):
        self.steps: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Step:
            def __enter__(self):
                self.t = time.perf_counter()
                log.info("== %s", name)

            def __exit__(self, *exc):
                timer.steps[name] = timer.steps.get(name, 0.0) + time.perf_counter() - self.t
        return _Step()


def step_data(args, work: Path) -> tuple[Path, Path, dict | None]:
    """(video root, split dir, synthetic manifest or None)."""
    if args.dataset != "synthetic":
        if not args.split_dir or not (args.videos or args.frames):
            raise UserError(f"--dataset {args.dataset} needs --split-dir and --videos "
                            "(or --frames)")
        return Path(args.videos or ""), Path(args.split_dir), None
    cfg = SyntheticConfig(seed=args.data_seed)
    if args.synthetic_clips_per_group:
        cfg = dataclasses.replace(cfg, clips_per_group=args.synthetic_clips_per_group)
    if args.synthetic_groups:
        cfg = dataclasses.replace(cfg, num_groups=args.synthetic_groups,
                                  test_groups=max(1, args.synthetic_groups // 3))
    if args.synthetic_frames:
        cfg = dataclasses.replace(cfg, num_frames=args.synthetic_frames)
    root = work / "synthetic"
    split = generate(root, cfg, quiet=args.quiet)
    print(f"synthetic data set at {root}: {len(split.classes)} classes, {len(split.train)} "
          f"train / {len(split.test)} test videos")
    # the data layer reads RGB straight from a video file, no extraction needed
    src = VideoFileSource(root / "videos")
    rec = resolve_records(split.train[:1], src.counts([split.train[0].video_id]))
    x, _, vid = VideoDataset(rec, src, ClipConfig(input_size=64), train=True)[0]
    print(f"RGB sample of {vid} read from its video file: tensor {list(x.shape)} [K, C, H, W]")
    return root / "videos", root / "splits", json.loads((root / MANIFEST).read_text())


def step_frames(args, videos: Path, work: Path, preset: dict) -> Path:
    if args.frames:
        return Path(args.frames)
    out = work / "frames"
    cfg = ExtractConfig(flow=preset["flow"], new_short=preset["new_short"],
                        new_size=preset["new_size"])
    s = extract_all(videos, out, cfg, workers=os.cpu_count() or 1,
                    quiet=args.quiet)
    print(f"frames and flow at {out}: {s.line()}")
    if s.failed:
        print(f"warning: {s.failed} videos failed, see {out / 'failures.csv'}")
    return out


def parse_splits(values: list[str]) -> list[int]:
    """`--split 1 2 3` or `--split all` -> [1, 2, 3]."""
    if values == ["all"]:
        return [1, 2, 3]
    try:
        splits = [int(v) for v in values]
    except ValueError:
        raise UserError(f"--split {' '.join(values)}: give split numbers (1 2 3) or all"
                        ) from None
    if len(set(splits)) < len(splits) or min(splits) < 1:
        raise UserError(f"--split {' '.join(values)}: each split once, numbered from 1")
    return splits


def stream_configs(args, stream: str, consensus: str, split_dir: Path, frames: Path,
                   work: Path, preset: dict, split: int | None = None) -> dict:
    """The same dataclasses the stream CLIs build, with the preset and overrides applied."""
    modality = STREAMS[stream]
    split = split if split is not None else parse_splits(args.split)[0]
    over = merge_concerns(merge_concerns(MODALITY_DEFAULTS[modality], preset["common"]),
                          preset["modality"][modality])
    for flag, concern, field in (("arch", "model", "arch"), ("epochs", "optim", "epochs"),
                                 ("batch_size", "data", "batch_size"),
                                 ("input_size", "clip", "input_size"),
                                 ("num_segments", "clip", "num_segments")):
        if getattr(args, flag) is not None:
            over[concern][field] = getattr(args, flag)
    if args.input_size is not None:
        over["clip"]["scale_size"] = round(args.input_size * 256 / 224)
    runs = work / "runs" / f"split{split}"
    run_dir = runs / f"{stream}_{consensus}"
    model = dict(over.get("model", {}), consensus=consensus, modality=modality,
                 new_length=over["clip"]["new_length"])
    if consensus == "lstm":
        # the CNN-LSTM recipe: the LSTM head learns on the frozen CNN of the mean run
        model.update(freeze_backbone=True,
                     weights=str(runs / f"{stream}_mean" / "checkpoint_best.pt"))
    dataset = "ucf101" if args.dataset == "synthetic" else args.dataset
    return {
        "data": DataConfig(**{**over.get("data", {}), "dataset": dataset, "split": split,
                              "split_dir": str(split_dir), "frames": str(frames),
                              "val_seed": args.data_seed}),
        "clip": ClipConfig(**over["clip"]),
        "model": ModelConfig(**model),
        "optim": OptimConfig(**over["optim"]),
        "run": RunConfig(run_dir=str(run_dir), seed=args.seed, resume=True, quiet=args.quiet),
    }


def trained(run_dir: Path, cfgs: dict) -> bool:
    """A finished run of exactly these settings exists. A run made with other settings (an
    older preset, another seed) is cleared, so it is retrained, never reused silently."""
    last = run_dir / "checkpoint_last.pt"
    if not last.exists():
        return False
    ck = load_checkpoint(last)
    diff = identity_diff(saved_config(ck), cfgs)
    if diff:
        log.warning("%s: trained with other settings (%s): training again", run_dir, diff)
        for f in run_dir.glob("*"):
            if f.name.startswith(("checkpoint_", "scores_", "features_")) or f.name in (
                    "log.csv", "curves.png"):
                f.unlink()
        return False
    return ck["epoch"] >= cfgs["optim"].epochs


def scores_current(path: Path, epoch: int, clip: ClipConfig) -> bool:
    """A score file of this checkpoint epoch under this test protocol exists."""
    if not path.exists():
        return False
    meta = load_scores(path).meta
    return (meta.get("epoch"), meta.get("segments"), meta.get("crops"),
            meta.get("average_views")) == (epoch, clip.test_segments, clip.test_crops,
                                           clip.average_views)


def step_train_and_score(cfgs: dict, stream: str) -> tuple[dict[str, Path], bool]:
    """Train (or resume) a run, then write scores_val.npz and scores_test.npz. Returns their
    paths and whether the run trained now (False: a finished run of these settings)."""
    run_dir = Path(cfgs["run"].run_dir)
    trained_now = not trained(run_dir, cfgs)
    if trained_now:
        fit(cfgs)
    ck_path = run_dir / "checkpoint_best.pt"
    ck = load_checkpoint(ck_path)
    data = build_data(cfgs["data"], cfgs["clip"])
    out = {}
    for split, records in (("val", data.val), ("test", data.test)):
        path = run_dir / f"scores_{split}.npz"
        out[split] = path
        if not scores_current(path, ck["epoch"], cfgs["clip"]):
            write_scores(cfgs, ck_path, ck, data, records, split, stream,
                         dist.local_device("auto"))
    return out, trained_now


def score_metrics(sf: ScoreFile) -> dict[str, float]:
    """Top-1, top-5 and mean class accuracy of a score file, in %."""
    return {"top1": 100 * topk_accuracy(sf.scores, sf.labels, 1),
            "top5": 100 * topk_accuracy(sf.scores, sf.labels, 5),
            "mean_class_acc": 100 * class_mean(topk_correct(sf.scores, sf.labels), sf.labels,
                                               len(sf.classes))}


def group_accuracy(sf: ScoreFile, classes: list[str]) -> float:
    """Top-1 over the videos of the given classes."""
    idx = [sf.classes.index(c) for c in classes]
    keep = np.isin(sf.labels, idx)
    return float((sf.scores[keep].argmax(1) == sf.labels[keep]).mean())


def stream_table(scores: dict[tuple[str, str], dict[str, Path]], manifest: dict | None
                 ) -> pd.DataFrame:
    rows = []
    for (stream, cons), paths in scores.items():
        sf = load_scores(paths["test"])
        row = {"stream": stream, "consensus": cons,
               **{k: round(v, 2) for k, v in score_metrics(sf).items()}}
        if manifest:
            row["appearance_classes_top1"] = round(
                100 * group_accuracy(sf, manifest["appearance_classes"]), 2)
            row["motion_classes_top1"] = round(
                100 * group_accuracy(sf, manifest["motion_classes"]), 2)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_appearance_motion(df: pd.DataFrame, fused: dict[str, tuple[float, float]],
                           path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    mean = df[df.consensus == "mean"]
    labels = list(mean.stream) + list(fused)
    app = list(mean.appearance_classes_top1) + [v[0] for v in fused.values()]
    mot = list(mean.motion_classes_top1) + [v[1] for v in fused.values()]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 3.6))
    ax.bar(x - 0.2, app, 0.4, label="appearance classes")
    ax.bar(x + 0.2, mot, 0.4, label="motion classes")
    ax.set_xticks(x, labels)
    ax.set_ylabel("top-1 %")
    ax.set_ylim(0, 100)
    ax.set_title("The two-stream effect on the synthetic set (mean consensus)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def step_fuse(args, scores, manifest, out: Path, streams_df: pd.DataFrame) -> str:
    """Fusion table and grid via benchmarks/fuse.py, the appearance/motion plot, the curves."""
    names = list(args.streams)
    main_cons = args.consensus[0]
    fuse_args = []
    for cons in args.consensus:
        for s in names:
            fuse_args += ["--stream", f"{s}@{cons}={scores[(s, cons)]['test']}",
                          "--val", f"{s}@{cons}={scores[(s, cons)]['val']}"]
    fuse_args += ["--grid", "--out", str(out), "--resamples", str(args.resamples),
                  "--seed", str(args.seed), "--title",
                  f"Fusion of {' + '.join(names)} ({main_cons} consensus), test split"]
    if len(names) == len(args.fusion_weights):
        fuse_args += ["--weights", *map(str, args.fusion_weights)]
    fargs = fuse.get_args_parser().parse_args(fuse_args)
    fuse.run(fargs)
    fused = {}
    if manifest:
        files = {s: load_scores(scores[(s, main_cons)]["test"]) for s in names}
        stack = np.stack([files[s].scores.astype(np.float64) for s in names])
        for method in ("average", "var"):
            sf = dataclasses.replace(files[names[0]], scores=fuse_fixed(stack, method))
            fused[f"fused ({method})"] = (100 * group_accuracy(sf, manifest["appearance_classes"]),
                                          100 * group_accuracy(sf, manifest["motion_classes"]))
        plot_appearance_motion(streams_df, fused, out / "appearance_vs_motion.png")
    for (s, cons), paths in scores.items():
        src = Path(paths["test"]).parent / "curves.png"
        if src.exists():
            shutil.copyfile(src, out / f"curves_{s}_{cons}.png")
    return (out / "table.md").read_text()


SPREAD_SWEEP = "sweep_consensus"


def sweep_spread(results_root: Path, args) -> list[str]:
    """README lines: how much the temporal stream's top-1 moves over seeds, from the committed
    consensus sweep on the same synthetic set (none for other data sets)."""
    table = results_root / SPREAD_SWEEP / "table.csv"
    if args.dataset != "synthetic" or not table.exists():
        return []
    df = pd.read_csv(table)
    segments = args.num_segments or PRESETS[args.preset]["common"]["clip"]["num_segments"]
    df = df[df["clip.num_segments"] == segments]
    if df.empty:
        return []
    rows = pd.DataFrame({"consensus": df["model.consensus"], "seeds": df.seeds,
                         "top1 mean": df.top1_mean, "sd": df.top1_sd,
                         "min": df.top1_min, "max": df.top1_max})
    return ["## How much these numbers move", "",
            "Every run above is one seed. The sweep "
            f"[`results/{SPREAD_SWEEP}`](../{SPREAD_SWEEP}/README.md) trained the temporal "
            f"stream on this data set and validation hold-out with each consensus "
            f"({segments} segments) on several seeds: test top-1 %", "",
            markdown_table(rows.round(2)), "",
            "A seed alone moves a stream's top-1 by up to "
            f"{rows['max'].sub(rows['min']).max():.1f} "
            "points here, so a single-run difference smaller than that is not evidence of a "
            "better consensus or fusion method; the sweep's table says which differences hold "
            "over seeds.", ""]


def write_readme(args, out: Path, timer: Timer, streams_df, manifest, started: float) -> None:
    grid = (out / "grid.md").read_text() if (out / "grid.md").exists() else ""
    table = (out / "table.md").read_text()
    lines = [f"# Two-stream benchmark: {args.name}", "",
             "Produced by `" + " ".join(["python -m benchmarks.suite", *sys.argv[1:]]) + "`"
             " (versions, machine and commit in `run.json`; every run's resolved config in "
             f"`{args.work_dir}/runs/<stream>_<consensus>/config.json`).", "",
             "## Fusion (test split)", "", table.split("\n", 2)[2] if table.startswith("#")
             else table, "",
             "Learned rows (`search`, `stack`) fit on the validation score files (a "
             "group-disjoint hold-out of the training list): no test label is used by any row.",
             "", "## Fusion method x consensus (test top-1 / top-5)", "",
             grid.split("\n", 2)[2] if grid.startswith("#") else grid, "",
             "## Single streams (test split)", "", markdown_table(streams_df), ""]
    if manifest:
        lines += ["Appearance classes differ only in colour (equal luma: identical for optical "
                  "flow), motion classes only in motion (identical in a single frame). Chance "
                  f"is {100 / len(manifest['classes']):.1f} %.", "",
                  "![appearance vs motion](appearance_vs_motion.png)", ""]
    lines += sweep_spread(Path(args.results_root), args)
    lines += ["## Training curves", ""]
    lines += [f"![{p.stem}]({p.name})" for p in sorted(out.glob("curves_*.png"))]
    lines += ["", "## Confusion matrix of the best fused row", ""]
    lines += [f"![{p.stem}]({p.name})" for p in sorted(out.glob("confusion_*.png"))]
    lines += ["", "## Wall time per step", "", "| step | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timer.steps.items()]
    lines += [f"| total | {time.perf_counter() - started:.1f} |", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def default_name(args, splits: list[int]) -> str:
    base = "demo" if args.dataset == "synthetic" else args.dataset
    if splits == [1] and args.dataset == "synthetic":
        return base
    return f"{base}_split{splits[0]}" if len(splits) == 1 else \
        f"{base}_splits{'-'.join(map(str, splits))}"


def run_split(args, split: int, videos_split_dir: Path, frames: Path, work: Path, preset: dict,
              manifest: dict | None, out: Path, timer: Timer, started: float
              ) -> tuple[pd.DataFrame, dict]:
    """Both streams x every consensus on one split, its fusion table and README in `out`."""
    scores, configs = {}, {}
    order = sorted(args.consensus, key=lambda c: c == "lstm")  # lstm needs the mean run
    tag = f"split{split} " if parse_splits(args.split) != [split] else ""
    for stream in args.streams:
        for cons in order:
            cfgs = stream_configs(args, stream, cons, videos_split_dir, frames, work, preset,
                                  split)
            configs[f"split{split}/{stream}_{cons}"] = {k: dataclasses.asdict(v)
                                                        for k, v in cfgs.items()}
            with timer(f"{tag}train+score {stream} {cons}"):
                scores[(stream, cons)], _ = step_train_and_score(cfgs, stream)
    scores = {(s, c): scores[(s, c)] for c in args.consensus for s in args.streams}
    streams_df = stream_table(scores, manifest)
    out.mkdir(parents=True, exist_ok=True)
    write_table(streams_df, out, "streams", f"Single streams (test split {split})")
    with timer(f"{tag}fusion"):
        table = step_fuse(args, scores, manifest, out, streams_df)
    write_readme(args, out, timer, streams_df, manifest, started)
    print(markdown_table(streams_df))
    print(table)
    return streams_df, configs


def summarise_splits(args, splits: list[int], streams: dict[int, pd.DataFrame], out: Path,
                     timer: Timer, started: float) -> None:
    """The table papers report: every stream and fusion row per split, mean and sd over them."""
    names = {n: f"split{n}" for n in splits}
    streams_df = fuse.split_summary({names[n]: streams[n] for n in splits},
                                    keys=("stream", "consensus"))
    write_table(streams_df, out, "streams", f"Single streams over {len(splits)} splits")
    fusion = fuse.split_summary({names[n]: pd.read_csv(out / names[n] / "table.csv")
                                 for n in splits})
    write_table(fusion, out, "table", f"Fusion ({args.consensus[0]} consensus) over "
                f"{len(splits)} splits", "Each split's full table, with CIs and the fusion "
                "grid, is in its folder; the mean over the splits is the number papers report.")
    lines = [f"# Two-stream benchmark: {args.name}", "",
             "Produced by `" + " ".join(["python -m benchmarks.suite", *sys.argv[1:]]) + "`"
             " (versions, machine and commit in `run.json`).", "",
             f"Splits {', '.join(map(str, splits))}, each in its folder "
             f"({', '.join(f'[{v}]({v}/README.md)' for v in names.values())}).", "",
             "## Single streams, test top-1 % per split and over the splits", "",
             markdown_table(streams_df), "",
             f"## Fusion ({args.consensus[0]} consensus), test top-1 % per split and over the "
             "splits", "", markdown_table(fusion), "",
             "Learned rows fit on each split's validation score files (a group-disjoint "
             "hold-out of that split's training list).", "",
             "## Wall time per step", "", "| step | seconds |", "| --- | --- |",
             *[f"| {k} | {v:.1f} |" for k, v in timer.steps.items()],
             f"| total | {time.perf_counter() - started:.1f} |", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    print(markdown_table(streams_df))
    print(markdown_table(fusion))


def run(args: argparse.Namespace) -> int:
    note_start()
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(message)s")
    splits = parse_splits(args.split)
    args.name = args.name or default_name(args, splits)
    if "lstm" in args.consensus and "mean" not in args.consensus:
        raise UserError("the lstm head trains on the mean run's CNN: add mean to --consensus")
    started = time.perf_counter()
    timer = Timer()
    work = Path(args.work_dir)
    preset = preset_for(args.preset, args.dataset)
    out = Path(args.results_root) / args.name
    out.mkdir(parents=True, exist_ok=True)
    with timer("data"):
        videos, split_dir, manifest = step_data(args, work)
    with timer("frames and flow"):
        frames = step_frames(args, videos, work, preset)
    streams, configs = {}, {}
    for split in splits:
        sub = out if len(splits) == 1 else out / f"split{split}"
        streams[split], cfgs = run_split(args, split, split_dir, frames, work, preset,
                                         manifest, sub, timer, started)
        configs.update(cfgs)
    if len(splits) > 1:
        summarise_splits(args, splits, streams, out, timer, started)
    write_run_json(out, options=vars(args), step_seconds=timer.steps,
                   total_seconds=round(time.perf_counter() - started, 1),
                   synthetic=manifest, run_configs=configs)
    print(f"results in {out}/ ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
