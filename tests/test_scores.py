import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from two_stream.scores import (
    ScoreFile,
    ScoreFileError,
    align,
    from_two_stream_pickle,
    load_any,
    load_scores,
    main,
    save_scores,
)


def _sf(ids, scores, labels, classes=("A", "B", "C")):
    return ScoreFile(np.asarray(scores, np.float32), np.asarray(labels, np.int64), list(ids),
                     list(classes))


def test_round_trip_with_snippets_and_meta(tmp_path):
    sf = _sf(["A/v1", "B/v2"], [[1, 2, 3], [3, 2, 1]], [2, 0])
    sf.snippet_scores = np.arange(18, dtype=np.float16).reshape(2, 3, 3)
    sf.meta = {"stream": "spatial", "segments": 3}
    save_scores(tmp_path / "s.npz", sf)
    back = load_scores(tmp_path / "s.npz")
    assert back.video_ids == sf.video_ids and back.classes == sf.classes
    assert np.array_equal(back.scores, sf.scores) and np.array_equal(back.labels, sf.labels)
    assert back.snippet_scores.dtype == np.float16
    assert np.array_equal(back.snippet_scores, sf.snippet_scores)
    assert back.meta == sf.meta
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s.scores.__setitem__((1, 0), np.nan), "1 videos have NaN or infinite scores, "
                                                      "e.g. 'B/v2'"),
    (lambda s: s.video_ids.__setitem__(1, "A/v1"), "video id 'A/v1' appears more than once"),
    (lambda s: s.labels.__setitem__(0, 3), r"labels must be -1 \(unknown\) or in \[0, 3\)"),
    (lambda s: s.classes.pop(), "3 score columns but 2 class names"),
])
def test_validation_errors_name_the_file(tmp_path, mutate, message):
    sf = _sf(["A/v1", "B/v2"], [[1, 2, 3], [3, 2, 1]], [2, 0])
    mutate(sf)
    with pytest.raises(ScoreFileError, match=f"bad.npz: {message}"):
        save_scores(tmp_path / "bad.npz", sf)


def test_load_missing_and_foreign_files(tmp_path):
    with pytest.raises(ScoreFileError, match="nope.npz: score file not found"):
        load_scores(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ScoreFileError, match=r"other.npz: not a score file, missing"):
        load_scores(tmp_path / "other.npz")


def test_two_stream_pickle_labels_case_insensitive(tmp_path):
    data = {"HandStandPushups_g01_c01": np.array([0.1, 2.0], np.float32),
            "Archery_g02_c03": np.array([3.0, 0.0], np.float32)}
    (tmp_path / "p.pickle").write_bytes(pickle.dumps(data, protocol=2))
    (tmp_path / "classInd.txt").write_text("1 Archery\r\n2 HandstandPushups\r\n")
    sf = load_any(tmp_path / "p.pickle", tmp_path / "classInd.txt")
    assert sf.video_ids == ["Archery/v_Archery_g02_c03",
                            "HandstandPushups/v_HandStandPushups_g01_c01"]
    assert sf.labels.tolist() == [0, 1]
    data["Bowling_g01_c01"] = np.zeros(2, np.float32)
    (tmp_path / "p.pickle").write_bytes(pickle.dumps(data))
    with pytest.raises(ScoreFileError, match="class 'Bowling', which is not in the class index"):
        from_two_stream_pickle(tmp_path / "p.pickle", ["Archery", "HandstandPushups"])


