"""`benchmarks/fuse.py` beside MMAction2's own `report_accuracy.py` on the same real scores.

Two real pairs of score files (`SETS`: a ResNet-18 two-stream model's logits on 15 UCF101
classes, and MMAction2's own Kinetics-400 fusion demo) are converted to our `.npz`
(`python -m two_stream.scores convert`), then by the peer worker to MMAction2 1.x's
test-dump format (what `tools/test.py --dump` writes: a list of `ActionDataSample.to_dict()`),
and MMAction2's `mmaction/.mim/tools/analysis_tools/report_accuracy.py` runs on those dumps as
shipped.

The two must agree on top-1 and top-5 wherever the answer does not depend on how a tie is
broken: MMAction2 ranks with argsort (a tie goes to whichever class argsort puts last), we
count a tie as the expected accuracy of a random tie-break. So each row is compared on the
videos where MMAction2's own fused score (its loading, softmax and `get_weighted_score`, run
in the worker) has no tie at the top or across the top-5 cut; the same rows on all videos
are shown with their tie counts. MMAction2's mean class accuracy is the mean, over every
class that is a label *or a prediction*, of recall (a predicted class with no video counts
as 0): compared with our `--mmaction-mean-class` column where fuse.py has it.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from two_stream.errors import UserError
from two_stream.report import sha256, write_table
from two_stream.scores import load_scores, save_scores


@dataclass(frozen=True)
class ScoreSet:
    """A pair of real score files under ../shared/fixtures/scores/<name>/."""

    name: str
    pickles: dict[str, str]  # stream -> file, in fusion order
    class_index: str
    ann_file: str | None  # for MMAction2's own result lists (joined by position)
    softmax_rows: bool  # raw logits: also the --apply-softmax rows
    what: str


SETS = (
    ScoreSet("ucf15_resnet18", {"spatial": "spatial_video_preds.pickle",
                                "motion": "motion_video_preds.pickle"}, "classInd15.txt",
             None, True, "ResNet-18 two-stream logits, 15 UCF101 classes"),
    ScoreSet("mmaction2_k400_demo", {"rgb": "rgb.pkl", "flow": "flow.pkl"},
             "label_map_k400.txt", "data_list.txt", False,
             "MMAction2's own fusion demo: Kinetics-400 probabilities, 100 videos (most of "
             "the 400 classes have no video, so the mean-class definitions differ)"),
)


def rows_for(ss: ScoreSet) -> list[tuple]:
    """(row, streams, MMAction2 coefficients, --apply-softmax, our method, our norm)."""
    a, b = ss.pickles
    rows = [(a, (a,), (1.0,), False, a, "-"), (b, (b,), (1.0,), False, b, "-"),
            ("average", (a, b), (1.0, 1.0), False, "average", "none"),
            ("weighted 1:1.5", (a, b), (1.0, 1.5), False, "weighted", "none")]
    if ss.softmax_rows:
        rows += [("average, softmax", (a, b), (1.0, 1.0), True, "average", "softmax"),
                 ("weighted 1:1.5, softmax", (a, b), (1.0, 1.5), True, "weighted", "softmax")]
    return rows


_REPORT = re.compile(r"^(Mean Class Accuracy|Top 1 Accuracy|Top 5 Accuracy): ([0-9.]+)$", re.M)
MMACTION_FLAG = "--mmaction-mean-class"


def parse_report(text: str) -> dict[str, float]:
    """report_accuracy.py's printout -> {"mean_class_acc", "top1", "top5"} as fractions."""
    names = {"Mean Class Accuracy": "mean_class_acc", "Top 1 Accuracy": "top1",
             "Top 5 Accuracy": "top5"}
    got = {names[k]: float(v) for k, v in _REPORT.findall(text)}
    if set(got) != set(names.values()):
        raise RuntimeError(f"report_accuracy.py printed no accuracies:\n{text}")
    return got


