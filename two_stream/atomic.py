"""Atomic writes: a temporary file in the same folder, then a rename, so a kill never
leaves half a file (split lists, configs, manifests, tables, score files, checkpoints). The
temporary name carries host and pid; the next write of the same file removes those whose
writer is gone.

The kill-safety tests need to kill a writer at a chosen point, not after a guessed fraction of
its run time (a kill that lands before any output exists proves nothing). Set
`TWO_STREAM_KILL_AT=<part of a file name>` and the process SIGKILLs itself right before it
renames a matching file into place (`NAME@N`: at the N-th matching rename, counting from 1),
as an OOM killer or a cluster pre-emption would: the temporary file is written, the real name
not yet. Unset, the hook costs one environment lookup per rename.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from flow_tools.tmpfiles import remove_stale, tmp_name

KILL_AT_ENV = "TWO_STREAM_KILL_AT"
_renames_seen: dict[str, int] = {}


def kill_point(path: str | os.PathLike) -> None:
    """The test hook: SIGKILL this process when `TWO_STREAM_KILL_AT` names `path` (see the
    module doc). Call it right before the rename that publishes `path`."""
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    part, _, nth = spec.rpartition("@") if "@" in spec else (spec, "", "1")
    if part not in Path(path).name:
        return
    _renames_seen[spec] = _renames_seen.get(spec, 0) + 1
    if _renames_seen[spec] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_path(path: str | os.PathLike) -> Path:
    """A temporary path to write `path`'s new content to before `atomic_replace`; leftovers
    of killed writers of the same file are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    return tmp_name(path)


def atomic_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Publish a finished temporary file under its real name (`os.replace`, atomic on one file
    system), with the kill-test hook right before."""
    kill_point(path)
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    tmp = atomic_path(path)
    tmp.write_text(text)
    atomic_replace(tmp, path)
