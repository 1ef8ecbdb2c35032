import pickle

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
