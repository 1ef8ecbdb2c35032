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
The work is `two_stream.fuse.write_fusion_tables`; this file only parses the flags (and
imports the library only once they ask for a table, so --help answers at once).
"""
from __future__ import annotations

import argparse
import sys

from two_stream.errors import EXIT_CODES_HELP, UserError, run_cli
from two_stream.fusion_choices import FULL_CANDIDATE_MAX, METHODS, NORMS, STACK_MODELS

__all__ = ["get_args_parser", "main", "options_from_args", "run"]


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
    p.add_argument("--stack", default="auto", choices=STACK_MODELS,
                   help="model of the `stack` rows: auto (the default) lets an inner group CV "
                        "choose between the structured model (per-stream per-class weights and "
                        f"a class bias, S*C + C parameters) and, up to S*C*C = "
                        f"{FULL_CANDIDATE_MAX:,}, the full [S*C x C] logistic regression; "
                        "structured or full fixes it")
    p.add_argument("--mmaction-mean-class", action="store_true",
                   help="add a column with MMAction2's mean class accuracy (over classes "
                        "predicted or true), to check a number against an MMAction2 log")
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


def options_from_args(args: argparse.Namespace):
    """The parsed flags as the library's `FusionOptions`."""
    from two_stream.fuse import FusionOptions
    return FusionOptions(methods=tuple(args.methods), norms=tuple(args.norm),
                         weights=args.weights, topk=args.topk, folds=args.folds,
                         resamples=args.resamples, seed=args.seed,
                         allow_missing=args.allow_missing, grid=args.grid, title=args.title,
                         class_index=args.class_index, ann_file=args.ann_file,
                         stack=args.stack, mmaction_mean_class=args.mmaction_mean_class)


def run(args: argparse.Namespace):
    """One table from --stream (and --val) flags; prints it. Returns table.csv's frame."""
    from two_stream.fuse import write_fusion_tables
    res = write_fusion_tables({(n, c): p for n, c, p in args.stream}, options_from_args(args),
                              args.out, val={(n, c): p for n, c, p in args.val} or None)
    print(res.markdown)
    print(f"written to {res.out}/ in {res.seconds:.2f} s")
    return res.table


def run_splits(args: argparse.Namespace):
    """One table per split from --split-stream (and --split-val) flags; prints the summary."""
    from two_stream.fuse import write_split_tables
    if args.stream or args.val:
        raise UserError("--split-stream replaces --stream / --val: give one or the other")
    res = write_split_tables(dict(args.split_stream), options_from_args(args), args.out,
                             split_val=dict(args.split_val) or None,
                             split_names=args.split_names)
    for name, r in res.splits.items():
        print(r.markdown)
        print(f"{name}: written to {r.out}/ in {r.seconds:.2f} s")
    print(res.markdown)
    return res.summary


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        if args.split_stream:
            run_splits(args)
        elif not args.stream:
            raise UserError("give --stream NAME=PATH (or --split-stream "
                                 "NAME=PATH1,PATH2,...) per stream")
        else:
            run(args)
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