def agree(theirs: float, ours: float) -> bool:
    """Equal at the printed precision: theirs a fraction to 4 decimals, ours a percentage to
    2 (one video of 550 is 0.18 %, so this cannot hide a disagreement)."""
    return abs(100 * theirs - ours) <= 0.01 + 1e-9


def report_accuracy_script(python: Path) -> Path:
    """The report_accuracy.py inside the peer environment's mmaction wheel."""
    found = sorted(python.parent.parent.glob(
        "lib/python*/site-packages/mmaction/.mim/tools/analysis_tools/report_accuracy.py"))
    if not found:
        raise UserError(f"{python.parent.parent}: mmaction's report_accuracy.py not found in "
                        "the peer environment; delete it to rebuild")
    return found[0]


def run_report(python: Path, dumps: list[Path], coefficients, softmax: bool,
               shown_names: list[str]) -> tuple[dict, str]:
    """report_accuracy.py's accuracies and the command as the table shows it."""
    cmd = [str(python), str(report_accuracy_script(python)), "--preds", *map(str, dumps),
           "--coefficients", *map(str, coefficients)] + (["--apply-softmax"] if softmax else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"report_accuracy.py failed:\n{res.stderr[-3000:]}")
    shown = " ".join(["report_accuracy.py", "--preds", *shown_names,
                      "--coefficients", *map(str, coefficients)]
                     + (["--apply-softmax"] if softmax else []))
    return parse_report(res.stdout), shown


def fuse_has_mmaction_flag() -> bool:
    res = subprocess.run([sys.executable, "benchmarks/fuse.py", "--help"], capture_output=True,
                         text=True, timeout=120)
    return MMACTION_FLAG in res.stdout


def run_fuse(npz: dict[str, Path], out: Path, mmaction_flag: bool) -> pd.DataFrame:
    """benchmarks/fuse.py on the two streams; its table.csv."""
    cmd = [sys.executable, "benchmarks/fuse.py", *(a for n, p in npz.items()
                                                   for a in ("--stream", f"{n}={p}")),
           "--methods", "average", "weighted", "--norm", "none", "softmax",
           "--weights", "1", "1.5", "--resamples", "200", "--out", str(out)]
    if mmaction_flag:
        cmd.append(MMACTION_FLAG)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"benchmarks/fuse.py failed:\n{res.stderr[-3000:]}")
    return pd.read_csv(out / "table.csv")


def mmaction_mean_class_column(df: pd.DataFrame) -> str | None:
    """The column fuse.py writes for MMAction2's mean class accuracy, when it writes one."""
    cols = [c for c in df.columns if "mmaction" in c.lower()]
    return cols[0] if cols else None


