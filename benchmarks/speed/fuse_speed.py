"""How long the full default fusion table takes, process start included, before vs after.

    python benchmarks/speed/fuse_speed.py [--before COMMIT] [--scales ucf101 kinetics400 ssv2]

For each scale, generated score files (two_stream.synthetic_scores: `ucf101_like`, with the
statistics of real UCF101 ResNet-101 logits; `kinetics_like` for Kinetics-400 validation,
19,796 x 400, and Something-Something-v2 validation, 24,777 x 174) are fused by
`python benchmarks/fuse.py` as a user runs it, in a subprocess pinned to one core with one
BLAS thread: once with the code of --before and once with that of --after (default HEAD),
each a `git worktree` of its commit run with this venv, alternating. Records wall and CPU
seconds, peak memory (max RSS) and the load average, and writes
results/fusion_speed/table.md|csv and run.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from two_stream.fusion_choices import FULL_CANDIDATE_MAX
from two_stream.report import note_start, write_run_json, write_table
from two_stream.scores import ScoreFile, save_scores
from two_stream.synthetic_scores import kinetics_like, ucf101_like

ROOT = Path(__file__).resolve().parents[2]
SCALES = {"ucf101": (3783, 101), "kinetics400": (19796, 400), "ssv2": (24777, 174)}
GOALS = {"ucf101": "< 5 s", "kinetics400": "< 20 s, < 1 GB", "ssv2": "< 20 s"}
BEFORE = "cba3cc9"  # the code before issue 21's changes


def write_inputs(scale: str, folder: Path) -> list[str]:
    """The scale's two stream files in `folder`; returns their --stream flags."""
    n, c = SCALES[scale]
    labels, ids, streams = ucf101_like(n, c) if scale == "ucf101" else kinetics_like(n, c)
    classes = [f"class{k:03d}" for k in range(c)]
    flags = []
    for name, x in streams.items():
        path = folder / f"{scale}_{name}.npz"
        save_scores(path, ScoreFile(x, labels, ids, classes))
        flags += ["--stream", f"{name}={path}"]
    return flags


def worktree(commit: str) -> Path:
    """A checkout of `commit` beside the temporary files (made once, reused)."""
    path = Path(tempfile.gettempdir()) / f"fuse_before_{commit}"
    if not (path / "benchmarks" / "fuse.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT,
                       check=True, capture_output=True)
    return path


def timed_run(code: Path, flags: list[str], out: Path) -> dict:
    """`python benchmarks/fuse.py` of the checkout `code`, on one core: wall, CPU, max RSS."""
    env = {**os.environ, "PYTHONPATH": str(code), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    core = min(os.sched_getaffinity(0))
    with tempfile.TemporaryFile() as log:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "benchmarks/fuse.py", *flags, "--out", str(out)],
                             cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=log,
                             preexec_fn=lambda: os.sched_setaffinity(0, {core}))
        _, status, usage = os.wait4(p.pid, 0)  # this child's own CPU time and peak memory
        wall = time.perf_counter() - t
        p.returncode = status
        log.seek(0)
        err = log.read().decode(errors="replace")
    if status != 0:
        raise RuntimeError(f"{code}: fuse.py failed:\n{err[-2000:]}")
    table = pd.read_csv(out / "table.csv")
    stack = table[table.method == "stack"]
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "max_rss_mb": round(usage.ru_maxrss / 1024), "rows": len(table),
            "stack_top1": "; ".join(f"{r.norm} {r.top1:.2f}" for r in stack.itertuples()),
            "best_fixed_top1": float(table[table.method.isin(
                ["average", "max", "var", "var_topk", "product"])].top1.max())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default=BEFORE, help="commit of the previous code")
    p.add_argument("--after", default="HEAD",
                   help="commit of the new code (a worktree too: files other people are "
                        "editing in this checkout cannot change it mid-run)")
    p.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    p.add_argument("--out", default="results/fusion_speed")
    args = p.parse_args(argv)
    note_start()
    old = worktree(args.before)
    args.after = subprocess.run(["git", "rev-parse", "--short", args.after], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout.strip()
    new = worktree(args.after)
    rows, loads = [], [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for scale in args.scales:
            flags = write_inputs(scale, tmp)
            for code, name in ((old, f"before ({args.before})"), (new, f"after ({args.after})")):
                r = timed_run(code, flags, tmp / f"{scale}_{name[:5]}")
                rows.append({"scale": scale, "videos x classes x streams":
                             "{} x {} x 2".format(*SCALES[scale]), "code": name, **r,
                             "goal": GOALS[scale]})
                loads.append(os.getloadavg())
                print(rows[-1], flush=True)
            before, after = rows[-2], rows[-1]
            after["speed-up (cpu)"] = round(before["cpu_s"] / after["cpu_s"], 1)
            after["speed-up (wall)"] = round(before["wall_s"] / after["wall_s"], 1)
            md = report(rows, loads, args)  # after every scale: a long run keeps what it did
    print(md)


def report(rows: list[dict], loads: list, args: argparse.Namespace) -> str:
    """table.md|csv and run.json of the rows so far."""
    note = ("The full default table (`python benchmarks/fuse.py --stream A --stream B`: 8 "
            "methods x none/softmax, 1000 bootstrap resamples, confusion plot, run.json), "
            "process start included, one core and one BLAS thread, before and after run "
            "alternately in one session. cpu_s: user + system seconds of the process (what "
            "one idle core would take; wall_s also counts waiting for a core on a loaded "
            "machine: load averages in run.json). stack_top1: the `stack` rows (before: the "
            "full [S*C x C] model; after: the default, --stack auto, here the structured "
            f"model: the full one is a candidate only up to S*C*C = {FULL_CANDIDATE_MAX:,} "
            "weights). Inputs generated by two_stream.synthetic_scores (ucf101_like has the "
            "statistics of real UCF101 two-stream logits).")
    md = write_table(pd.DataFrame(rows), args.out, title="Fusion table speed, before vs after",
                     note=note)
    write_run_json(args.out, options=vars(args), load_average_1_5_15=loads,
                   cpu_affinity=sorted(os.sched_getaffinity(0)))
    return md


if __name__ == "__main__":
    main()
