"""kill -9 during benchmarks/fuse.py, at chosen points (right before each output is renamed
into place, through the two_stream.atomic hook): the killed file never appears, every visible
output is whole, a rerun gives the same tables."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers.kill import run_killed_at

from two_stream.scores import ScoreFile, save_scores

ROOT = Path(__file__).resolve().parents[1]


def _score_files(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    n, c = 600, 40
    labels = rng.integers(0, c, n)
    ids = [f"C{l}/v_C{l}_g{i // 4:02d}_c{i % 4:02d}" for i, l in enumerate(labels)]
    args = []
    for s in range(2):
        x = rng.normal(0, 1, (n, c)).astype(np.float32)
        x[np.arange(n), labels] += 1.0 + s
        save_scores(tmp_path / f"s{s}.npz", ScoreFile(x, labels, ids, [f"C{i}" for i in
                                                                      range(c)]))
        args += ["--stream", f"s{s}={tmp_path / f's{s}.npz'}"]
    return args


def test_kill_during_fuse_then_rerun_gives_the_same_table(tmp_path):
    streams = _score_files(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("TWO_STREAM_KILL_AT", None)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fuse.py"), *streams, "--weights", "1",
           "1.5", "--resamples", "200"]
    ref = tmp_path / "ref"
    subprocess.run([*cmd, "--out", str(ref)], check=True, env=env, capture_output=True)
    out = tmp_path / "out"
    # in the order fuse writes them: each kill lands before a file the previous ones never
    # reached, so the target cannot exist yet
    for target in ("table.csv", "table.md", "run.json"):
        run_killed_at([*cmd, "--out", str(out)], target, env)
        assert not (out / target).exists(), f"{target} was renamed into place before the kill"
        assert list(out.glob(f".{target}.tmp-*")), "the kill landed before the temporary file"
        for name in ("table.csv", "table.md"):
            if (out / name).exists():  # written before the kill: whole, and the reference's
                assert (out / name).read_text() == (ref / name).read_text()
    subprocess.run([*cmd, "--out", str(out)], check=True, env=env, capture_output=True)
    for name in ("table.csv", "table.md"):
        assert (out / name).read_text() == (ref / name).read_text()
    json.loads((out / "run.json").read_text())
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # the killed runs' leftovers
