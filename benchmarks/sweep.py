"""Resumable sweeps with seeds: a grid of config values x training seeds, one stream.

    python -m benchmarks.sweep --name sweep_consensus --stream temporal \\
        --grid model.consensus=mean,max,var,topk,lstm clip.num_segments=3,5 --seeds 0 1 2
    python -m benchmarks.sweep --name sweep_flow --stream temporal \\
        --grid flow.algorithm=tvl1,dis,farneback --seeds 0 1 2
    python -m benchmarks.sweep ... --executor slurm --partition gpu --gpus-per-job 1

Each cell x seed trains and scores in `<work-dir>/sweeps/<name>/<cell>/seed<k>/`. The seed
sets initialisation, sampling and augmentation; the data set and the validation hold-out keep
`--data-seed`. A rerun skips a finished run only when its identity (data, clip, model, optim,
seed, weights-file digest) equals the requested one, and resumes an interrupted one. A cell
with `model.consensus=lstm` follows the suite's CNN-LSTM recipe: the LSTM learns on the frozen
CNN of the same seed's `mean` run of that cell (trained first; with `model.consensus` in the
grid it is the `mean` cell itself). `flow.algorithm` extracts one set of rawframes per value.
`--executor local|slurm` trains every cell x seed that is not done as its own job (submitit;
logs in `<work-dir>/submitit/<name>/`), the LSTM cells in a second wave after their `mean`
runs, then writes the table here; `--dry-run` prints the sbatch script and submits nothing.

Output `results/<name>/`: `table.md|csv` (one row per cell: mean, sd, min, max over seeds;
each cell against the best, paired by seed), `pairs.csv` (every pair of cells), `runs.csv`
(every run), `top1_by_<key>.png`, `run.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.sweep_tables import cell_slug, plot, summarise, verdicts
from flow_tools.executors import add_executor_args
from flow_tools.params import ALGORITHMS, FlowParams
from two_stream import recipes, runlock
from two_stream.config import CONCERNS, Config
from two_stream.engine.tensorboard import wants_board, write_hparams
from two_stream.errors import EXIT_CODES_HELP, UserError, run_cli
from two_stream.jobs import TrainJob, train_waves, training_options
from two_stream.progress import progress
from two_stream.report import (
    atomic_write_text,
    markdown_table,
    note_start,
    write_run_json,
    write_table,
)
from two_stream.scores import load_scores

log = logging.getLogger("sweep")
FLOW_KEY = "flow.algorithm"
# set by the stream and the split, not by a sweep
_FIXED = {"model.num_classes", "model.modality", "model.new_length", "clip.modality",
          "data.dataset", "data.split", "data.split_dir", "data.frames", "data.val_seed",
          "run.run_dir", "run.seed", "run.resume"}
# what the CNN of an LSTM cell does not depend on
_HEAD_KEYS = {"model.consensus", "model.lstm_hidden", "model.lstm_layers",
              "model.lstm_bidirectional", "model.lstm_loss", "model.freeze_backbone",
              "model.topk_segments"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    recipes.add_recipe_args(p)
    p.add_argument("--name", required=True, help="results/<name>/ and the runs' folder")
    p.add_argument("--stream", default="temporal", choices=list(recipes.STREAMS))
    p.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="swept values of a config field (concern.field, e.g. optim.lr, "
                        "clip.num_segments, model.lstm_hidden) or flow.algorithm")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=V",
                   help="a fixed value for every cell (same keys as --grid)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--tensorboard", default="auto", choices=("auto", "on", "off"),
                   help="the table as TensorBoard hparams in <work-dir>/sweeps/<name>/"
                        "tb_hparams/ (auto: when tensorboard is installed)")
    add_executor_args(p)
    return p


# --- config values -------------------------------------------------------------------------
def field_type(key: str) -> type:
    """The type of `concern.field` (UserError naming the choices for an unknown key)."""
    if key == FLOW_KEY:
        return str
    concern, _, name = key.partition(".")
    if concern not in CONCERNS:
        raise UserError(f"unknown key {key!r}: use concern.field with a concern of "
                        f"{sorted(CONCERNS)}, or {FLOW_KEY}")
    fields = {f.name: f for f in dataclasses.fields(CONCERNS[concern])}
    if name not in fields:
        raise UserError(f"unknown key {key!r}: {concern} has {sorted(fields)}")
    if key in _FIXED:
        raise UserError(f"{key} is set by the stream, the split or the sweep, not by --grid/--set")
    default = getattr(CONCERNS[concern](), name)
    return tuple if isinstance(default, (tuple, list)) else type(default)


def parse_value(key: str, text: str):
    kind = field_type(key)
    try:
        if kind is bool:
            low = text.lower()
            if low not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError
            return low in ("true", "yes", "1")
        if kind is tuple:  # milestones: 30:60
            return tuple(int(v) for v in text.split(":"))
        value = kind(text)
    except ValueError:
        raise UserError(f"{key}={text!r}: not a {kind.__name__}") from None
    if key == FLOW_KEY and value not in ALGORITHMS:
        raise UserError(f"{key}={text!r}: choose from {ALGORITHMS}")
    return value


def parse_assignments(items: list[str], many: bool) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not values:
            raise UserError(f"{item!r}: expected KEY=V{'1,V2' if many else ''}")
        if key in out:
            raise UserError(f"{key} given twice")
        texts = values.split(",") if many else [values]
        parsed = [parse_value(key, t) for t in texts]
        if len(set(map(str, parsed))) < len(parsed):
            raise UserError(f"{item!r}: a value is repeated")
        out[key] = parsed
    return out


def apply(cfg: Config, values: dict) -> Config:
    """`cfg` with `concern.field` values set (flow.algorithm is not a config field)."""
    for key, value in values.items():
        if key == FLOW_KEY:
            continue
        concern, _, name = key.partition(".")
        cfg = cfg.replace(**{concern: dataclasses.replace(getattr(cfg, concern),
                                                          **{name: value})})
    # the model follows the clip, as on the stream CLIs
    return cfg.replace(model=dataclasses.replace(cfg.model, modality=cfg.clip.modality,
                                                 new_length=cfg.clip.new_length))


def resolved_config(plan: Plan) -> dict:
    """A run's config as training resolved it (num_classes from the split): its
    config.json's concerns, else the requested ones."""
    path = Path(plan.run_dir) / "config.json"
    if not path.exists():
        return plan.cfg.to_dict()
    return Config.from_dict(json.loads(path.read_text()), source=str(path)).to_dict()


