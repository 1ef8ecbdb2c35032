"""Writing results people read: markdown/csv tables and the provenance (`run.json`) of a run."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from .atomic import atomic_write_text


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub markdown table (no tabulate dependency)."""
    def fmt(v):
        if isinstance(v, float):
            return "" if v != v else format(v, floatfmt)
        return str(v)
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def write_table(df: pd.DataFrame, out_dir: str | os.PathLike, name: str = "table",
                title: str = "", note: str = "", display: pd.DataFrame | None = None) -> str:
    """`<out>/<name>.csv` (the numbers of `df`) and `<out>/<name>.md` (of `display`, else
    `df`); returns the markdown."""
    out_dir = Path(out_dir)
    md = ((f"# {title}\n\n" if title else "")
          + markdown_table(df if display is None else display) + (f"\n{note}\n" if note else ""))
    atomic_write_text(out_dir / f"{name}.csv", df.to_csv(index=False))
    atomic_write_text(out_dir / f"{name}.md", md)
    return md


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        # results/ is rewritten by the very run being recorded: not a change of the code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":/", ":(exclude,top)results"],
                               capture_output=True, text=True, timeout=10,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_version(*distributions: str) -> str | None:
    """The installed version of the first of `distributions` found, read from the package
    metadata: importing torch, torchvision or cv2 only to print a version string would cost
    a fusion table seconds of start-up."""
    for d in distributions:
        module = sys.modules.get(d)  # imported already: its own string (torch's +cu130 too)
        if module is not None and isinstance(getattr(module, "__version__", None), str):
            return module.__version__
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def gpu_name() -> str | None:
    """The first CUDA device's name, or None. Imports torch: only for commands that use it."""
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def environment(gpu: bool | None = None) -> dict:
    """Versions and machine, for `run.json`. `gpu`: record the CUDA device's name (None: only
    when the command has imported torch already, so a numpy-only command stays light)."""
    if gpu is None:
        gpu = "torch" in sys.modules
    return {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "torch": package_version("torch"),
        "torchvision": package_version("torchvision"),
        "opencv": package_version("opencv-contrib-python-headless", "opencv-python-headless",
                                  "opencv-contrib-python", "opencv-python"),
        "numpy": package_version("numpy"), "pandas": package_version("pandas"),
        "scipy": package_version("scipy"),
        "cuda": gpu_name() if gpu else None,
    }


_commit_at_start: str | None = None


def note_start() -> None:
    """Remember the code's commit now: a long benchmark records the code it started with, not
    whatever is checked out when it finishes."""
    global _commit_at_start
    _commit_at_start = git_commit()


def write_run_json(out_dir: str | os.PathLike, filename: str = "run.json", **extra) -> dict:
    """`<out>/run.json` (or `filename`, for a benchmark whose tables are made by separate
    runs): the command, git commit, versions, machine and date, plus `extra`."""
    info = {"command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
            "cwd": os.getcwd(), "git_commit": _commit_at_start or git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), **extra}
    atomic_write_text(Path(out_dir) / filename, json.dumps(info, indent=2, default=str) + "\n")
    return info
