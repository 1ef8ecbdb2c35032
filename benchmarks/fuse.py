"""Fusion tables from per-video score files: every single stream, every fusion method.

    python benchmarks/fuse.py --stream spatial=A.npz --stream temporal=B.npz --out DIR
    python benchmarks/fuse.py --grid --stream spatial@mean=A.npz --stream temporal@mean=B.npz \
        --stream spatial@max=C.npz --stream temporal@max=D.npz --out DIR
    python benchmarks/fuse.py --split-stream spatial=s1.npz,s2.npz,s3.npz \
        --split-stream temporal=t1.npz,t2.npz,t3.npz --out DIR     # three splits, and their mean

Inputs are `.npz` score files, or foreign pickles (two-stream dict with --class-index,
MMAction2 result list with --class-index and --ann-file). Writes DIR/table.md, table.csv,
run.json (inputs with sha256, options, versions) and confusion_<best>.png; with --grid also
grid.md / grid.csv (rows: fusion method, columns: consensus). With --split-stream: one such
folder per split (DIR/split1, ...) and DIR/table.md|csv, every row's top-1 per split with the
mean and spread over splits (the number papers report for UCF101 / HMDB51).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from two_stream.atomic import atomic_path
from two_stream.errors import EXIT_CODES_HELP, run_cli
from two_stream.fusion import METHODS, NORMS, Row, consensus_from_snippets, fusion_rows
from two_stream.metrics import confusion_matrix
from two_stream.report import note_start, sha256, write_run_json, write_table
from two_stream.scores import ScoreFile, ScoreFileError, align, load_any


def parse_stream(spec: str) -> tuple[str, str, str]:
    """`name[@column]=path` -> (name, column, path)."""
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"--stream {spec!r}: expected NAME=PATH")
    key, path = spec.split("=", 1)
    name, _, column = key.partition("@")
    return name, column, path


def parse_split_stream(spec: str) -> tuple[str, list[str]]:
    """`name=path1,path2,...` -> (name, [path per split])."""
    name, eq, paths = spec.partition("=")
    if not eq or not name or not paths:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME=PATH1,PATH2,...")
    return name, paths.split(",")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--stream", action="append", type=parse_stream, default=[],
                   help="NAME=PATH (or NAME@COLUMN=PATH with --grid); repeat per stream")
    p.add_argument("--split-stream", action="append", type=parse_split_stream, default=[],
                   help="NAME=PATH1,PATH2,...: a stream's test score files of several splits "
                        "(the same split order for every stream); repeat per stream")
    p.add_argument("--split-val", action="append", type=parse_split_stream, default=[],
                   help="NAME=PATH1,PATH2,...: the validation score files of those splits")
    p.add_argument("--split-names", nargs="+", help="names of the splits (default split1 ..)")
    p.add_argument("--val", action="append", type=parse_stream, default=[],
                   help="NAME=PATH (NAME@COLUMN=PATH with --grid) of a validation score file "
                        "per stream: learned methods fit on it instead of cross-validating "
                        "on the scored videos")
    p.add_argument("--class-index", help="classInd.txt or label map, for pickle inputs")
    p.add_argument("--ann-file", help="annotation list, for MMAction2 result pickles")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--norm", nargs="+", default=["none", "softmax"], choices=NORMS,
                   help="per-stream score normalisations to try (product always uses "
                        "log-softmax)")
    p.add_argument("--weights", nargs="+", type=float,
                   help="weights for 'weighted', one per stream in --stream order "
                        "(e.g. 1 1.5, the TSN recipe)")
    p.add_argument("--topk", type=int, default=5, help="k of var_topk")
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold CV of learned methods")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the CI")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-missing", action="store_true",
                   help="fuse the videos common to all streams (reports how many were dropped)")
    p.add_argument("--grid", action="store_true",
                   help="also a method x consensus grid: columns from NAME@COLUMN specs, or "
                        "mean/max/var recomputed from snippet_scores")
    p.add_argument("--out", default="results/fusion/latest", help="output folder")
    p.add_argument("--title", default="", help="title of table.md")
    return p


def load_streams(specs, args) -> dict[tuple[str, str], ScoreFile]:
    return {(name, col): load_any(path, args.class_index, args.ann_file)
            for name, col, path in specs}


def fused_table(files: dict[str, ScoreFile], args, val=None
                ) -> tuple[list[Row], int, np.ndarray]:
    """(rows, videos dropped by alignment, labels in row order)."""
    aligned, dropped = align(files, args.allow_missing)
    first = next(iter(aligned.values()))
    known = first.labels >= 0
    if not known.all():
        raise ScoreFileError(f"{int((~known).sum())} videos have no label (-1): "
                             "accuracy needs labels")
    val_arg = None
    if val:
        val_aligned, _ = align(val, args.allow_missing)
        if set(val_aligned) != set(aligned):
            raise ScoreFileError("--val needs one validation file for every --stream name")
        val_arg = ({n: v.scores for n, v in val_aligned.items()},
                   next(iter(val_aligned.values())).labels)
    rows = fusion_rows({n: sf.scores for n, sf in aligned.items()}, first.labels,
                       first.video_ids, tuple(args.methods), tuple(args.norm), args.weights,
                       args.topk,
                       args.folds, args.seed, args.resamples, val_arg)
    return rows, dropped, first.labels


def rows_frame(rows: list[Row]) -> pd.DataFrame:
    df = pd.DataFrame([r.as_dict() for r in rows])
    for c in ("top1", "top1_ci_lo", "top1_ci_hi", "top5", "mean_class_acc"):
        df[c] = (100 * df[c]).round(2)
    return df


def markdown_frame(df: pd.DataFrame) -> pd.DataFrame:
    p = df["p_vs_best_single"]
    return pd.DataFrame({
        "method": df["method"], "norm": df["norm"],
        "top-1 % (95% CI)": [f"{t:.2f} ({lo:.2f}-{hi:.2f})" for t, lo, hi in
                             zip(df.top1, df.top1_ci_lo, df.top1_ci_hi)],
        "top-5 %": df["top5"].map("{:.2f}".format),
        "mean class acc %": df["mean_class_acc"].map("{:.2f}".format),
        "p vs best single": ["" if v is None or v != v else f"{v:.3g}" for v in p],
        "tied": df["tied_videos"],
        "labels used": df["labels_used"], "detail": df["detail"]})


def plot_confusion(cm: np.ndarray, classes: list[str], title: str, path: Path) -> None:
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


def grid_frame(files: dict[tuple[str, str], ScoreFile], vals: dict[tuple[str, str], ScoreFile],
               args) -> pd.DataFrame:
    """Rows: single streams and fusion methods; columns: consensus (top-1 / top-5)."""
    columns = files_columns(files)
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
    table = {}
    for col, streams in per_column.items():
        val = {n: sf for (n, c), sf in vals.items() if c == col} if columns else None
        rows, _, _ = fused_table(streams, args, val or None)
        for r in rows:
            key = r.method if r.norm in ("-",) else f"{r.method} [{r.norm}]"
            table.setdefault(key, {})[f"{col} top-1"] = round(100 * r.top1, 2)
            table[key][f"{col} top-1 CI"] = f"{100 * r.top1_lo:.1f}-{100 * r.top1_hi:.1f}"
            table[key][f"{col} top-5"] = round(100 * r.top5, 2)
    df = pd.DataFrame.from_dict(table, orient="index")
    df.index.name = "method"
    return df.reset_index()


def files_columns(files) -> list[str]:
    seen = []
    for _, c in files:
        if c and c not in seen:
            seen.append(c)
    return seen


def run(args: argparse.Namespace) -> pd.DataFrame:
    note_start()
    start = time.perf_counter()
    out = Path(args.out)
    files = load_streams(args.stream, args)
    main_files = {n: sf for (n, c), sf in files.items()
                  if not c or c == files_columns(files)[0]}
    first_col = (files_columns(files) or [""])[0]
    vals = load_streams(args.val, args)
    val = {n: sf for (n, c), sf in vals.items() if not c or c == first_col} or None
    rows, dropped, labels = fused_table(main_files, args, val)
    df = rows_frame(rows)
    first = next(iter(main_files.values()))
    n_videos = len(rows[0].correct)
    note = (f"{n_videos} videos, {len(first.classes)} classes"
            + (f"; {dropped} videos not in every stream were dropped" if dropped else "")
            + f". CI: percentile bootstrap over videos, {args.resamples} resamples, seed "
            f"{args.seed}. p: exact McNemar test against the best single stream. "
            "Mean class acc: mean of per-class recall (what TSN reports); top-1: share of "
            "videos. `labels used` says whether and how a row used labels; "
            + ("learned rows fit on the validation score files. " if val else
               "learned rows cross-validate over whole groups (gNN / source film). ")
            + "tied: videos whose top score is shared by several classes; they count as the "
            "expected accuracy of a uniform random tie-break (top-1, top-5, mean class acc, CI) "
            "and as wrong in McNemar's test. `average`/`weighted`/`max` [softmax] compare "
            "log-probabilities, so saturated softmax (logits in the hundreds) creates no ties "
            "the log values can separate. `product` ranks like "
            "`average [none]` by construction (log-softmax shifts each video by a constant).")
    md = write_table(df, out, "table", args.title, note, display=markdown_frame(df))
    best = max(rows[len(main_files):] or rows, key=lambda r: r.top1)
    best_name = best.method if best.norm == "-" else f"{best.method}_{best.norm}"
    plot_confusion(confusion_matrix(best.pred, labels, len(first.classes)), first.classes,
                   f"{best_name}: top-1 {100 * best.top1:.2f} %",
                   out / f"confusion_{best_name}.png")
    if args.grid:
        write_table(grid_frame(files, vals, args), out, "grid", (args.title + " (grid)").strip(),
                    "Rows: fusion method [normalisation]; columns: consensus.")
    elapsed = time.perf_counter() - start
    write_run_json(out, inputs=[{"stream": n, "column": c, "path": p, "sha256": sha256(p)}
                                for n, c, p in args.stream],
                   val_inputs=[{"stream": n, "path": p, "sha256": sha256(p)}
                               for n, _, p in args.val],
                   options={k: v for k, v in vars(args).items() if k not in ("stream", "val")},
                   seconds=round(elapsed, 3))
    print(md)
    print(f"written to {out}/ in {elapsed:.2f} s")
    return df


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


def run_splits(args: argparse.Namespace) -> pd.DataFrame:
    """One fusion table per split (DIR/<split>/), then their summary in DIR/table.md."""
    note_start()
    start = time.perf_counter()
    counts = {len(paths) for _, paths in args.split_stream + args.split_val}
    if len(counts) != 1:
        raise ScoreFileError("--split-stream / --split-val: every stream needs one file per "
                             f"split, got {sorted(counts)} files")
    n = counts.pop()
    names = args.split_names or [f"split{k}" for k in range(1, n + 1)]
    if len(names) != n:
        raise ScoreFileError(f"--split-names: {len(names)} names for {n} splits")
    if args.stream or args.val:
        raise ScoreFileError("--split-stream replaces --stream / --val: give one or the other")
    out = Path(args.out)
    tables = {}
    for k, name in enumerate(names):
        sub = copy.copy(args)
        sub.stream = [(s, "", paths[k]) for s, paths in args.split_stream]
        sub.val = [(s, "", paths[k]) for s, paths in args.split_val]
        sub.out, sub.grid = str(out / name), False
        sub.title = f"{args.title} ({name})".strip() if args.title else name
        tables[name] = run(sub)
    summary = split_summary(tables)
    md = write_table(summary, out, "table", args.title or f"Fusion over {n} splits",
                     f"Top-1 % of every row on each split ({', '.join(names)}; each split's "
                     "full table with CIs in its folder), then the mean, sd, min and max over "
                     "the splits: the mean is the number papers report, the sd says how much "
                     "it moves between splits.")
    write_run_json(out, split_inputs={name: [{"stream": s, "path": paths[k],
                                              "sha256": sha256(paths[k])}
                                             for s, paths in args.split_stream]
                                      for k, name in enumerate(names)},
                   options={k: v for k, v in vars(args).items()
                            if k not in ("stream", "val", "split_stream", "split_val")},
                   seconds=round(time.perf_counter() - start, 3))
    print(md)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        if args.split_stream:
            run_splits(args)
        elif not args.stream:
            raise ScoreFileError("give --stream NAME=PATH (or --split-stream "
                                 "NAME=PATH1,PATH2,...) per stream")
        else:
            run(args)
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
