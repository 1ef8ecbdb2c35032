import json

import numpy as np
import pandas as pd

from benchmarks import fuse
from two_stream.scores import ScoreFile, save_scores


def _write(path, seed, informative, ids, labels, classes):
    rng = np.random.default_rng(seed)
    k = 4
    snip = rng.normal(0, 1, (len(ids), k, len(classes)))
    snip[np.arange(len(ids)), :, labels] += informative
    save_scores(path, ScoreFile(snip.mean(1).astype(np.float32), labels, ids, classes,
                                snip.astype(np.float16), {"stream": path.stem}))


def _data(n_groups=12, per=3):
    classes = ["Aa", "Bb", "Cc"]
    labels = np.repeat(np.arange(n_groups) % 3, per)
    ids = [f"{classes[l]}/v_{classes[l]}_g{i // per:02d}_c{i % per:02d}"
           for i, l in enumerate(labels)]
    return ids, labels, classes


def test_fuse_writes_tables_run_json_and_plot(tmp_path, capsys):
    ids, labels, classes = _data()
    _write(tmp_path / "rgb.npz", 0, 1.0, ids, labels, classes)
    _write(tmp_path / "flow.npz", 1, 1.0, ids, labels, classes)
    out = tmp_path / "out"
    rc = fuse.main(["--stream", f"rgb={tmp_path / 'rgb.npz'}", "--stream",
                    f"flow={tmp_path / 'flow.npz'}", "--weights", "1", "1.5", "--grid",
                    "--resamples", "100", "--folds", "3", "--out", str(out)])
    assert rc == 0
    df = pd.read_csv(out / "table.csv")
    assert {"method", "top1", "top5", "mean_class_acc"} <= set(df.columns)
    assert df["method"].tolist()[:2] == ["rgb", "flow"]
    assert {"average", "max", "weighted", "product", "var", "var_topk", "search",
            "stack"} <= set(df["method"])
    assert (out / "table.md").read_text().startswith("| method")
    run = json.loads((out / "run.json").read_text())
    assert len(run["inputs"][0]["sha256"]) == 64 and run["options"]["weights"] == [1, 1.5]
    assert list(out.glob("confusion_*.png"))
    grid = pd.read_csv(out / "grid.csv")
    assert {"mean top-1", "max top-1", "var top-1"} <= set(grid.columns)
    assert "| method" in capsys.readouterr().out


def test_fuse_grid_from_named_columns(tmp_path):
    ids, labels, classes = _data()
    args = []
    for cons, seed in (("mean", 0), ("max", 5)):
        for stream in ("rgb", "flow"):
            p = tmp_path / f"{stream}_{cons}.npz"
            _write(p, seed + len(stream), 1.5, ids, labels, classes)
            args += ["--stream", f"{stream}@{cons}={p}"]
    out = tmp_path / "g"
    assert fuse.main(args + ["--grid", "--methods", "average", "--norm", "none",
                             "--resamples", "50", "--out", str(out)]) == 0
    grid = pd.read_csv(out / "grid.csv")
    assert grid["method"].tolist() == ["rgb", "flow", "average [none]"]
    assert list(grid.columns[1:4]) == ["mean top-1", "mean top-1 CI", "mean top-5"]


def test_fuse_refuses_misaligned_streams(tmp_path, capsys):
    ids, labels, classes = _data()
    _write(tmp_path / "a.npz", 0, 1.0, ids, labels, classes)
    _write(tmp_path / "b.npz", 0, 1.0, ids[:-2], labels[:-2], classes)
    assert fuse.main(["--stream", f"a={tmp_path / 'a.npz'}", "--stream",
                      f"b={tmp_path / 'b.npz'}", "--out", str(tmp_path / "o")]) == 2
    assert "2 are not in every stream" in capsys.readouterr().err


def test_per_split_score_files_give_each_split_and_the_mean(tmp_path):
    ids, labels, classes = _data()
    spec = {"rgb": [], "flow": []}
    for k, informative in enumerate((0.5, 1.0, 2.0)):
        for s, stream in enumerate(spec):
            p = tmp_path / f"{stream}{k + 1}.npz"
            _write(p, 10 * k + s, informative, ids, labels, classes)
            spec[stream].append(str(p))
    out = tmp_path / "splits"
    argv = [a for stream, paths in spec.items()
            for a in ("--split-stream", f"{stream}={','.join(paths)}")]
    assert fuse.main(argv + ["--methods", "average", "max", "--norm", "none", "--resamples",
                             "50", "--out", str(out)]) == 0
    summary = pd.read_csv(out / "table.csv")
    per_split = [pd.read_csv(out / f"split{k}" / "table.csv") for k in (1, 2, 3)]
    assert summary.method.tolist() == per_split[0].method.tolist() == [
        "rgb", "flow", "average", "max"]
    for i, row in summary.iterrows():
        top1 = [t.top1[i] for t in per_split]
        assert [row[f"split{k} top1"] for k in (1, 2, 3)] == top1
        assert row.top1_mean == round(np.mean(top1), 2)
        assert row.top1_sd == round(np.std(top1, ddof=1), 2)
    assert json.loads((out / "run.json").read_text())["split_inputs"]["split3"][1]["path"] \
        == spec["flow"][2]
    # a stream with fewer files than splits is a one-line error
    rc = fuse.main(["--split-stream", f"rgb={spec['rgb'][0]}", "--split-stream",
                    f"flow={','.join(spec['flow'])}", "--out", str(tmp_path / "bad")])
    assert rc == 2 and not (tmp_path / "bad").exists()
