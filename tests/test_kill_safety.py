"""kill -9 during benchmarks/fuse.py: every visible output is whole, a rerun gives the same
tables."""
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from kill import run_and_kill, timed

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
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fuse.py"), *streams, "--weights", "1",
           "1.5", "--resamples", "200"]
    took = timed([*cmd, "--out", str(tmp_path / "ref")], env)
    out = tmp_path / "out"
    for fraction in (0.6, 0.8, 0.9, 0.97):
        run_and_kill([*cmd, "--out", str(out)], took * fraction, env)
        for p in out.glob("*.csv") if out.exists() else []:
            pd.read_csv(p)  # whole, or it would not parse to the reference's shape
            assert len(pd.read_csv(p)) == len(pd.read_csv(tmp_path / "ref" / p.name))
        for p in out.glob("*.md") if out.exists() else []:
            assert p.read_text() == (tmp_path / "ref" / p.name).read_text()
    timed([*cmd, "--out", str(out)], env)
    for name in ("table.csv", "table.md"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
