"""The fusion path is numpy / scipy / pandas only: torch (seconds to import) stays out of a
fusion table's process. Run in a subprocess: pytest itself has torch imported already."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, "benchmarks")
import fuse
assert "numpy" in sys.modules
from two_stream.fuse import FusionOptions, write_fusion_tables
from two_stream.scores import ScoreFile
rng = np.random.default_rng(0)
labels = np.repeat(np.arange(3), 6)
ids = [f"C{l}/v_C{l}_g{i // 2:02d}_c{i % 2:02d}" for i, l in enumerate(labels)]
files = {}
for s in ("rgb", "flow"):
    snip = rng.normal(0, 1, (18, 4, 3)).astype(np.float16)
    files[s] = ScoreFile(snip.astype(np.float32).mean(1) + 2 * np.eye(3)[labels], labels, ids,
                         ["a", "b", "c"], snip)
write_fusion_tables(files, FusionOptions(weights=[1, 1], grid=True, resamples=20, folds=3),
                    sys.argv[1])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")
             or m == "scipy.stats"))
"""


def test_a_whole_fusion_table_never_imports_torch(tmp_path):
    """Nor scipy.stats (a second of import for one binomial test)."""
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "table.csv").exists() and (tmp_path / "out" / "grid.csv").exists()


def test_help_imports_neither_numpy_nor_the_library():
    r = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = ['fuse', '--help'];"
                        "\ntry:\n runpy.run_path('benchmarks/fuse.py', run_name='__main__')"
                        "\nexcept SystemExit: pass"
                        "\nprint(sorted(m for m in ('numpy', 'pandas', 'scipy', 'torch', "
                        "'two_stream.fuse') if m in sys.modules))"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--stream" in r.stdout and r.stdout.strip().splitlines()[-1] == "[]"