HPARAMS_DIR = "tb_hparams"
HPARAM_METRICS = ("top1_mean", "top1_sd", "top5_mean", "mean_class_acc_mean", "val_top1_mean")


def write_table_hparams(table: pd.DataFrame, keys: list[str], log_dir: Path) -> int:
    """The table as TensorBoard hparams (one trial per cell: the swept values and the seed
    count as hyperparameters, the means over seeds as metrics); rewritten whole each time,
    so a rerun does not add a second copy of every trial."""
    shutil.rmtree(log_dir, ignore_errors=True)
    rows = table[[*keys, "seeds", *HPARAM_METRICS]].to_dict("records")
    return write_hparams(log_dir, rows, metrics=list(HPARAM_METRICS))


# --- runs ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Plan:
    """One training run: a cell's configuration and seed, or the CNN an LSTM cell freezes."""
    cell: dict
    seed: int
    cfg: Config
    is_cell: bool = True
    needs: "Plan | None" = None  # the mean run whose CNN an LSTM cell freezes

    @property
    def run_dir(self) -> str:
        return self.cfg.run.run_dir


def flow_frames(args, videos: Path, work: Path, preset: dict, algorithm: str | None) -> Path:
    """The rawframes of a flow algorithm: the suite's frames for the preset's algorithm, one
    more extraction per other algorithm (same sizes and bound)."""
    if algorithm is None or algorithm == preset["flow"].algorithm:
        return recipes.frames_step(videos, work, preset=preset, frames=args.frames,
                                   quiet=args.quiet)
    if args.frames:
        raise UserError(f"{FLOW_KEY}={algorithm}: the sweep extracts rawframes per flow "
                        "algorithm from --videos; it cannot re-extract --frames")
    out = work / f"frames_{algorithm}"
    s = recipes.extract_frames(videos, out, preset=preset, flow=FlowParams(algorithm),
                               quiet=args.quiet)
    print(f"{algorithm} frames and flow at {out}: {s.line()}")
    return out


