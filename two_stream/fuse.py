"""Fusion tables from per-video score files: the library behind `benchmarks/fuse.py`.

    from two_stream.fuse import FusionOptions, write_fusion_tables
    write_fusion_tables({"spatial": "A.npz", "temporal": "B.npz"}, FusionOptions(), "out/")

A stream is keyed by its name, or by `(name, column)` for the method x consensus grid (the
`NAME@COLUMN=PATH` of the command line); its value is a score file's path or a `ScoreFile`.
Writes `table.md|csv`, `run.json` and `confusion_<best>.png` (and `grid.md|csv` with
`grid=True`), every file through a temporary name and a rename.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .fusion import METHODS, Row, fusion_rows
from .fusion_choices import FULL_CANDIDATE_MAX
from .metrics import confusion_matrix
from .report import note_start, sha256, write_run_json, write_table
from .score_consensus import consensus_from_snippets
from .scores import ScoreFile, ScoreFileError, align, load_any

StreamKey = str | tuple[str, str]  # name, or (name, column) for the grid
StreamInput = str | Path | ScoreFile


@dataclass
class FusionOptions:
    """What a fusion table computes (the flags of `benchmarks/fuse.py`, saved in run.json)."""

    methods: tuple[str, ...] = METHODS
    norms: tuple[str, ...] = ("none", "softmax")
    weights: list[float] | None = None  # for `weighted`, one per stream in stream order
    topk: int = 5  # k of var_topk
    folds: int = 5  # k of the k-fold CV of learned methods
    resamples: int = 1000  # bootstrap resamples of the CI
    seed: int = 0
    allow_missing: bool = False  # fuse the videos common to all streams
    grid: bool = False  # also the method x consensus grid
    title: str = ""
    class_index: str | None = None  # for pickle inputs
    ann_file: str | None = None  # for MMAction2 result pickles
    stack: str = "auto"  # the `stack` rows' model: auto (chosen by inner CV), structured, full
    mmaction_mean_class: bool = False  # add MMAction2's mean class accuracy beside ours


@dataclass
class FusionResult:
    """What `write_fusion_tables` wrote, for callers that go on with the numbers."""

    rows: list[Row]
    table: pd.DataFrame  # the numbers of table.csv
    markdown: str  # table.md
    out: Path
    dropped: int  # videos not in every stream (with allow_missing)
    best: str  # name of the best fused row (the confusion plot's)
    seconds: float
    grid: pd.DataFrame | None = None
    files: dict[tuple[str, str], ScoreFile] = field(default_factory=dict, repr=False)


def _key(k: StreamKey) -> tuple[str, str]:
    return (k, "") if isinstance(k, str) else (str(k[0]), str(k[1]))


def load_inputs(streams: Mapping[StreamKey, StreamInput], opts: FusionOptions
                ) -> dict[tuple[str, str], ScoreFile]:
    """{(name, column): ScoreFile}, reading the paths (npz or foreign pickles)."""
    return {_key(k): v if isinstance(v, ScoreFile) else load_any(v, opts.class_index,
                                                                 opts.ann_file)
            for k, v in streams.items()}


def _provenance(streams: Mapping[StreamKey, StreamInput], with_column: bool = True
                ) -> list[dict]:
    out = []
    for k, v in streams.items():
        name, col = _key(k)
        path = None if isinstance(v, ScoreFile) else str(v)
        out.append({"stream": name, **({"column": col} if with_column else {}), "path": path,
                    "sha256": sha256(path) if path else None})
    return out


def fused_table(files: dict[str, ScoreFile], opts: FusionOptions,
                val: dict[str, ScoreFile] | None = None) -> tuple[list[Row], int, np.ndarray]:
    """(rows, videos dropped by alignment, labels in row order) of one set of streams."""
    aligned, dropped = align(files, opts.allow_missing)
    first = next(iter(aligned.values()))
    known = first.labels >= 0
    if not known.all():
        raise ScoreFileError(f"{int((~known).sum())} videos have no label (-1): "
                             "accuracy needs labels")
    val_arg = None
    if val:
        val_aligned, _ = align(val, opts.allow_missing)
        if set(val_aligned) != set(aligned):
            raise ScoreFileError("--val needs one validation file for every --stream name")
        vfirst = next(iter(val_aligned.values()))
        val_arg = ({n: v.scores for n, v in val_aligned.items()}, vfirst.labels,
                   vfirst.video_ids)
    rows = fusion_rows({n: sf.scores for n, sf in aligned.items()}, first.labels,
                       first.video_ids, methods=tuple(opts.methods), norms=tuple(opts.norms),
                       weights=opts.weights, topk=opts.topk, num_folds=opts.folds,
                       seed=opts.seed, resamples=opts.resamples, val=val_arg,
                       stack_model=opts.stack, mmaction_mean_class=opts.mmaction_mean_class)
    return rows, dropped, first.labels


def rows_frame(rows: list[Row]) -> pd.DataFrame:
    """The numbers of table.csv: accuracies in % rounded to 0.01."""
    df = pd.DataFrame([r.as_dict() for r in rows])
    for c in ("top1", "top1_ci_lo", "top1_ci_hi", "top5", "mean_class_acc",
              "mean_class_acc_mmaction"):
        if c in df:
            df[c] = (100 * df[c]).round(2)
    return df


def p_text(v: float | None) -> str:
    """A p-value to 3 significant digits; below 1e-300 (where the binomial tail underflows
    to 0) as `< 1e-300`, never as a p of exactly 0."""
    if v is None or v != v:
        return ""
    return "< 1e-300" if v < 1e-300 else f"{v:.3g}"


def markdown_frame(df: pd.DataFrame) -> pd.DataFrame:
    """table.md's columns: the CI beside top-1, p-values to 3 significant digits."""
    p = df["p_vs_best_single"]
    mm = ({"mean class acc % (MMAction2)": df["mean_class_acc_mmaction"].map("{:.2f}".format)}
          if "mean_class_acc_mmaction" in df else {})
    return pd.DataFrame({
        "method": df["method"], "norm": df["norm"],
        "top-1 % (95% CI)": [f"{t:.2f} ({lo:.2f}-{hi:.2f})" for t, lo, hi in
                             zip(df.top1, df.top1_ci_lo, df.top1_ci_hi)],
        "top-5 %": df["top5"].map("{:.2f}".format),
        "mean class acc %": df["mean_class_acc"].map("{:.2f}".format), **mm,
        "p vs best single": [p_text(v) for v in p],
        "tied": df["tied_videos"],
        "labels used": df["labels_used"], "detail": df["detail"]})


