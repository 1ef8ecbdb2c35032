"""One writer per run or work directory.

Two processes writing one run directory (a job started twice, a requeued job whose first
attempt still runs) would each append to `log.csv` and overwrite the other's checkpoints,
and with different settings leave a silent mix. So a writer first takes `<dir>/.lock`: a small
JSON file (host, pid, Slurm job id, start time, command) created with `O_CREAT | O_EXCL`, which
exactly one process can do. A second writer gets a `RunLockedError` (a UserError: one line
naming the holder, CLI exit 2).

A lock is taken over, with a warning in the log, when its holder provably cannot be writing:
- the same host and a pid that no longer runs (killed, crashed, the machine restarted);
- the same Slurm job (`SLURM_JOB_ID`), requeued: Slurm keeps the job id across a requeue, and
  the earlier attempt is gone unless it runs on this very host with a live pid.
A lock of another host outside Slurm cannot be checked: the error says which file to delete.
The lock is released (deleted, only if it is still ours) when the `with` block or the process
ends; a SIGKILLed writer leaves it behind for the takeover rules above.

Within one process the lock is re-entrant (the suite locks its work directory and calls code
that locks again); processes of one job should let one rank take it (rank 0 under DDP).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UserError

log = logging.getLogger("two_stream.runlock")
LOCK_NAME = ".lock"
_held: dict[Path, RunLock] = {}  # this process's locks, by resolved lock path


class RunLockedError(UserError):
    """Another live writer holds the directory's lock."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock (the JSON content of the lock file)."""
    host: str
    pid: int
    slurm_job_id: str | None
    started: str  # local time, ISO 8601
    command: str

    @classmethod
    def mine(cls) -> LockInfo:
        return cls(host=socket.gethostname(), pid=os.getpid(),
                   slurm_job_id=os.environ.get("SLURM_JOB_ID") or None,
                   started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300])

    def describe(self) -> str:
        job = f", Slurm job {self.slurm_job_id}" if self.slurm_job_id else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.started} ({self.command})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def stale_reason(holder: LockInfo, me: LockInfo | None = None) -> str | None:
    """Why `holder` cannot be writing any more (a takeover), or None when it may be."""
    me = me or LockInfo.mine()
    same_host = holder.host == me.host
    if same_host and holder.pid == me.pid:
        return "a lock of an earlier process with this pid"  # we do not hold it (not in _held)
    if same_host and not _pid_alive(holder.pid):
        return f"pid {holder.pid} on {holder.host} no longer runs"
    if holder.slurm_job_id and holder.slurm_job_id == me.slurm_job_id and not same_host:
        return f"Slurm job {holder.slurm_job_id} was requeued"
    return None


def _read(path: Path, retries: int = 40) -> LockInfo | None:
    """The holder named in a lock file (None: it vanished). The holder writes its details
    right after creating the file, so an empty or partial file is retried for a moment."""
    for _ in range(retries):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            return LockInfo(**json.loads(text))
        except (ValueError, TypeError):
            time.sleep(0.05)
    raise UserError(f"{path}: unreadable lock file; delete it if no run uses "
                    f"{path.parent}")


class RunLock:
    """A held lock; `release()` (or leaving the `with` block) deletes the file."""

    def __init__(self, path: Path, info: LockInfo):
        self.path, self.info, self.depth = path, info, 1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        self.depth -= 1
        if self.depth > 0:
            return
        _held.pop(self.path, None)
        try:
            if _read(self.path) == self.info:  # never delete a lock someone took over
                self.path.unlink()
        except (FileNotFoundError, UserError):
            pass


def _create(path: Path, info: LockInfo) -> bool:
    """Create the lock file with our details; False when it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(asdict(info)))
        f.flush()
        os.fsync(f.fileno())
    return True


def _remove_stale(path: Path, holder: LockInfo) -> None:
    """Move the stale lock aside and delete it, unless it changed hands meanwhile."""
    aside = path.with_name(f"{path.name}.stale-{socket.gethostname()}-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another process removed it first
    if _read(aside) == holder:
        aside.unlink()
        return
    # a live writer took it over between our read and the rename: give it back
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    aside.unlink()


def acquire(directory: str | os.PathLike, *, what: str = "directory") -> RunLock:
    """Take `<directory>/.lock` for this process (see the module doc), creating the directory.
    `what` names the directory in the error ("run directory", "work directory")."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / LOCK_NAME).resolve()
    if path in _held:
        _held[path].depth += 1
        return _held[path]
    me = LockInfo.mine()
    for _ in range(20):
        if _create(path, me):
            lock = _held[path] = RunLock(path, me)
            return lock
        holder = _read(path)
        if holder is None:
            continue  # released meanwhile: try again
        reason = stale_reason(holder, me)
        if reason is None:
            hint = ("wait for it to finish" if holder.host == me.host else
                    f"wait for it to finish, or delete {path} if that process is gone")
            raise RunLockedError(f"{what} {directory} is in use by {holder.describe()}: "
                                 f"{hint}")
        log.warning("%s: taking over the lock of %s: %s", directory, holder.describe(), reason)
        _remove_stale(path, holder)
    raise RunLockedError(f"{what} {directory}: could not take {path} (it keeps changing hands)")


@atexit.register
def _release_all() -> None:
    """Locks still held when the interpreter exits normally (an error, sys.exit)."""
    for lock in list(_held.values()):
        lock.depth = 1
        lock.release()