def plan_runs(args, grid: dict, fixed: dict, frames: dict, split_dir: Path, work: Path,
              preset: dict) -> list[Plan]:
    """Every cell x seed in training order: an LSTM cell after the mean run it starts from
    (the grid's own mean cell when `model.consensus` is swept, else a `cnn_*` run)."""
    root = work / "sweeps" / args.name
    keys = list(grid)
    split = recipes.parse_splits(args.split)[0]

    def make(cell: dict, values: dict, seed: int, slug: str, is_cell: bool) -> Plan:
        cfg = recipes.stream_configs(
            args.stream, "mean", preset=preset, dataset=args.dataset, split=split,
            split_dir=split_dir, frames=frames[values.get(FLOW_KEY)], work=work, seed=seed,
            data_seed=args.data_seed, quiet=args.quiet,
            overrides=recipes.Overrides.from_args(args))
        cfg = apply(cfg, values)
        cfg = cfg.replace(run=dataclasses.replace(cfg.run, run_dir=str(root / slug /
                                                                       f"seed{seed}")))
        return Plan(cell, seed, cfg, is_cell)

    cells = [make(dict(zip(keys, combo)), {**fixed, **dict(zip(keys, combo))}, seed,
                  cell_slug(dict(zip(keys, combo))), True)
             for combo in itertools.product(*(grid[k] for k in keys)) for seed in args.seeds]
    by_dir = {p.run_dir: p for p in cells}
    cnns: dict[str, Plan] = {}
    for plan in cells:
        if plan.cfg.model.consensus != "lstm" or "model.weights" in {**fixed, **plan.cell}:
            continue
        # the same cell with mean consensus and no head settings: a grid cell, or a cnn_ run
        cnn_cell = {k: ("mean" if k == "model.consensus" else v) for k, v in plan.cell.items()
                    if k == "model.consensus" or k not in _HEAD_KEYS}
        values = {k: v for k, v in {**fixed, **cnn_cell}.items() if k not in _HEAD_KEYS}
        slug = cell_slug(cnn_cell) if "model.consensus" in cnn_cell else (
            "cnn_" + cell_slug(cnn_cell))
        cnn = make(cnn_cell, values, plan.seed, slug, False)
        cnn = by_dir.get(cnn.run_dir) or cnns.setdefault(cnn.run_dir, cnn)
        plan.needs = cnn
        plan.cfg = plan.cfg.replace(model=dataclasses.replace(
            plan.cfg.model, freeze_backbone=True,
            weights=str(Path(cnn.run_dir) / "checkpoint_best.pt")))
    return [*cnns.values(), *sorted(cells, key=lambda p: p.needs is not None)]


def run_plan(plan: Plan, stream: str, submitted: recipes.StreamRun | None = None) -> dict:
    """A run's row of runs.csv; trains it here unless it was `submitted` as a job (then only
    reads its score files)."""
    run_dir = Path(plan.run_dir)
    t0 = time.perf_counter()
    trained = submitted or recipes.train_and_score(plan.cfg, stream)
    paths, trained_now = trained.scores, trained.trained_now
    test = recipes.score_metrics(load_scores(paths["test"]))
    val = load_scores(paths["val"]) if paths["val"].exists() else None
    val_top1 = recipes.score_metrics(val)["top1"] if val is not None and len(val.labels) \
        else float("nan")
    log_csv = run_dir / "log.csv"
    train_s = float(pd.read_csv(log_csv).epoch_time.sum()) if log_csv.exists() else float("nan")
    return {**plan.cell, "seed": plan.seed, **test, "val_top1": val_top1,
            "run_dir": str(run_dir), "trained_now": trained_now,
            "train_seconds": round(train_s, 1), "seconds": round(time.perf_counter() - t0, 1)}