def plot_confusion(cm: np.ndarray, classes: list[str], title: str, path: Path) -> None:
    """Row-normalised confusion matrix as a PNG (class names up to 60 classes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(classes)
    size = min(4 + 0.25 * n, 24)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 60:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    tmp = atomic_path(path)
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(path)


def columns_of(files: Mapping[tuple[str, str], ScoreFile]) -> list[str]:
    """The grid's columns, in first-seen order (empty names left out)."""
    seen: list[str] = []
    for _, c in files:
        if c and c not in seen:
            seen.append(c)
    return seen


def grid_frame(files: dict[tuple[str, str], ScoreFile], vals: dict[tuple[str, str], ScoreFile],
               opts: FusionOptions) -> pd.DataFrame:
    """Rows: single streams and fusion methods; columns: consensus (top-1 / top-5)."""
    columns = columns_of(files)
    per_column: dict[str, dict[str, ScoreFile]] = {}
    if columns:
        for (name, col), sf in files.items():
            per_column.setdefault(col, {})[name] = sf
    else:
        for mode in ("mean", "max", "var"):
            for (name, _), sf in files.items():
                if sf.snippet_scores is None:
                    raise ScoreFileError(f"--grid without NAME@COLUMN needs snippet_scores "
                                         f"in every file; {name!r} has none")
                per_column.setdefault(mode, {})[name] = ScoreFile(
                    consensus_from_snippets(sf.snippet_scores, mode), sf.labels, sf.video_ids,
                    sf.classes)
    table: dict[str, dict] = {}
    for col, streams in per_column.items():
        val = {n: sf for (n, c), sf in vals.items() if c == col} if columns else None
        rows, _, _ = fused_table(streams, opts, val or None)
        for r in rows:
            key = r.method if r.norm in ("-",) else f"{r.method} [{r.norm}]"
            table.setdefault(key, {})[f"{col} top-1"] = round(100 * r.top1, 2)
            table[key][f"{col} top-1 CI"] = f"{100 * r.top1_lo:.1f}-{100 * r.top1_hi:.1f}"
            table[key][f"{col} top-5"] = round(100 * r.top5, 2)
    df = pd.DataFrame.from_dict(table, orient="index")
    df.index.name = "method"
    return df.reset_index()


