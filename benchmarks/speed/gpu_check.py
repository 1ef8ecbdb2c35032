"""The first thing to run on a GPU: every CUDA path checked, then measured, in one command.

    PYTHONPATH=. python3 -m benchmarks.speed.gpu_check [--budget-s 300] [--out DIR]
    python -m benchmarks.speed.gpu_check --device cpu --quick --out /tmp/gpu_check   (CI)

Within `--budget-s` seconds (each stage gets a share; a stage past its share is stopped and
keeps the rows it finished), after making the loader benchmarks' rawframes once (the fixture
clips, or generated ones), in order:
1. tests: `pytest -m cuda` (a skip there is a failure: the GPU paths must have run). With
   `--device cpu` the CPU tests of the same code paths instead (the GPU-decode batches and
   errors, quantisation).
2. tvl1: torch TV-L1 (`flow_tools.tvl1_torch`, default parameters) on batches of 340x256
   frame pairs on the device (85x64 with `--quick`): pairs/s, warm-up excluded, synchronised.
3. flow_speed: `benchmarks/speed/flow_speed.py --sections speed` (extraction through the
   command) where the fixture clips are present, with `--device`.
4. train_speed: ResNet-18 and ResNet-101 with what `--amp auto` picks and channels_last (the
   training default), then train_precisions: ResNet-18 in fp32 (TF32 convolutions), bf16,
   fp16, auto and auto compiled; model only and the pipeline with `--decode cpu` and `gpu`,
   peak memory per row (both into train_speed.csv).
5. eval_speed: 25 segments x 10 crops, ResNet-18 and ResNet-101, fp32 and `--amp auto`.
Writes OUT (default results/gpu/<kind>, e.g. nvidia-h200) with at most 7 files, rewritten after
every stage: table.md (what ran, what passed, the headline figures), run.json (the machine,
every stage's command, status, seconds and its own run.json), tests.txt (pytest's report) and
one CSV per measuring stage. Without CUDA (and without `--device cpu`) it says so and exits
2: no rows are made up. Runs with the machine's own python3 and torch (`PYTHONPATH=.`), no
network, no ../shared (clips are generated where the fixtures are absent).
Exit codes: 0 everything ran and passed; 1 a stage failed, timed out or a test failed or
skipped; 2 no CUDA device (or another user error).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.speed.common import speed_rawframes, sync
from two_stream.errors import EXIT_CODES_HELP, UserError, run_cli
from two_stream.report import markdown_table, write_run_json

# the CPU tests of the code paths the cuda tests check on the GPU
CPU_COUNTERPARTS = ["tests/data/test_jpeg_batch.py", "tests/flow_tools/test_quantize.py"]
# the benchmarks' arguments: (full, --quick). Training: what `--amp auto` picks (with
# channels_last) for both backbones first, then (train_precisions) the other precisions and
# the compiled row for ResNet-18 (a stage stopped at its share keeps its rows); prefetch 2
# keeps the pipeline's warm-up (workers x prefetch steps) short. --quick: the smallest sizes
# that run every code path (96 px, batch 2, 2 steps; one video of 25 x 1 views per batch).
TRAIN_ARGS = {False: ["--archs", "resnet18", "resnet101", "--rows", "auto", "--prefetch", "2",
                      "--compile", "off"],
              True: ["--archs", "resnet18", "--batch-size", "2", "--steps", "2", "--size", "96",
                     "--prefetch", "2", "--compile", "off"]}
PRECISION_ARGS = ["--archs", "resnet18", "--rows", "fp32", "bf16", "fp16", "auto", "--prefetch",
                  "2", "--compile", "on"]
EVAL_ARGS = {False: ["--archs", "resnet18", "resnet101", "--videos", "48"],
             True: ["--archs", "resnet18", "--crops", "1", "--videos", "2", "--size", "96",
                    "--batch-videos", "1"]}
# each stage's share of the budget (time a stage leaves unused passes on), in running order
SHARES = {"tests": 0.2, "tvl1": 0.05, "flow_speed": 0.1, "train_speed": 0.3,
          "train_precisions": 0.15, "eval_speed": 0.2}


def device_kind(device: torch.device) -> str:
    """'nvidia-h200' from 'NVIDIA H200', 'cpu' on a CPU: the results folder's name."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