def test_mmaction_pickle_lists_and_dicts(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    (tmp_path / "ann.txt").write_text("vid1 30 2\nvid2 12 0\n")
    rows = [np.array([0.1, 0.2, 0.7]), np.array([0.5, 0.3, 0.2])]
    (tmp_path / "r.pkl").write_bytes(pickle.dumps(rows))
    (tmp_path / "d.pkl").write_bytes(pickle.dumps([{"pred_score": r} for r in rows]))
    for name in ("r.pkl", "d.pkl"):
        sf = load_any(tmp_path / name, tmp_path / "labels.txt", tmp_path / "ann.txt")
        assert sf.video_ids == ["vid1", "vid2"] and sf.labels.tolist() == [2, 0]
        assert np.allclose(sf.scores, np.stack(rows))
    (tmp_path / "ann.txt").write_text("vid1 30 2\n")
    with pytest.raises(ScoreFileError, match="2 results but .*ann.txt lists 1 videos"):
        load_any(tmp_path / "r.pkl", tmp_path / "labels.txt", tmp_path / "ann.txt")
    with pytest.raises(ScoreFileError, match="needs --ann-file"):
        load_any(tmp_path / "r.pkl", tmp_path / "labels.txt")


def test_align_joins_by_id_not_position():
    a = _sf(["v1", "v2", "v3"], np.eye(3), [0, 1, 2])
    b = _sf(["v3", "v1", "v2"], np.eye(3)[[2, 0, 1]] * 2, [2, 0, 1])
    out, dropped = align({"a": a, "b": b})
    assert dropped == 0
    assert out["b"].video_ids == ["v1", "v2", "v3"]
    assert np.array_equal(out["b"].scores, 2 * np.eye(3))


def test_align_refuses_mismatched_sets_unless_allowed():
    a = _sf(["v1", "v2", "v3"], np.eye(3), [0, 1, 2])
    b = _sf(["v1", "v2"], np.eye(3)[:2], [0, 1])
    with pytest.raises(ScoreFileError, match=r"1 are not in every stream \(e.g. 'v3' of 'a'\)"):
        align({"a": a, "b": b})
    out, dropped = align({"a": a, "b": b}, allow_missing=True)
    assert dropped == 1 and out["a"].video_ids == ["v1", "v2"]


def test_align_refuses_other_classes_or_labels():
    a = _sf(["v1"], [[1, 0, 0]], [0])
    with pytest.raises(ScoreFileError, match="different class lists"):
        align({"a": a, "b": _sf(["v1"], [[1, 0]], [0], classes=("A", "B"))})
    with pytest.raises(ScoreFileError, match="disagree on the label of 'v1'"):
        align({"a": a, "b": _sf(["v1"], [[1, 0, 0]], [1])})


def test_convert_cli(tmp_path, capsys):
    (tmp_path / "p.pickle").write_bytes(pickle.dumps({"A_g01_c01": np.ones(2, np.float32)}))
    (tmp_path / "c.txt").write_text("1 A\n2 B\n")
    assert main(["convert", str(tmp_path / "p.pickle"), "--class-index",
                 str(tmp_path / "c.txt"), str(tmp_path / "o.npz")]) == 0
    assert load_scores(tmp_path / "o.npz").video_ids == ["A/v_A_g01_c01"]
    assert main(["convert", str(tmp_path / "missing.pickle"), "--class-index",
                 str(tmp_path / "c.txt"), str(tmp_path / "o.npz")]) == 2
    assert "missing.pickle: score file not found" in capsys.readouterr().err


# --- MMAction2 1.x --dump pickles: tensors rebuilt as numpy, no torch function called -----

DATA = Path(__file__).resolve().parent / "data_files"


def _no_torch_loading(monkeypatch):
    import torch
    import torch.storage

    def refuse(*a, **k):
        raise AssertionError("torch was asked to load bytes from an untrusted file")
    monkeypatch.setattr(torch.storage, "_load_from_bytes", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_reads_a_1x_dump_of_torch_tensors_without_calling_torch(tmp_path, monkeypatch):
    import torch
    torch.manual_seed(0)
    batch = torch.softmax(torch.randn(2, 3), dim=1)  # rows of one batch share a storage
    items = [{"pred_score": batch[0], "gt_label": torch.tensor([2]), "num_classes": 3},
             {"pred_score": batch[1], "gt_label": torch.tensor([0]), "num_classes": 3},
             {"pred_score": torch.tensor([0.1, 0.8, 0.1], dtype=torch.float64),
              "pred_label": torch.tensor([1]), "gt_label": torch.tensor([1])}]
    with open(tmp_path / "dump.pkl", "wb") as f:
        pickle.dump(items, f, protocol=2)  # what mmengine.dump does for .pkl
    (tmp_path / "classes.txt").write_text("A\nB\nC\n")
    (tmp_path / "list.txt").write_text("A/v1 10 2\nB/v2 10 0\nC/v3 10 1\n")
    _no_torch_loading(monkeypatch)
    sf = load_any(tmp_path / "dump.pkl", tmp_path / "classes.txt", tmp_path / "list.txt")
    expected = np.stack([batch[0].numpy(), batch[1].numpy(), [0.1, 0.8, 0.1]])
    assert np.allclose(sf.scores, expected, rtol=0, atol=1e-7)
    assert np.array_equal(sf.scores[:2], batch.numpy())  # float32 bit for bit
    assert sf.labels.tolist() == [2, 0, 1] and sf.video_ids == ["A/v1", "B/v2", "C/v3"]


def test_rebuilds_strided_half_and_bfloat16_tensors():
    import torch

    from two_stream.scores import _ScoreUnpickler
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    for t in (base.t()[1:3], base[1:, ::2], base.half()[2], base.bfloat16()[:, 1],
              torch.tensor([True, False]), torch.zeros(0, 3)):
        back = _ScoreUnpickler(io.BytesIO(pickle.dumps(t))).load()
        ref = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
        assert back.shape == tuple(t.shape) and np.array_equal(back, ref), t


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([{"pred_score": _Evil()}], protocol=2))
    (tmp_path / "c.txt").write_text("A\n")
    (tmp_path / "l.txt").write_text("A/v1 1 0\n")
    with pytest.raises(ScoreFileError, match=r"evil.pkl: refused to load (posix|os)\.system"):
        load_any(tmp_path / "evil.pkl", tmp_path / "c.txt", tmp_path / "l.txt")


def test_refuses_code_hidden_in_a_tensor_storage(tmp_path):
    import torch.storage

    from two_stream.tensor_pickle import LEGACY_MAGIC
    blob = (pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"little_endian": True}, protocol=2)
            + pickle.dumps(_Evil(), protocol=2))

    class Storage:  # what torch writes for a storage, with the bytes of an attacker
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (blob,))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([Storage()], protocol=2))
    (tmp_path / "c.txt").write_text("A\n")
    (tmp_path / "l.txt").write_text("A/v1 1 0\n")
    with pytest.raises(ScoreFileError, match=r"refused to load (posix|os)\.system inside a "
                                             r"tensor's storage"):
        load_any(tmp_path / "evil.pkl", tmp_path / "c.txt", tmp_path / "l.txt")


def test_reads_the_committed_mmengine_dump(monkeypatch, tmp_path):
    """A dump written by mmengine.dump in the MMAction2 1.2.0 environment (tests/data_files)."""
    _no_torch_loading(monkeypatch)
    expected = json.loads((DATA / "mmaction2_1x_dump.json").read_text())
    sf = load_any(DATA / "mmaction2_1x_dump.pkl", DATA / "mmaction2_1x_dump_classes.txt",
                  DATA / "mmaction2_1x_dump_list.txt")
    assert np.array_equal(sf.scores, np.array(expected["pred_score"], np.float32))
    assert sf.labels.tolist() == expected["gt_label"]
    assert sf.scores.argmax(1).tolist() == expected["pred_label"]
    out = tmp_path / "d.npz"
    assert main(["convert", str(DATA / "mmaction2_1x_dump.pkl"), "--class-index",
                 str(DATA / "mmaction2_1x_dump_classes.txt"), "--ann-file",
                 str(DATA / "mmaction2_1x_dump_list.txt"), str(out)]) == 0
    assert np.array_equal(load_scores(out).scores, sf.scores)