def table_note(opts: FusionOptions, n_videos: int, n_classes: int, dropped: int,
               fitted_on_val: bool) -> str:
    """table.md's note: what every column means and how labels were used."""
    return (f"{n_videos} videos, {n_classes} classes"
            + (f"; {dropped} videos not in every stream were dropped" if dropped else "")
            + f". CI: percentile bootstrap over videos, {opts.resamples} resamples, seed "
            f"{opts.seed}. p: exact McNemar test against the best single stream. "
            "Mean class acc: mean of per-class recall (what TSN reports); top-1: share of "
            "videos. `labels used` says whether and how a row used labels; "
            + ("learned rows fit on the validation score files. " if fitted_on_val else
               "learned rows cross-validate over whole groups (gNN / source film). ")
            + "tied: videos whose top score is shared by several classes; they count as the "
            "expected accuracy of a uniform random tie-break (top-1, top-5, mean class acc, CI) "
            "and as wrong in McNemar's test. `average`/`weighted`/`max` [softmax] compare "
            "log-probabilities, so saturated softmax (logits in the hundreds) creates no ties "
            "the log values can separate. `product` ranks like "
            "`average [none]` by construction (log-softmax shifts each video by a constant)."
            + _stack_note(opts) + _mmaction_note(opts))


def _stack_note(opts: FusionOptions) -> str:
    if "stack" not in opts.methods:
        return ""
    if opts.stack == "full":
        return (" `stack`: the full model (--stack full), a multinomial logistic regression "
                "on all S*C scores, [S*C x C] weights.")
    structured = ("per-stream weights, per-stream per-class weights and a class bias (S*C + C "
                  "parameters, the shape of late fusion)")
    if opts.stack == "structured":
        return (f" `stack`: {structured}, L2 strength by inner group CV on the training videos "
                "(in detail); --stack full gives the [S*C x C] model.")
    return (f" `stack`: {structured}, or where S*C*C <= {FULL_CANDIDATE_MAX:,} the full "
            "[S*C x C] logistic regression on the scores centred per video, whichever an inner "
            "group CV on the training videos finds better (lower held-out cross-entropy), with "
            "its L2 strength (in detail); --stack structured or full fixes the model.")


def _mmaction_note(opts: FusionOptions) -> str:
    if not opts.mmaction_mean_class:
        return ""
    return (" Mean class acc (MMAction2): its `mean_class_accuracy`, averaged over every class "
            "that is predicted or true, so a predicted class without test videos adds a 0, and "
            "a tie goes to the first class (argmax); ours averages recall over the true "
            "classes only and scores ties as expected values, so the two differ when a row "
            "predicts classes absent from the test videos or has ties.")


def write_fusion_tables(streams: Mapping[StreamKey, StreamInput], opts: FusionOptions,
                        out: str | Path, *,
                        val: Mapping[StreamKey, StreamInput] | None = None,
                        run_info: dict | None = None) -> FusionResult:
    """Every single stream and every fusion row of `opts` on `streams` -> `out`/table.md|csv,
    run.json (inputs with sha256, options, versions), confusion_<best>.png, and with
    `opts.grid` grid.md|csv. `val`: validation scores per stream (same keys) that the
    learned rows fit on instead of cross-validating. `run_info` goes into run.json."""
    note_start()
    start = time.perf_counter()
    out = Path(out)
    files = load_inputs(streams, opts)
    if not files:
        raise ScoreFileError("give at least one stream (--stream NAME=PATH)")
    first_col = (columns_of(files) or [""])[0]
    main_files = {n: sf for (n, c), sf in files.items() if not c or c == first_col}
    vals = load_inputs(val or {}, opts)
    val_main = {n: sf for (n, c), sf in vals.items() if not c or c == first_col} or None
    rows, dropped, labels = fused_table(main_files, opts, val_main)
    df = rows_frame(rows)
    first = next(iter(main_files.values()))
    note = table_note(opts, len(rows[0].correct), len(first.classes), dropped, bool(val_main))
    md = write_table(df, out, "table", opts.title, note, display=markdown_frame(df))
    best = max(rows[len(main_files):] or rows, key=lambda r: r.top1)
    best_name = best.method if best.norm == "-" else f"{best.method}_{best.norm}"
    plot_confusion(confusion_matrix(best.pred, labels, len(first.classes)), first.classes,
                   f"{best_name}: top-1 {100 * best.top1:.2f} %",
                   out / f"confusion_{best_name}.png")
    grid = None
    if opts.grid:
        grid = grid_frame(files, vals, opts)
        write_table(grid, out, "grid", (opts.title + " (grid)").strip(),
                    "Rows: fusion method [normalisation]; columns: consensus.")
    elapsed = time.perf_counter() - start
    write_run_json(out, inputs=_provenance(streams),
                   val_inputs=_provenance(val or {}, with_column=False),
                   options={**asdict(opts), "out": str(out)}, seconds=round(elapsed, 3),
                   **(run_info or {}))
    return FusionResult(rows, df, md, out, dropped, best_name, elapsed, grid, files)


