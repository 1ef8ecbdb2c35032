"""Kill a real subprocess part-way (SIGKILL, as an OOM killer or a cluster pre-emption would).

`run_killed_at` kills at a chosen point: the process SIGKILLs itself right before it renames a
file whose name contains `at` into place (the hook `two_stream.atomic.kill_point`), so a test
that uses it cannot pass without a kill. `run_and_kill` kills after a wall time, for processes
that write through no hook."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from two_stream.atomic import KILL_AT_ENV


def run_killed_at(cmd: list[str], at: str, env: dict | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `cmd` with the kill hook armed at `at` (`NAME` or `NAME@N`, see two_stream.atomic);
    fails the test unless the process died by SIGKILL (so the kill really happened)."""
    env = dict(os.environ if env is None else env, **{KILL_AT_ENV: at})
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == -signal.SIGKILL, (
        f"expected a SIGKILL at {at!r}, got exit {r.returncode}: {r.stderr[-2000:]}")
    return r


def run_and_kill(cmd: list[str], after_s: float, env=None) -> None:
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + after_s
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def timed(cmd: list[str], env=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t
