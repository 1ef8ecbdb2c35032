"""The benchmark suite: videos -> frames and flow -> both streams x every consensus -> fusion.

    python -m benchmarks.suite                        # the embedded synthetic set (make demo)
    python -m benchmarks.suite --dataset ucf101 --videos UCF-101 --split-dir ucfTrainTestlist \
        --split 1 --preset tsn --name ucf101_split1
    python -m benchmarks.suite ... --split all --executor slurm --partition gpu --gpus-per-job 1

Steps, each skipped when its outputs are complete (a rerun after a kill resumes; changing only
fusion options reruns only fusion): generate the synthetic set (default only) -> extract frames
and TV-L1 flow -> for each stream x consensus: train (validation on a group-disjoint hold-out of
the training list), score the validation and test videos -> fusion tables (learned fusion
weights fit on the validation scores, never on test labels) -> results/<name>/.
With `--executor local|slurm` the training runs of every split and stream go out as job arrays
first (submitit; logs in <work-dir>/submitit/<name>/), only those not done; the fusion tables
follow here. One suite or sweep at a time per --work-dir (a lock file, <work-dir>/.lock).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flow_tools.executors import add_executor_args
from two_stream import recipes, runlock
from two_stream.config import Config
from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.frames import VideoFileSource
from two_stream.data.splits import resolve_records
from two_stream.errors import EXIT_CODES_HELP, UserError, run_cli
from two_stream.fuse import FusionOptions, split_summary, write_fusion_tables
from two_stream.fusion import fuse_fixed
from two_stream.fusion_choices import STACK_MODELS
from two_stream.jobs import TrainJob, train_waves, training_options
from two_stream.report import (
    atomic_write_text,
    markdown_table,
    note_start,
    write_run_json,
    write_table,
)
from two_stream.scores import ScoreFile, load_scores

log = logging.getLogger("suite")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    recipes.add_recipe_args(p)
    p.add_argument("--consensus", nargs="+", default=list(recipes.CONSENSUS),
                   choices=recipes.CONSENSUS)
    p.add_argument("--streams", nargs="+", default=list(recipes.STREAMS),
                   choices=list(recipes.STREAMS))
    p.add_argument("--fusion-weights", nargs=2, type=float, default=[1.0, 1.5],
                   help="spatial:temporal weights of the `weighted` row, fixed in advance")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--stack", default="auto", choices=STACK_MODELS,
                   help="model of the fusion table's `stack` rows (as benchmarks/fuse.py): "
                        "auto (chosen by inner CV), structured or full")
    p.add_argument("--name", help="results/<name>/ (default: demo for synthetic)")
    p.add_argument("--seed", type=int, default=0, help="seed of training (initialisation, "
                                                       "sampling, augmentation)")
    add_executor_args(p)
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


def step_data(args, work: Path) -> recipes.DataInputs:
    """The data set's videos and split lists (the synthetic set generated first); on the
    synthetic set, one RGB sample read straight from its video file, as the data layer can."""
    inputs = recipes.inputs_from_args(args)
    split = inputs.synthetic_split
    if split is not None:
        src = VideoFileSource(inputs.videos)
        rec = resolve_records(split.train[:1], src.counts([split.train[0].video_id]))
        x, _, vid = VideoDataset(rec, src, ClipConfig(input_size=64), train=True)[0]
        print(f"synthetic data set at {inputs.videos.parent}: {len(split.classes)} classes, "
              f"{len(split.train)} train / {len(split.test)} test videos")
        print(f"RGB sample of {vid} read from its video file: tensor {list(x.shape)} "
              "[K, C, H, W]")
    return inputs


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
               **{k: round(v, 2) for k, v in recipes.score_metrics(sf).items()}}
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
    """Fusion table and grid (two_stream.fuse, what benchmarks/fuse.py runs), the
    appearance/motion plot, the training curves."""
    names = list(args.streams)
    main_cons = args.consensus[0]
    keys = [(s, cons) for cons in args.consensus for s in names]
    opts = FusionOptions(
        weights=list(args.fusion_weights) if len(names) == len(args.fusion_weights) else None,
        resamples=args.resamples, seed=args.seed, grid=True, stack=args.stack,
        title=f"Fusion of {' + '.join(names)} ({main_cons} consensus), test split")
    res = write_fusion_tables({k: scores[k]["test"] for k in keys}, opts, out,
                              val={k: scores[k]["val"] for k in keys})
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
    return res.markdown


SPREAD_SWEEP = "sweep_consensus"


def sweep_spread(results_root: Path, args) -> list[str]:
    """README lines: how much the temporal stream's top-1 moves over seeds, from the committed
    consensus sweep on the same synthetic set (none for other data sets)."""
    table = results_root / SPREAD_SWEEP / "table.csv"
    if args.dataset != "synthetic" or not table.exists():
        return []
    df = pd.read_csv(table)
    segments = args.num_segments or recipes.PRESETS[args.preset]["common"]["clip"][
        "num_segments"]
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


def split_configs(args, split: int, split_dir: Path, frames: Path, work: Path, preset: dict
                  ) -> dict[tuple[str, str], Config]:
    """{(stream, consensus): config} of one split, in training order (an lstm run after the
    mean run whose CNN it freezes)."""
    order = sorted(args.consensus, key=lambda c: c == "lstm")
    return {(stream, cons): recipes.stream_configs(
        stream, cons, preset=preset, dataset=args.dataset, split=split, split_dir=split_dir,
        frames=frames, work=work, seed=args.seed, data_seed=args.data_seed, quiet=args.quiet,
        overrides=recipes.Overrides.from_args(args))
        for stream in args.streams for cons in order}


def train_in_parallel(args, configs: dict[int, dict[tuple[str, str], Config]], work: Path
                      ) -> dict[str, recipes.StreamRun] | None:
    """--executor local|slurm: every split x stream x consensus run of `configs` (by split,
    as `split_configs` gives them) that is not done, as job arrays (the lstm runs in a second
    wave, after the mean runs they start from). Returns what each submitted run did, by run
    directory; None when the command should stop here (--dry-run, --no-wait)."""
    runs = [(cons, TrainJob(cfg, stream)) for by_run in configs.values()
            for (stream, cons), cfg in by_run.items()]
    waves = [[j for c, j in runs if c != "lstm"], [j for c, j in runs if c == "lstm"]]
    options = training_options(args, folder=work / "submitit" / args.name,
                               job_name=f"suite-{args.name}")
    trained = train_waves(waves, options, dry_run=args.dry_run)
    print(f"{len(trained)} runs trained as {args.executor} jobs (logs under {options.folder})")
    return trained if not args.dry_run and options.wait else None


def run_split(args, split: int, split_runs: dict[tuple[str, str], Config],
              submitted: dict[str, recipes.StreamRun], tag: str, manifest: dict | None,
              out: Path, timer: Timer, started: float) -> tuple[pd.DataFrame, dict]:
    """Both streams x every consensus on one split (`split_runs`, from `split_configs`), its
    fusion table and README in `out`. A run `submitted` as a job (by run directory) is not
    trained or scored again here; `tag` prefixes the timer's step names."""
    scores, configs = {}, {}
    for (stream, cons), cfg in split_runs.items():
        configs[f"split{split}/{stream}_{cons}"] = cfg.to_dict()
        with timer(f"{tag}train+score {stream} {cons}"):
            trained = submitted.get(cfg.run.run_dir) or recipes.train_and_score(cfg, stream)
            scores[(stream, cons)] = trained.scores
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
    streams_df = split_summary({names[n]: streams[n] for n in splits},
                                    keys=("stream", "consensus"))
    write_table(streams_df, out, "streams", f"Single streams over {len(splits)} splits")
    fusion = split_summary({names[n]: pd.read_csv(out / names[n] / "table.csv")
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
    splits = recipes.parse_splits(args.split)
    args.name = args.name or default_name(args, splits)
    if "lstm" in args.consensus and "mean" not in args.consensus:
        raise UserError("the lstm head trains on the mean run's CNN: add mean to --consensus")
    with runlock.acquire(args.work_dir, what="work directory"):
        return _run(args, splits)


def _run(args: argparse.Namespace, splits: list[int]) -> int:
    started = time.perf_counter()
    timer = Timer()
    work = Path(args.work_dir)
    preset = recipes.preset_for(args.preset, args.dataset)
    out = Path(args.results_root) / args.name
    out.mkdir(parents=True, exist_ok=True)
    with timer("data"):
        inputs = step_data(args, work)
    videos, split_dir, manifest = inputs.videos, inputs.split_dir, inputs.manifest
    with timer("frames and flow"):
        frames = recipes.frames_step(videos, work, preset=preset, frames=args.frames,
                                     quiet=args.quiet)
    runs = {split: split_configs(args, split, split_dir, frames, work, preset)
            for split in splits}
    submitted: dict[str, recipes.StreamRun] = {}
    if args.executor != "inprocess" or args.dry_run:
        with timer("parallel training"):
            submitted = train_in_parallel(args, runs, work)
            if submitted is None:
                return 0
    streams, configs = {}, {}
    for split in splits:
        sub = out if len(splits) == 1 else out / f"split{split}"
        tag = f"split{split} " if len(splits) > 1 else ""
        streams[split], cfgs = run_split(args, split, runs[split], submitted, tag, manifest,
                                         sub, timer, started)
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