def split_summary(tables: dict[str, pd.DataFrame], keys: tuple[str, ...] = ("method", "norm")
                  ) -> pd.DataFrame:
    """Every row of the per-split tables (rows named by `keys`; columns top1, top5,
    mean_class_acc): top-1 per split, then mean, sd, min and max over the splits, and the mean
    top-5 and mean class accuracy."""
    keys = list(keys)
    first = next(iter(tables.values()))
    out = first[keys].copy()
    for name, df in tables.items():
        df = df.set_index(keys)
        missing = set(map(tuple, out[keys].values)) - set(df.index)
        if missing:
            raise ScoreFileError(f"{name}: no row {sorted(missing)[0]} (the splits' tables "
                                 "must have the same rows)")
        for col in ("top1", "top5", "mean_class_acc"):
            out[f"{name} {col}"] = df.loc[list(map(tuple, out[keys].values)), col].values
    top1 = out[[f"{n} top1" for n in tables]]
    out["top1_mean"] = top1.mean(axis=1)
    out["top1_sd"] = top1.std(axis=1, ddof=1) if len(tables) > 1 else float("nan")
    out["top1_min"], out["top1_max"] = top1.min(axis=1), top1.max(axis=1)
    out["top5_mean"] = out[[f"{n} top5" for n in tables]].mean(axis=1)
    out["mean_class_acc_mean"] = out[[f"{n} mean_class_acc" for n in tables]].mean(axis=1)
    out = out.drop(columns=[f"{n} {c}" for n in tables for c in ("top5", "mean_class_acc")])
    return out.round(2)


@dataclass
class SplitResult:
    """What `write_split_tables` wrote: the summary and each split's table."""

    summary: pd.DataFrame
    markdown: str
    splits: dict[str, FusionResult]


def write_split_tables(split_streams: Mapping[str, Sequence[StreamInput]], opts: FusionOptions,
                       out: str | Path, *,
                       split_val: Mapping[str, Sequence[StreamInput]] | None = None,
                       split_names: Sequence[str] | None = None) -> SplitResult:
    """One fusion table per split (`out`/<split>/), then their summary in `out`/table.md|csv:
    every row's top-1 per split with the mean and spread over splits (the number papers report
    for UCF101 / HMDB51). Every stream gives one input per split, in the same split order."""
    note_start()
    start = time.perf_counter()
    split_val = split_val or {}
    counts = {len(paths) for paths in [*split_streams.values(), *split_val.values()]}
    if len(counts) != 1:
        raise ScoreFileError("--split-stream / --split-val: every stream needs one file per "
                             f"split, got {sorted(counts)} files")
    n = counts.pop()
    names = list(split_names or [f"split{k}" for k in range(1, n + 1)])
    if len(names) != n:
        raise ScoreFileError(f"--split-names: {len(names)} names for {n} splits")
    out = Path(out)
    results = {}
    for k, name in enumerate(names):
        sub = copy.copy(opts)
        sub.grid = False
        sub.title = f"{opts.title} ({name})".strip() if opts.title else name
        results[name] = write_fusion_tables(
            {s: paths[k] for s, paths in split_streams.items()}, sub, out / name,
            val={s: paths[k] for s, paths in split_val.items()} or None)
    summary = split_summary({name: r.table for name, r in results.items()})
    md = write_table(summary, out, "table", opts.title or f"Fusion over {n} splits",
                     f"Top-1 % of every row on each split ({', '.join(names)}; each split's "
                     "full table with CIs in its folder), then the mean, sd, min and max over "
                     "the splits: the mean is the number papers report, the sd says how much "
                     "it moves between splits.")
    write_run_json(out, split_inputs={name: _provenance({s: paths[k] for s, paths
                                                         in split_streams.items()},
                                                        with_column=False)
                                      for k, name in enumerate(names)},
                   options={**asdict(opts), "out": str(out), "split_names": names},
                   seconds=round(time.perf_counter() - start, 3))
    return SplitResult(summary, md, results)
