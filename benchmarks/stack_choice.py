"""How `--stack auto` chooses between the structured and the full stacking model on a set of
validation scores, and what each model then gives on the test scores.

    python -m benchmarks.stack_choice                      # the demo's runs (make demo)
    python -m benchmarks.stack_choice --runs DIR --out results/stack_choice/NAME

For each consensus, the spatial and temporal runs' scores_val.npz / scores_test.npz under
DIR/<stream>_<consensus>/. Each row is one inner group CV on the validation videos (folds and
seed): the summed held-out cross-entropy of the structured model at its chosen L2 and of the
full model at its best, the model the comparison picks, and the test top-1 of each model
fitted on all validation videos. The first row per consensus is the table's own choice
(3 folds, seed 0: `stacking.stack_on_validation`); the others show how much that choice moves
with the folds. `full (before)` is `--stack full`, the model before the structured default,
and `p pick vs before` the exact McNemar p of the pick against it on the test videos. The
test labels only score; nothing is chosen on them.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from two_stream import stacking
from two_stream.data.splits import group_of
from two_stream.errors import UserError, run_cli
from two_stream.fusion import learn, normalize
from two_stream.metrics import mcnemar_p, strict_correct, topk_accuracy
from two_stream.report import note_start, sha256, write_run_json, write_table
from two_stream.scores import align, load_scores
from two_stream.stack_full import fit_full

STREAMS = ("spatial", "temporal")
CONSENSUS = ("mean", "max", "var", "lstm")
INNER = ((3, 0), (3, 1), (3, 2), (5, 0), (0, 0))  # (folds, seed); 0 folds: one per group


@dataclass
class Scores:
    """Validation and test scores of the streams, aligned: stacks [S, N, C]."""

    val: np.ndarray
    val_labels: np.ndarray
    val_groups: list[str]
    test: np.ndarray
    test_labels: np.ndarray


def score_path(runs: Path, stream: str, consensus: str, split: str) -> Path:
    return runs / f"{stream}_{consensus}" / f"scores_{split}.npz"


def load_runs(runs: Path, consensus: str) -> Scores:
    """The streams' score files of one consensus under `runs`."""
    parts = {}
    for split in ("val", "test"):
        paths = {s: score_path(runs, s, consensus, split) for s in STREAMS}
        for p in paths.values():
            if not p.is_file():
                raise UserError(f"{p}: no score file (train the runs first: make demo)")
        files, _ = align({s: load_scores(p) for s, p in paths.items()})
        parts[split] = (np.stack([files[s].scores.astype(np.float64) for s in STREAMS]),
                        files[STREAMS[0]].labels, files[STREAMS[0]].video_ids)
    (v, vl, vid), (t, tl, _) = parts["val"], parts["test"]
    return Scores(v, vl, [group_of(x) for x in vid], t, tl)


def inner_choice(sc: Scores, k: int, seed: int) -> tuple[dict, np.ndarray]:
    """One inner group CV on the validation videos, as `stack_on_validation` runs it: (each
    model's summed held-out cross-entropy, the pick, each model's test top-1; which test
    videos the pick gets right)."""
    x, scale = stacking._features(sc.val)
    groups = len(set(sc.val_groups))
    inner = stacking.inner_folds(sc.val_labels, sc.val_groups, k or groups, seed)
    l2, warm, loss = stacking.choose_l2(x, sc.val_labels, inner, scale)
    full_loss = stacking.full_inner_loss(x, sc.val_labels, inner)
    full_l2 = stacking._best(full_loss)
    pick = "full" if stacking._full_wins(full_loss, loss[l2]) is not None else "structured"
    structured = stacking.fit(x, sc.val_labels, l2, scale, warm[l2].theta)
    xt, _ = stacking._features(sc.test, scale)
    test = {"structured": stacking.predict(structured, sc.test),
            "full": fit_full(x, sc.val_labels, full_l2)(xt)}
    top1 = {m: topk_accuracy(v, sc.test_labels) for m, v in test.items()}
    return {"inner folds": f"{len(np.unique(inner))}" + (" (one per group)" if not k else ""),
            "seed": seed, "structured L2": l2, "structured CE": loss[l2],
            "full L2": full_l2, "full CE": full_loss[full_l2], "pick": pick,
            "test structured": 100 * top1["structured"], "test full": 100 * top1["full"],
            "test pick": 100 * top1[pick]}, strict_correct(test[pick], sc.test_labels)


def before(sc: Scores) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(test top-1 of each stream, which training run this is, and of `--stack full` fitted
    on the validation videos per norm; which test videos the latter gets right per norm)."""
    out = {f"test {s}": 100 * topk_accuracy(x, sc.test_labels) for s, x in zip(STREAMS, sc.test)}
    right = {}
    for norm in ("none", "softmax"):
        val = np.stack([normalize(s, norm) for s in sc.val])
        test = np.stack([normalize(s, norm) for s in sc.test])
        res = learn("stack", test, sc.test_labels, [str(i) for i in range(len(sc.test_labels))],
                    val_stack=val, val_labels=sc.val_labels, val_groups=sc.val_groups,
                    stack_model="full")
        out[f"full (before) [{norm}]"] = 100 * topk_accuracy(res.scores, sc.test_labels)
        right[norm] = strict_correct(res.scores, sc.test_labels)
    return out, right


def choice_table(scores: dict[str, Scores], inner: tuple[tuple[int, int], ...] = INNER
                 ) -> pd.DataFrame:
    """Rows per consensus of `scores` ({consensus: its runs' scores}) and inner CV."""
    rows = []
    for cons, sc in scores.items():
        old, old_right = before(sc)
        for k, seed in inner:
            row, right = inner_choice(sc, k, seed)
            rows.append({"consensus": cons, **row, **old,
                         **{f"p pick vs before [{n}]": mcnemar_p(right, r)
                            for n, r in old_right.items()}})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=Path, default=Path("data/demo/runs/split1"),
                   help="folder of <stream>_<consensus> runs (default: the demo's)")
    p.add_argument("--consensus", nargs="+", default=list(CONSENSUS), choices=CONSENSUS)
    p.add_argument("--out", type=Path, default=Path("results/stack_choice/demo"))
    args = p.parse_args(argv)

    def body() -> None:
        note_start()
        scores = {c: load_runs(args.runs, c) for c in args.consensus}
        df = choice_table(scores)
        first = scores[args.consensus[0]]
        note = (f"{len(first.val_labels)} validation videos, {len(first.test_labels)} test "
                "videos. CE: summed held-out cross-entropy over the inner folds (lower is "
                "better; `pick` is the lower). The first row per consensus is the choice the "
                "fusion table makes (3 folds, seed 0); `test *`: top-1 % on the test videos of "
                "each model fitted on all validation videos at its chosen L2. `full (before)`: "
                "`--stack full`, the model before the structured default, on the same "
                "validation scores; `p pick vs before`: exact McNemar test of the pick against it "
                "on the test videos.")
        shown = df.assign(**{c: df[c].map("{:g}".format) for c in ("structured L2", "full L2")})
        md = write_table(df, args.out, title="Stacking model choice on the validation videos",
                         note=note, display=shown)
        paths = [score_path(args.runs, s, c, split) for c in args.consensus
                 for s in STREAMS for split in ("val", "test")]
        inputs = {str(p.relative_to(args.runs)): sha256(p) for p in paths}
        write_run_json(args.out, runs=str(args.runs), consensus=args.consensus,
                       inner=[list(x) for x in INNER], inputs_sha256=inputs)
        print(md)
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
