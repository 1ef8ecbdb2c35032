"""Atomic writes: a temporary file in the same folder, then a rename, so a kill never
leaves half a file (split lists, configs, manifests, tables, score files, checkpoints). The
temporary name carries host and pid; the next write of the same file removes those whose
writer is gone."""
from __future__ import annotations

import os
from pathlib import Path

from flow_tools.tmpfiles import remove_stale, tmp_name


def atomic_path(path: str | os.PathLike) -> Path:
    """A temporary path to write `path`'s new content to before `os.replace`; leftovers of
    killed writers of the same file are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    return tmp_name(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    tmp = atomic_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)
