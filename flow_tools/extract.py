"""Extract RGB frames and quantised optical flow from videos into the rawframe layout.

    python -m flow_tools.extract VIDEOS OUT [--list split.txt] [--algorithm tvl1|dis|farneback]
        [--backend opencv|torch --device cpu|cuda[:N] --batch-pairs N|auto
         --memory-budget-gb 4 --flow-compile auto|on|off]
        [--bound 20] [--new-short 256 | --new-size 340 256] [--step 1] [--workers N]
        [--shard I/N | --array N --executor inprocess|local|slurm [--partition P
         --gpus-per-job G --time MIN --mem GB --account A --slurm-extra OPT --no-wait
         --dry-run]] [--rgb-only | --flow-only] [--jpeg-quality 95] [--overwrite]

Output per video (`video_id` = path under VIDEOS without extension, class folder kept):
`OUT/<video_id>/img_%05d.jpg`, `flow_x_%05d.jpg`, `flow_y_%05d.jpg` (the denseflow / MMAction2
layout and encoding) and `meta.json`, written last. A video is built in a temporary folder and
renamed into place, so a kill leaves either nothing or a complete video; a rerun skips complete
videos whose parameters match and finishes the rest. Videos that cannot be read go to
`OUT/failures.csv` (`OUT/failures.shard-I-of-N.csv` with --shard) and the run goes on; the exit
code is 1 when any failed. Shards of one list may run at the same time into one folder: a run
only removes temporary folders whose owner process is gone, and each shard keeps its own
failures file. `--backend torch` computes TV-L1 in batches of frame pairs from several videos
on `--device` (flow_tools.batched). `--array N --executor local|slurm` runs the N shards as
one job array through submitit (flow_tools.shards), its logs under `OUT/.submitit/`; rerun the
same command to submit only the shards with videos left.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from .device import resolve_device
from .errors import EXIT_CODES_HELP, EXIT_OK, EXIT_SOME_FAILED, UserError, run_cli
from .executors import ArrayTaskError, add_executor_args, options_from_args
from .extraction import (
    extract_all,
    failures_path,
)
from .flow import DIS_PRESETS
from .params import (
    ALGORITHMS,
    BACKENDS,
    DEFAULT_MEMORY_BUDGET_GB,
    FLOW_COMPILE_MODES,
    ExtractConfig,
    FlowParams,
    TVL1Params,
)
from .shards import SUBMITIT_DIR, ShardSettings, run_array
from .videos import list_videos, shard


def _batch_pairs(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def get_args_parser() -> argparse.ArgumentParser:
    d, t = ExtractConfig(), TVL1Params()
    p = argparse.ArgumentParser(prog="python -m flow_tools.extract",
                                description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("videos", help="folder of videos (searched recursively; class sub-folders "
                                  "are kept in the video id)")
    p.add_argument("out", help="output rawframe folder")
    p.add_argument("--list", help="only the videos in this list file (paths relative to "
                                  "VIDEOS, first column), e.g. a split list")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="tvl1")
    p.add_argument("--backend", choices=BACKENDS, default="opencv",
                   help="opencv: one pair at a time per worker process; torch: TV-L1 in "
                        "PyTorch, pairs of several videos batched on --device")
    p.add_argument("--device", default="cpu", help="torch backend: cpu, cuda or cuda:N")
    p.add_argument("--batch-pairs", type=_batch_pairs, default=16,
                   help="torch backend: frame pairs per batch on the device, or auto: as many "
                        "as fit in free device memory (CUDA), or in --memory-budget-gb (CPU); "
                        "out of memory halves the batch and retries")
    p.add_argument("--memory-budget-gb", type=float, default=DEFAULT_MEMORY_BUDGET_GB,
                   help="torch backend on a CPU: memory --batch-pairs auto may fill")
    p.add_argument("--flow-compile", choices=FLOW_COMPILE_MODES, default="auto",
                   help="torch backend: compile the TV-L1 iterations (auto: yes, on any "
                        "device; falls back to eager with one line when no compiler works)")
    p.add_argument("--dis-preset", choices=sorted(DIS_PRESETS), default="medium")
    p.add_argument("--tvl1-nscales", type=int, default=t.nscales)
    p.add_argument("--tvl1-warps", type=int, default=t.warps)
    p.add_argument("--tvl1-inner-iterations", type=int, default=t.inner_iterations)
    p.add_argument("--tvl1-outer-iterations", type=int, default=t.outer_iterations)
    p.add_argument("--tvl1-epsilon", type=float, default=t.epsilon)
    p.add_argument("--bound", type=float, default=d.bound, help="flow clipped to +-bound px")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--new-short", type=int, default=0, help="resize the short side (0: keep)")
    g.add_argument("--new-size", type=int, nargs=2, metavar=("W", "H"),
                   help="resize to W x H (e.g. 340 256)")
    p.add_argument("--step", type=int, default=1, help="flow between frame i and i+step")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--rgb-only", action="store_true")
    m.add_argument("--flow-only", action="store_true")
    p.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    p.add_argument("--workers", type=int, default=1,
                   help="parallel processes (torch backend: decoding threads)")
    p.add_argument("--shard", help="I/N: process only shard I (0-based) of N")
    p.add_argument("--array", type=int, metavar="N",
                   help="split the list into N shards and run each as one task of a job "
                        "array (--executor); a rerun submits only shards with videos left")
    p.add_argument("--overwrite", action="store_true",
                   help="re-extract videos done with other parameters")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_executor_args(p)
    return p


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    tvl1 = replace(TVL1Params(), nscales=args.tvl1_nscales, warps=args.tvl1_warps,
                   inner_iterations=args.tvl1_inner_iterations,
                   outer_iterations=args.tvl1_outer_iterations, epsilon=args.tvl1_epsilon)
    return ExtractConfig(flow=FlowParams(args.algorithm, tvl1, args.dis_preset,
                                         backend=args.backend),
                         bound=args.bound, new_short=args.new_short,
                         new_size=tuple(args.new_size) if args.new_size else None,
                         step=args.step, rgb=not args.flow_only,
                         flow_images=not args.rgb_only, jpeg_quality=args.jpeg_quality)


def _array(args: argparse.Namespace, cfg: ExtractConfig, rels: list[str]) -> int:
    """`--executor local|slurm --array N`: one task per unfinished shard (flow_tools.shards)."""
    if args.shard:
        raise UserError("--shard I/N runs one shard here; with --array N every shard is a task "
                        "of the array: give one of the two")
    if args.array is None:
        raise UserError(f"--executor {args.executor} needs --array N (the number of shards)")
    out = Path(args.out)
    options = options_from_args(args, out / SUBMITIT_DIR, job_name="extract",
                                cpus_per_job=args.workers)
    settings = ShardSettings(workers=args.workers, overwrite=args.overwrite,
                             device=args.device, batch_pairs=args.batch_pairs,
                             memory_budget_gb=args.memory_budget_gb,
                             flow_compile=args.flow_compile)
    try:
        run = run_array(Path(args.videos), out, cfg, rels, count=args.array,
                        settings=settings, options=options, dry_run=args.dry_run)
    except ArrayTaskError as e:  # a task killed (time, memory, node) or crashed: say which
        print(f"{e}\nthe other shards finished; rerun the same command to resubmit the shards "
              "with videos left", file=sys.stderr)
        return EXIT_SOME_FAILED
    done = f"{args.array - len(run.submitted)} of {args.array} shards complete"
    if run.script is not None:
        print(f"# {done}; would submit shards {run.submitted}\n{run.script}")
        return EXIT_OK
    if not run.submitted:
        print(f"{done}: nothing to submit")
        return EXIT_OK
    if run.summary is None:
        print(f"{done}; submitted {len(run.submitted)} {args.executor} task(s) "
              f"{run.job_ids[0]}..{run.job_ids[-1]} (logs under {options.folder}); rerun the "
              "same command to submit only what is left")
        return EXIT_OK
    print(f"{len(run.submitted)} shard task(s) ran: {run.summary.line()}")
    for path in run.failure_files:
        print(f"failures listed in {path}", file=sys.stderr)
    return EXIT_SOME_FAILED if run.summary.failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def body() -> int:
        cfg = config_from_args(args)
        rels = list_videos(Path(args.videos), Path(args.list) if args.list else None)
        if args.backend == "torch":
            resolve_device(args.device)  # a clear error before any work
        if args.array is not None or args.executor != "inprocess":
            return _array(args, cfg, rels)
        summary = extract_all(args.videos, args.out, cfg, shard(rels, args.shard),
                              workers=args.workers, overwrite=args.overwrite, quiet=args.quiet,
                              shard_spec=args.shard, device=args.device,
                              batch_pairs=args.batch_pairs,
                              memory_budget_gb=args.memory_budget_gb,
                              flow_compile=args.flow_compile)
        print(summary.line())
        if summary.failed:
            print(f"failures listed in {failures_path(Path(args.out), args.shard)}",
                  file=sys.stderr)
        return EXIT_SOME_FAILED if summary.failed else EXIT_OK
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