def compare_set(worker, python: Path, ss: ScoreSet, src: Path, tmp: Path, flag: bool
                ) -> list[dict]:
    """The rows of one score set: every fixed-weight row on all videos, and again on the
    videos without ties when MMAction2's fused score has some."""
    scores = {}
    for name, pickle in ss.pickles.items():
        npz = tmp / f"{ss.name}_{name}.npz"
        cmd = [sys.executable, "-m", "two_stream.scores", "convert", str(src / pickle),
               "--class-index", str(src / ss.class_index), str(npz)]
        if ss.ann_file:
            cmd[-1:-1] = ["--ann-file", str(src / ss.ann_file)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        scores[name] = load_scores(npz)
    fuse_cache: dict[str, pd.DataFrame] = {}

    def files_for(keep: np.ndarray) -> tuple[dict[str, Path], dict[str, Path], str]:
        """Our npz and MMAction2 dumps of the videos at `keep` (cached by the set)."""
        key = hashlib.sha1(keep.tobytes()).hexdigest()[:12]
        npz, dumps = {}, {}
        for n, sf in scores.items():
            npz[n] = tmp / f"{ss.name}_{n}_{key}.npz"
            dumps[n] = tmp / f"{ss.name}_{n}_{key}.pkl"
            if not dumps[n].exists():
                save_scores(npz[n], sf.subset(keep))
                worker.call("dump", npz=str(npz[n]), out=str(dumps[n]), batch=8)
        return npz, dumps, key

    everything = np.arange(len(next(iter(scores.values()))))
    _, full_dumps, _ = files_for(everything)
    rows = []
    for label, streams, coefs, softmax, method, norm in rows_for(ss):
        ties = worker.call("fused", dumps=[str(full_dumps[s]) for s in streams],
                           coefficients=list(coefs), softmax=softmax)
        tied = sorted(set(ties["tied_top1"]) | set(ties["tied_top5"]))
        subsets = [("all", everything)] + ([("no ties", np.setdiff1d(everything, tied))]
                                           if tied else [])
        for subset, keep in subsets:
            npz, dumps, key = files_for(keep)
            theirs, shown = run_report(python, [dumps[s] for s in streams], coefs, softmax,
                                       shown_names=[f"{s}.pkl" for s in streams])
            if key not in fuse_cache:
                fuse_cache[key] = run_fuse(npz, tmp / f"fuse_{ss.name}_{key}", flag)
            table = fuse_cache[key]
            ours = table[(table["method"] == method) & (table["norm"] == norm)].iloc[0]
            mm_col = mmaction_mean_class_column(table)
            row = {"scores": ss.name, "row": label, "videos": subset, "n": len(keep),
                   "mmaction2 ties top-1 / top-5": (f"{len(ties['tied_top1'])} / "
                                                    f"{len(ties['tied_top5'])}"
                                                    if subset == "all" else "0 / 0"),
                   "ours tied_videos": int(ours["tied_videos"]),
                   "top-1 mmaction2": round(100 * theirs["top1"], 2),
                   "top-1 ours": float(ours["top1"]),
                   "top-5 mmaction2": round(100 * theirs["top5"], 2),
                   "top-5 ours": float(ours["top5"]),
                   "mean class mmaction2": round(100 * theirs["mean_class_acc"], 2),
                   "mean class ours (TSN)": float(ours["mean_class_acc"]),
                   "mean class ours (--mmaction-mean-class)": (float(ours[mm_col]) if mm_col
                                                               else float("nan"))}
            mean_class = row["mean class ours (--mmaction-mean-class)"] if mm_col else \
                row["mean class ours (TSN)"]
            row["top-1/5 equal"] = (agree(theirs["top1"], row["top-1 ours"])
                                    and agree(theirs["top5"], row["top-5 ours"]))
            # against our TSN column only as a fact: the definitions differ by design
            row["mean class equal"] = agree(theirs["mean_class_acc"], mean_class)
            row["compared"] = subset == "no ties" or not tied
            row["mmaction2 command"] = shown
            rows.append(row)
    return rows


def fusion_comparison(worker, python: Path, fixtures: Path, tmp: Path, out: Path
                      ) -> tuple[pd.DataFrame, bool, dict]:
    """fusion.md / fusion.csv; (table, every tie-free row equal, run.json facts)."""
    flag = fuse_has_mmaction_flag()
    rows = []
    for ss in SETS:
        rows += compare_set(worker, python, ss, fixtures / "scores" / ss.name, tmp, flag)
    df = pd.DataFrame(rows)
    checked = df[df["compared"]]
    all_equal = bool(checked["top-1/5 equal"].all()
                     and (not flag or checked["mean class equal"].all()))
    note = ("Real scores from ../shared/fixtures/scores/ (see its README): "
            + "; ".join(f"`{ss.name}`: {ss.what}" for ss in SETS)
            + ". Each converted with `python -m two_stream.scores convert`, then written as "
            "MMAction2 1.x test dumps (`ActionDataSample.to_dict()` lists, `mmengine.dump`) by "
            "the peer worker. mmaction2: its own tools/analysis_tools/report_accuracy.py from "
            "the 1.2.0 wheel, as shipped (command in the last column; the dumps hold the "
            "scores as they are, so `--apply-softmax` on logits matches our `softmax` norm). "
            "ours: benchmarks/fuse.py on the same videos (--methods average weighted --norm "
            "none softmax --weights 1 1.5" + (f" {MMACTION_FLAG}" if flag else "") + "). "
            "`no ties`: the videos where MMAction2's own fused score has no tie at the top or "
            "across the top-5 cut (there its argsort, not the scores, decides); `all`: every "
            "video, a tie counting as argsort leaves it for MMAction2 and as a random "
            "tie-break's expected accuracy for us. `top-1/5 equal`: both agree to 0.01 %; "
            "`mean class equal`: MMAction2's mean class accuracy agrees to 0.01 % with "
            + ("our `--mmaction-mean-class` column (MMAction2's definition: the mean recall "
               "over every class that is a label or a prediction, a predicted class without "
               "videos counting as 0)" if flag else
               "our TSN column: fuse.py has no --mmaction-mean-class flag yet (ours averages "
               "recall over the classes that have videos; the two agree only when no class "
               "without videos is predicted)")
            + "; `compared`: the row that must agree (the tie-free one).")
    print(write_table(df, out, "fusion", "Fusion: benchmarks/fuse.py vs MMAction2's "
                      "report_accuracy.py (same scores)", note))
    info = {"inputs": {ss.name: {n: {"path": str(fixtures / "scores" / ss.name / p),
                                     "sha256": sha256(fixtures / "scores" / ss.name / p)}
                                 for n, p in ss.pickles.items()} for ss in SETS},
            "fuse_mmaction_mean_class_flag": flag, "all_tie_free_rows_equal": all_equal}
    return df, all_equal, info


def write_fixture(worker, out_dir: Path) -> dict:
    """tests/data_files/mmaction2_1x_dump.pkl (+ .json expected values, + its annotation list
    and class list): a small MMAction2 1.x `--dump` file written by mmengine.dump in the peer
    environment, 5 videos x 4 classes in batches of 2 (so scores are views into a batch's
    storage at offsets, as the test loop dumps them), softmax scores as TSN's
    `average_clips='prob'` gives them."""
    rng = np.random.default_rng(22)
    labels = np.array([0, 1, 2, 3, 1], np.int64)
    logits = rng.normal(0, 1, size=(5, 4))
    logits[np.arange(3), labels[:3]] += 3.0  # 3 of 5 right, so an accuracy check can fail
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / "mmaction2_1x_dump_input.npz"
    np.savez(src, scores=probs, labels=labels)
    pkl = out_dir / "mmaction2_1x_dump.pkl"
    res = worker.call("dump", npz=str(src.resolve()), out=str(pkl.resolve()), batch=2)
    src.unlink()
    classes = ["ApplyEyeMakeup", "Archery", "Basketball", "Biking"]
    ids = [f"{classes[y]}/v_{classes[y]}_g0{i + 1}_c01" for i, y in enumerate(labels)]
    (out_dir / "mmaction2_1x_dump_list.txt").write_text(
        "".join(f"{v} 120 {y}\n" for v, y in zip(ids, labels)))
    (out_dir / "mmaction2_1x_dump_classes.txt").write_text("\n".join(classes) + "\n")
    expected = {"keys": res["keys"], "img_shape": [224, 224], "num_classes": len(classes),
                # rows of a batch's [2, 4] tensor: each pickles that batch's whole storage
                "pred_score_storage_offset": [4 * (i % 2) for i in range(len(labels))],
                "pred_score": [[float(v) for v in row] for row in probs],
                "pred_score_dtype": "float32", "gt_label": labels.tolist(),
                "gt_label_dtype": "int64", "gt_label_shape": [1],
                "pred_label": probs.argmax(axis=1).tolist(),
                "video_ids": ids, "classes": classes,
                "written_by": worker.call("versions"),
                "command": "python -m benchmarks.speed.peer_loader --write-fixture "
                           "tests/data_files"}
    (out_dir / "mmaction2_1x_dump.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected
