"""Kill a real subprocess part-way (SIGKILL, as an OOM killer or a cluster pre-emption would)."""
import os
import signal
import subprocess
import time


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
