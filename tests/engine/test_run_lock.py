"""One writer per run directory: while a real `train` process runs, a second `train` and an
`evaluate` of the same --run-dir stop at once with one line naming the holder (exit 2)."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest


@pytest.mark.e2e
def test_a_second_writer_of_a_run_directory_is_refused(syn, tmp_path):
    run = tmp_path / "run"
    args = ["--split-dir", str(syn / "splits"), "--frames", str(syn / "frames"),
            "--run-dir", str(run), "--input-size", "32", "--scale-size", "36",
            "--num-segments", "1", "--batch-size", "4", "--workers", "0", "--val-ratio", "0",
            "--device", "cpu", "--quiet", "--tensorboard", "off"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "two_stream.spatial"]
    first = subprocess.Popen([*cmd, "train", *args, "--epochs", "1000"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / ".lock").exists():  # the first writer holds the directory
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the training never took the lock"
            time.sleep(0.2)
        for second in (["train", *args, "--epochs", "1"],
                       ["evaluate", "--run-dir", str(run), "--device", "cpu", "--quiet"]):
            r = subprocess.run([*cmd, *second], env=env, capture_output=True, text=True,
                               timeout=300)
            err = r.stderr.strip()
            assert r.returncode == 2, err
            assert err.startswith("error: run directory") and "\n" not in err, err
            assert f"pid {first.pid} on {socket.gethostname()}" in err
        assert first.poll() is None  # the first writer was not disturbed
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert not (run / "scores_test.npz").exists()