def write_readme(out: Path, args, table: pd.DataFrame, keys: list[str], runs: pd.DataFrame
                 ) -> None:
    """README.md: command, table, verdicts, plots; `notes.md` (hand-written reading of the
    table, kept across reruns) is included when present."""
    notes = out / "notes.md"
    lines = [f"# Sweep `{args.name}`: {args.stream} stream, {len(args.seeds)} seeds", "",
             "Produced by `" + " ".join(["python -m benchmarks.sweep", *sys.argv[1:]]) + "`"
             " (commit, versions and machine in `run.json`; every run in `runs.csv`; every "
             f"pair of cells in `pairs.csv`). Training took {runs.train_seconds.sum() / 60:.0f} "
             "min summed over the cells' runs (epoch times in each run's `log.csv`; the CNN "
             "runs of LSTM cells and scoring not included).", "",
             "Test top-1 / top-5 / mean class accuracy in %, mean (sd, min, max) over the "
             "seeds. A seed sets initialisation, sampling and augmentation; the data set and "
             "the validation hold-out are the same for every run. `diff_vs_best`: mean of the "
             "per-seed differences to the best cell, `p_vs_best`: paired t-test over seeds. "
             "`val_top1_mean` is the validation hold-out's top-1: the column to choose a "
             "setting by (test top-1 is reported, never tuned on).", "",
             markdown_table(table), "", "## Differences to the best cell", "",
             *verdicts(table, keys), "",
             f"With {len(args.seeds)} seeds a paired t-test has little power: "
             "'within the seed spread' means not shown, not shown equal.", ""]
    if notes.exists():
        lines += ["## What this shows", "", notes.read_text().strip(), ""]
    lines += [f"![{p.stem}]({p.name})" for p in sorted(out.glob("top1_by_*.png"))]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    note_start()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    grid = parse_assignments(args.grid, many=True)
    fixed = {k: v[0] for k, v in parse_assignments(args.set, many=False).items()}
    both = set(grid) & set(fixed)
    if both:
        raise UserError(f"{sorted(both)} in both --grid and --set")
    if len(recipes.parse_splits(args.split)) > 1:
        raise UserError(f"--split {' '.join(args.split)}: a sweep runs on one split")
    if len(set(args.seeds)) < len(args.seeds):
        raise UserError(f"--seeds {args.seeds}: a seed is repeated")
    if args.stream == "spatial" and (FLOW_KEY in grid or FLOW_KEY in fixed):
        raise UserError(f"{FLOW_KEY} changes only the temporal stream's input")
    wants_board(args.tensorboard)  # --tensorboard on without tensorboard: say so before training
    with runlock.acquire(args.work_dir, what="work directory"):
        return _run(args, grid, fixed, started)


def _run(args: argparse.Namespace, grid: dict, fixed: dict, started: float) -> int:
    algorithms = grid.get(FLOW_KEY, [fixed.get(FLOW_KEY)])
    work = Path(args.work_dir)
    preset = recipes.preset_for(args.preset, args.dataset)
    inputs = recipes.inputs_from_args(args)
    videos, split_dir, manifest = inputs.videos, inputs.split_dir, inputs.manifest
    frames = {a: flow_frames(args, videos, work, preset, a) for a in algorithms}
    if None not in frames:
        frames[None] = frames[algorithms[0]]
    plans = plan_runs(args, grid, fixed, frames, split_dir, work, preset)
    submitted: dict[str, recipes.StreamRun] = {}
    if args.executor != "inprocess" or args.dry_run:
        # one job per cell x seed; an LSTM cell in a second wave, after its mean run
        waves = [[TrainJob(p.cfg, args.stream) for p in plans if p.needs is None],
                 [TrainJob(p.cfg, args.stream) for p in plans if p.needs is not None]]
        options = training_options(args, folder=work / "submitit" / args.name,
                                   job_name=f"sweep-{args.name}")
        submitted = train_waves(waves, options, dry_run=args.dry_run)
        print(f"{len(submitted)} of {len(plans)} runs trained as {args.executor} jobs (logs "
              f"under {options.folder})")
        if args.dry_run or not options.wait:
            return 0
    results = []
    for plan in progress(plans, quiet=args.quiet, desc=f"sweep {args.name}", unit="run"):
        row = run_plan(plan, args.stream, submitted.get(plan.run_dir))
        if plan.is_cell:
            results.append(row)
    runs = pd.DataFrame(results)
    keys = list(grid)
    table, pairs = summarise(runs, keys)
    out = Path(args.results_root) / args.name
    out.mkdir(parents=True, exist_ok=True)
    title = (f"Sweep {args.name}: {args.stream} stream, {len(args.seeds)} seeds "
             f"({' '.join(map(str, args.seeds))}), test split")
    write_table(table, out, "table", title)
    write_table(pairs, out, "pairs", f"{args.name}: every pair of cells, paired by seed")
    write_table(runs, out, "runs", f"{args.name}: every run")
    plot(table, keys, out)
    write_readme(out, args, table, keys, runs)
    if wants_board(args.tensorboard):
        write_table_hparams(table, keys, work / "sweeps" / args.name / HPARAMS_DIR)
    write_run_json(out, options=vars(args), grid={k: list(map(str, v)) for k, v in grid.items()},
                   fixed={k: str(v) for k, v in fixed.items()},
                   total_seconds=round(time.perf_counter() - started, 1),
                   trained_now=int(runs.trained_now.sum()), synthetic=manifest,
                   run_configs={p.run_dir: resolved_config(p) for p in plans})
    print(markdown_table(table))
    print(f"results in {out}/ ({time.perf_counter() - started:.0f} s, "
          f"{int(runs.trained_now.sum())} of {len(runs)} runs trained now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