class Stages:
    """Runs the stages against one deadline and records what each did."""

    def __init__(self, budget_s: float, out: Path, work: Path):
        self.start, self.budget, self.out, self.work = time.monotonic(), budget_s, out, work
        self.records: list[dict] = []

    def share(self, name: str) -> float:
        """Seconds for stage `name`: its share of the budget plus what earlier stages left,
        never past the deadline."""
        left = self.budget - (time.monotonic() - self.start)
        later = sum(v for k, v in SHARES.items()
                    if k not in {r["stage"] for r in self.records} and k != name)
        return max(1.0, left * SHARES[name] / (SHARES[name] + later))

    def run(self, name: str, argv: list[str], csv: str | None = None,
            append: bool = False) -> dict:
        """One stage as a subprocess (its own CUDA context and global torch settings), stopped
        at its share; its table (if any) is copied to OUT/`csv` (or appended to it), the rows
        so far included."""
        limit = self.share(name)
        stage_out = self.work / name
        cmd = [sys.executable, *argv] + (["--out", str(stage_out)] if csv else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PYTHONUNBUFFERED": "1"}
        print(f"[gpu_check] {name} (up to {limit:.0f} s): {' '.join(cmd)}", flush=True)
        t = time.monotonic()
        try:
            p = subprocess.run(cmd, env=env, timeout=limit, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            status = "ok" if p.returncode == 0 else f"failed (exit {p.returncode})"
            output = p.stdout
        except subprocess.TimeoutExpired as e:
            status = f"stopped at its {limit:.0f} s share"
            output = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout
                                                                                    or "")
        print(output[-4000:], flush=True)
        rec = {"stage": name, "status": status, "seconds": round(time.monotonic() - t, 1),
               "command": " ".join(cmd), "output_tail": output[-2000:]}
        if csv and (stage_out / "table.csv").exists():
            rows = pd.read_csv(stage_out / "table.csv")
            if append and (self.out / csv).exists():
                rows = pd.concat([pd.read_csv(self.out / csv), rows], ignore_index=True)
            rows.to_csv(self.out / csv, index=False)
            rec["rows"] = len(pd.read_csv(stage_out / "table.csv"))
            rec["csv"] = csv
        if (stage_out / "run.json").exists():
            rec["run"] = json.loads((stage_out / "run.json").read_text())
        self.records.append(rec)
        return rec

    def skip(self, name: str, why: str) -> None:
        self.records.append({"stage": name, "status": f"skipped: {why}", "seconds": 0.0})


def run_tests(stages: Stages, device: torch.device, quick: bool) -> dict:
    """pytest -m cuda on CUDA (skips count as failures), the CPU counterparts elsewhere."""
    if device.type == "cuda":
        args = ["-m", "cuda", "tests"]
    else:
        args = ["-m", "not slow and not cuda and not multigpu",
                *[t for t in CPU_COUNTERPARTS if Path(t).exists()]]
    rec = stages.run("tests", ["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args])
    tail = rec.get("output_tail", "")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|"
                                                r"deselected)", tail.splitlines()[-1]
                                                if tail.strip() else "")}
    rec["counts"] = counts
    (stages.out / "tests.txt").write_text(tail)
    if rec["status"] == "ok" and device.type == "cuda" and counts.get("skipped", 0):
        rec["status"] = f"failed ({counts['skipped']} skipped: every cuda test must run)"
    if rec["status"] == "ok" and not counts.get("passed"):
        rec["status"] = "failed (no test ran)"
    return rec


def time_tvl1(device: torch.device, *, pairs: int, batch: int, seconds: float,
              size: tuple[int, int] = (340, 256)) -> dict:
    """Torch TV-L1 pairs/s at `size` (w, h; default parameters), after one warm-up batch."""
    from flow_tools.tvl1_torch import tvl1
    g = torch.Generator().manual_seed(0)
    w, h = size
    base = torch.randint(0, 256, (batch, h + 8, w + 8), generator=g, dtype=torch.uint8)
    base = torch.nn.functional.avg_pool2d(base[:, None].float(), 5, 1)[:, 0]  # [B, h+4, w+4]
    # the second frame is the first moved by (-1, -2) px: textured, with a known motion
    prev = base[:, :h, :w].round().to(torch.uint8).to(device)
    nxt = base[:, 2:h + 2, 1:w + 1].round().to(torch.uint8).to(device)
    tvl1(prev, nxt, device=device)  # warm-up (kernels, allocator)
    sync(device)
    t, done = time.perf_counter(), 0
    while done < pairs and (done == 0 or time.perf_counter() - t < seconds):
        flow = tvl1(prev, nxt, device=device)
        done += batch
    sync(device)
    secs = time.perf_counter() - t
    mean = flow.mean(dim=(0, 1, 2)).tolist()
    return {"device": device.type, "size": f"{w}x{h}", "batch": batch, "pairs": done,
            "pairs_per_s": round(done / secs, 2), "mean_flow_x": round(mean[0], 2),
            "mean_flow_y": round(mean[1], 2)}


def headlines(out: Path) -> list[str]:
    """The figures the summary leads with, read from the stage tables."""
    lines = []
    if (out / "tvl1.csv").exists():
        r = pd.read_csv(out / "tvl1.csv").iloc[0]
        lines.append(f"- TV-L1 (torch, default parameters) at {r['size']}: **{r.pairs_per_s} "
                     f"pairs/s** ({r.device}, batches of {r.batch})")
    if (out / "train_speed.csv").exists():
        df = pd.read_csv(out / "train_speed.csv")
        plain = df[~df.precision.str.contains("compile")]
        for (arch, modality), g in plain.groupby(["arch", "modality"], sort=False):
            auto = g[g.precision.str.startswith("auto")]
            r = (auto if len(auto) else g).iloc[0]  # training's default settings (CPU: fp32)
            piped = ", ".join(f"pipeline {c.split('_')[1]} decode {r[c]:g}"
                              for c in df.columns if c.startswith("pipeline_"))
            lines.append(f"- training {arch} {modality} ({r.precision}): model only "
                         f"**{r.model_only_images_per_s:g}** img/s, {piped}")
    if (out / "eval_speed.csv").exists():
        df = pd.read_csv(out / "eval_speed.csv")
        for _, r in df.iterrows():
            rates = ", ".join(f"{c.split('_')[-1]} decode **{r[c]:g}**" for c in df.columns
                              if c.startswith("videos_per_s_"))
            lines.append(f"- evaluation {r.views} views, {r.arch} {r.modality} "
                         f"({r.precision}): {rates} videos/s")
    return lines


def write_summary(stages: Stages, device: torch.device, args) -> None:
    """OUT/table.md and OUT/run.json as they stand (rewritten after every stage)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = pd.DataFrame([{"stage": r["stage"], "status": r["status"], "seconds": r["seconds"],
                           "rows": r.get("rows", ""),
                           "tests": ", ".join(f"{n} {k}" for k, n in r.get("counts", {}).items())}
                          for r in stages.records])
    md = (f"# GPU check ({name})\n\n" + markdown_table(table) + "\n\n"
          + "\n".join(headlines(stages.out) or ["- no figures yet"])
          + f"\n\nBudget {args.budget_s:.0f} s, used {time.monotonic() - stages.start:.0f} s"
          f"{' (--quick)' if args.quick else ''}; tables beside this file (one CSV per "
          "stage), commands and each stage's run.json in run.json.\n")
    (stages.out / "table.md").write_text(md)
    write_run_json(stages.out, options=vars(args), device_name=name, stages=stages.records,
                   load_average=os.getloadavg())


def run(args: argparse.Namespace) -> int:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("no CUDA device here: gpu_check measures a GPU and makes up no rows; "
                        "run it on a GPU machine, or with --device cpu --quick to check the "
                        "script itself")
    device = torch.device(args.device)
    out = Path(args.out or f"results/gpu/{device_kind(device)}")
    out.mkdir(parents=True, exist_ok=True)
    workers = str(args.workers)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        stages = Stages(args.budget_s, out, Path(tmp))
        common = ["--device", args.device, "--fixtures", args.fixtures, "--work", args.work]
        t = time.monotonic()  # the loader benchmarks' rawframes, made once, outside the shares
        _, _, what = speed_rawframes(args.fixtures, args.work)
        stages.records.append({"stage": "data", "status": f"ok ({what})",
                               "seconds": round(time.monotonic() - t, 1)})
        stage_list = list(SHARES)
        for stage in stage_list:
            if stage == "tests":
                run_tests(stages, device, args.quick)
            elif stage == "tvl1":
                t = time.monotonic()
                try:
                    # --quick: 1/16 of the pixels (a CPU takes minutes per 340x256 pair)
                    row = time_tvl1(device, pairs=1 if args.quick else 256,
                                    batch=1 if args.quick else 16,
                                    seconds=stages.share("tvl1") / 2,
                                    size=(85, 64) if args.quick else (340, 256))
                    pd.DataFrame([row]).to_csv(out / "tvl1.csv", index=False)
                    status = "ok"
                except (RuntimeError, UserError) as e:  # a broken kernel is a result here
                    status = f"failed ({str(e).splitlines()[0][:200]})"
                stages.records.append({"stage": "tvl1", "status": status, "rows": 1,
                                       "seconds": round(time.monotonic() - t, 1),
                                       "csv": "tvl1.csv"})
            elif stage == "flow_speed":
                if args.quick:
                    stages.skip("flow_speed", "--quick (the tvl1 stage times the torch path)")
                elif not (Path(args.fixtures) / "videos").is_dir():
                    stages.skip("flow_speed", f"no fixture clips at {args.fixtures}")
                else:
                    stages.run("flow_speed", ["-m", "benchmarks.speed.flow_speed",
                                              "--sections", "speed", "--device", args.device,
                                              "--fixtures", args.fixtures], csv="flow_speed.csv")
            elif stage == "train_speed":
                stages.run("train_speed", ["-m", "benchmarks.speed.train_speed", *common,
                                           *TRAIN_ARGS[bool(args.quick)], "--workers", workers],
                           csv="train_speed.csv")
            elif stage == "train_precisions":
                if args.quick:
                    stages.skip(stage, "--quick (train_speed ran the same code)")
                else:
                    stages.run(stage, ["-m", "benchmarks.speed.train_speed", *common,
                                       *PRECISION_ARGS, "--workers", workers],
                               csv="train_speed.csv", append=True)
            else:
                stages.run("eval_speed", ["-m", "benchmarks.speed.eval_speed", *common,
                                          *EVAL_ARGS[bool(args.quick)], "--workers", workers],
                           csv="eval_speed.csv")
            write_summary(stages, device, args)
    print((out / "table.md").read_text())
    failed = [r["stage"] for r in stages.records if not r["status"].startswith(("ok",
                                                                                 "skipped"))]
    if failed:
        print(f"[gpu_check] not passed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP)
    p.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu")
    p.add_argument("--budget-s", type=float, default=300.0,
                   help="seconds for everything (a lent machine gives 10 minutes a command)")
    p.add_argument("--quick", action="store_true",
                   help="the benchmarks' --quick sizes (CI: --device cpu --quick, < 3 min)")
    p.add_argument("--out", default=None, help="results folder (default results/gpu/<kind>)")
    p.add_argument("--fixtures", default="../shared/fixtures",
                   help="real clips, where present; else clips are generated")
    p.add_argument("--work", default="data/gpu_check_rawframes",
                   help="rawframes for the loader benchmarks, made here once")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: run(get_args_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
