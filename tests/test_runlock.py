"""One writer per directory, with real processes: a second writer is refused with one line
naming the holder (exit 2); a dead holder's or a requeued Slurm job's lock is taken over; the
lock is gone after a normal exit."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from two_stream import runlock
from two_stream.runlock import LOCK_NAME, LockInfo, RunLockedError, acquire

ROOT = Path(__file__).resolve().parents[1]
# take the lock, say so, hold it until `release` appears
HOLD = ("import sys, time; from pathlib import Path; from two_stream.runlock import acquire; "
        "acquire(sys.argv[1], what='run directory'); print('held', flush=True)\n"
        "while not Path(sys.argv[2]).exists(): time.sleep(0.02)")
# take the lock as a command does: a refusal is one line on stderr and exit 2
TAKE = ("import logging, sys; from two_stream.errors import run_cli; "
        "from two_stream.runlock import acquire; logging.basicConfig(level=logging.WARNING); "
        "sys.exit(run_cli(lambda: print('took', acquire(sys.argv[1], what='run directory')"
        ".path)))")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return dict(env, PYTHONPATH=str(ROOT), **extra)


def _take(run_dir: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TAKE, str(run_dir)], capture_output=True,
                          text=True, env=_env(**env), timeout=60)


def _hold(run_dir: Path, release: Path, **env) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(release)],
                            stdout=subprocess.PIPE, text=True, env=_env(**env))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    run_dir = tmp_path / "run"
    holder = _hold(run_dir, tmp_path / "release")
    try:
        r = _take(run_dir)
        assert r.returncode == 2 and "took" not in r.stdout
        err = r.stderr.strip()
        assert err.startswith("error: run directory") and "\n" not in err
        assert f"pid {holder.pid} on {socket.gethostname()}" in err and "in use by" in err
        info = json.loads((run_dir / LOCK_NAME).read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        assert info["started"] and "-c" in info["command"]
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert not (run_dir / LOCK_NAME).exists()  # released at exit
    r = _take(run_dir)
    assert r.returncode == 0 and "took" in r.stdout, r.stderr


def test_the_lock_of_a_killed_writer_is_taken_over_and_logged(tmp_path):
    run_dir = tmp_path / "run"
    holder = _hold(run_dir, tmp_path / "never")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert (run_dir / LOCK_NAME).exists()  # a SIGKILL leaves it behind
    r = _take(run_dir)
    assert r.returncode == 0, r.stderr
    assert "taking over the lock of" in r.stderr and f"pid {holder.pid}" in r.stderr
    assert "no longer runs" in r.stderr
    assert not (run_dir / LOCK_NAME).exists()
    assert not list(run_dir.glob(".lock.stale-*"))


def _foreign_lock(run_dir: Path, job: str | None) -> None:
    run_dir.mkdir(parents=True)
    info = LockInfo(host="other-node", pid=1, slurm_job_id=job, started="2026-01-01T00:00:00",
                    command="two_stream.spatial train")
    (run_dir / LOCK_NAME).write_text(json.dumps(info.__dict__))


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path):
    _foreign_lock(tmp_path / "a", job="4242")
    r = _take(tmp_path / "a", SLURM_JOB_ID="4242")
    assert r.returncode == 0 and "Slurm job 4242 was requeued" in r.stderr, r.stderr


@pytest.mark.parametrize("job, mine", [("4242", "777"), ("4242", None), (None, None)])
def test_another_hosts_lock_is_not_taken(tmp_path, job, mine):
    _foreign_lock(tmp_path / "a", job=job)
    r = _take(tmp_path / "a", **({"SLURM_JOB_ID": mine} if mine else {}))
    err = r.stderr.strip()
    assert r.returncode == 2 and "pid 1 on other-node" in err and "\n" not in err
    assert f"delete {(tmp_path / 'a' / LOCK_NAME).resolve()}" in err
    assert (tmp_path / "a" / LOCK_NAME).exists()


def test_same_slurm_job_on_the_same_host_with_a_live_pid_is_a_second_writer(tmp_path):
    """Two processes of one job (e.g. two ranks) must not both write: only a requeue or a
    dead pid takes over."""
    holder = _hold(tmp_path / "a", tmp_path / "release", SLURM_JOB_ID="99")
    try:
        r = _take(tmp_path / "a", SLURM_JOB_ID="99")
        assert r.returncode == 2 and "Slurm job 99" in r.stderr
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)


def test_in_one_process_the_lock_is_reentrant_and_released_by_the_outer_block(tmp_path):
    with acquire(tmp_path) as outer:
        with acquire(tmp_path) as inner:
            assert inner is outer
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_release_never_deletes_a_lock_taken_over_by_another(tmp_path):
    lock = acquire(tmp_path)
    other = LockInfo(host="h", pid=2, slurm_job_id=None, started="t", command="c")
    (tmp_path / LOCK_NAME).write_text(json.dumps(other.__dict__))
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == 2


def test_two_processes_racing_for_a_stale_lock_one_wins(tmp_path):
    """Both see a dead holder's lock at once; exactly one takes it, the other is refused."""
    run_dir = tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text(json.dumps(LockInfo(
        host=socket.gethostname(), pid=int(dead), slurm_job_id=None, started="t",
        command="c").__dict__))
    racer = ("import sys, time; from pathlib import Path; from two_stream.runlock import "
             "acquire\nwhile not Path(sys.argv[2]).exists(): time.sleep(0.001)\n"
             "acquire(sys.argv[1]); print('took', flush=True); time.sleep(2)")
    procs = [subprocess.Popen([sys.executable, "-c", racer, str(run_dir), str(tmp_path / "go")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env()) for _ in range(2)]
    time.sleep(1.0)  # both waiting at the start line
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=60) for p in procs]
    took = [o for o, _ in outs if "took" in o]
    refused = [e for _, e in outs if "RunLockedError" in e]
    assert len(took) == 1 and len(refused) == 1, outs


def test_the_error_is_a_user_error():
    assert issubclass(RunLockedError, runlock.UserError)


@pytest.mark.parametrize("command", ["suite", "sweep", "flow_backend_stream"])
def test_the_experiment_commands_lock_their_work_directory(tmp_path, capsys, command):
    """A second suite, sweep or flow-backend run on a work directory in use stops before any
    work: exit 2, one line naming the holder, nothing written."""
    from benchmarks import flow_backend_stream, suite, sweep
    work = tmp_path / "work"
    holder = _hold(work, tmp_path / "release")
    try:
        if command == "flow_backend_stream":
            rc = flow_backend_stream.main(["--work-dir", str(work), "--out",
                                           str(tmp_path / "results")])
        else:
            argv = ["--work-dir", str(work), "--results-root", str(tmp_path / "results"),
                    "--quiet", "--name", "x"]
            rc = (suite.main if command == "suite" else sweep.main)(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("error: work directory") and "\n" not in err
        assert f"pid {holder.pid}" in err
        assert sorted(p.name for p in work.iterdir()) == [LOCK_NAME]
        assert not (tmp_path / "results").exists()
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)
