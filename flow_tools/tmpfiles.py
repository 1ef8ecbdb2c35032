"""Temporary names that say who writes them, so a rerun can remove what a killed run left
behind without touching what a concurrent process is still writing."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

TMP_MARK = ".tmp-"


def tmp_name(final: Path) -> Path:
    """`.<name>.tmp-<host>-<pid>` beside `final` (hidden, so never taken for a result)."""
    return final.parent / f".{final.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def tmp_owner_gone(path: Path, host: str | None = None) -> bool:
    """True only when the process that named this temporary path provably no longer runs:
    same host and a pid that is not alive. Paths of other hosts (a cluster job array on a
    shared file system) or of unknown naming are left alone."""
    host = host or socket.gethostname()
    owner = path.name.rsplit(TMP_MARK, 1)[-1]
    owner_host, _, pid = owner.rpartition("-")
    if owner_host != host or not pid.isdigit():
        return False
    return not _pid_alive(int(pid))


def remove_stale(final: Path) -> int:
    """Remove the temporary siblings of `final` whose writer is gone; returns how many."""
    n = 0
    for p in final.parent.glob(f".{final.name}{TMP_MARK}*"):
        if tmp_owner_gone(p):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n
