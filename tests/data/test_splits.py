import numpy as np
import pytest

from two_stream.data.splits import (
    SplitError,
    folder_split,
    group_of,
    hmdb51_split,
    holdout_split,
    read_class_index,
    ucf101_split,
)


@pytest.mark.parametrize("split,n_train,n_test", [(1, 9537, 3783), (2, 9586, 3734),
                                                  (3, 9624, 3696)])
def test_ucf101_official_counts(fixtures, split, n_train, n_test):
    s = ucf101_split(fixtures / "ucf101_splits", split)
    assert (len(s.train), len(s.test), len(s.classes)) == (n_train, n_test, 101)
    # test list has no label column: labels come from the class folder
    assert {r.label for r in s.test} == set(range(101))
    assert len({r.video_id for r in s.train} & {r.video_id for r in s.test}) == 0


def test_ucf101_handstand_quirk(fixtures):
    s = ucf101_split(fixtures / "ucf101_splits", 1)
    hp = s.classes.index("HandstandPushups")
    quirky = [r for r in s.train + s.test if "HandStandPushups" in r.video_id]
    assert quirky and all(r.label == hp for r in quirky)
    assert quirky[0].video_id.startswith("HandstandPushups/v_HandStandPushups_g")


def test_ucf101_crlf_equals_lf(fixtures, tmp_path):
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        text = (fixtures / "ucf101_splits" / name).read_text()
        (tmp_path / name).write_bytes(text.replace("\n", "\r\n").encode())
    assert ucf101_split(tmp_path, 1) == ucf101_split(fixtures / "ucf101_splits", 1)


def test_unknown_class_names_file_and_line(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Archery\n2 Bowling\n")
    (tmp_path / "trainlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi 1\nSurfing/v_Surfing_g01_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("Archery/v_Archery_g02_c01.avi\n")
    with pytest.raises(SplitError, match=r"trainlist01.txt:2: class 'Surfing' is not in"):
        ucf101_split(tmp_path, 1)


def test_label_column_must_match_folder(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Archery\n2 Bowling\n")
    (tmp_path / "trainlist01.txt").write_text("Bowling/v_Bowling_g01_c01.avi 1\n")
    (tmp_path / "testlist01.txt").write_text("")
    with pytest.raises(SplitError, match="label 1 disagrees with class 'Bowling'"):
        ucf101_split(tmp_path, 1)


def test_missing_split_file(tmp_path):
    with pytest.raises(SplitError, match="classInd.txt: split file not found"):
        ucf101_split(tmp_path, 1)


def test_class_index_gap(tmp_path):
    (tmp_path / "c.txt").write_text("1 A\n3 B\n")
    with pytest.raises(SplitError, match="without gaps"):
        read_class_index(tmp_path / "c.txt")


@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_official_counts(fixtures, split):
    s = hmdb51_split(fixtures / "hmdb51_splits", split)
    assert (len(s.train), len(s.test), len(s.classes)) == (3570, 1530, 51)
    assert s.classes == sorted(s.classes)
    assert s.train[0].video_id.startswith("brush_hair/")


def test_group_keys():
    assert group_of("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01") == "ApplyEyeMakeup/g08"
    assert group_of("HandstandPushups/v_HandStandPushups_g08_c02") == "HandstandPushups/g08"
    assert group_of("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0") == "April_09"
    assert group_of("cartwheel/Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6") == \
        "Turnk_r_Pippi_Michel"
    assert group_of("folder/clip7") == "folder/clip7"


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51"])
def test_validation_is_group_disjoint_and_stratified(fixtures, dataset):
    if dataset == "ucf101":
        s = ucf101_split(fixtures / "ucf101_splits", 1)
    else:
        s = hmdb51_split(fixtures / "hmdb51_splits", 1)
    train, val = holdout_split(s.train, 0.1, seed=0)
    assert len(train) + len(val) == len(s.train)
    assert {group_of(r.video_id) for r in train}.isdisjoint({group_of(r.video_id) for r in val})
    share = len(val) / len(s.train)
    assert 0.07 < share < 0.2
    # every class keeps training videos and (nearly) every class is validated
    assert {r.label for r in train} == set(range(len(s.classes)))
    assert len({r.label for r in val}) >= 0.9 * len(s.classes)
    test_ids = {r.video_id for r in s.test}
    assert not test_ids & {r.video_id for r in val}
    # deterministic under the seed, different under another
    assert holdout_split(s.train, 0.1, seed=0)[1] == val
    assert holdout_split(s.train, 0.1, seed=1)[1] != val


def test_folder_split_is_stratified_deterministic_and_saved(tmp_path):
    root = tmp_path / "videos"
    for c in ("Bike", "Jump", "Swim"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            (root / c / f"{c.lower()}_{i}.mp4").write_bytes(b"")
    (root / "Swim" / "notes.txt").write_text("not a video")
    s = folder_split(root, tmp_path / "lists", test_ratio=0.3, seed=3)
    assert s.classes == ["Bike", "Jump", "Swim"]
    assert len(s.train) + len(s.test) == 30
    assert np.bincount([r.label for r in s.test]).tolist() == [3, 3, 3]
    assert folder_split(root, tmp_path / "lists2", 0.3, seed=3) == s
    assert ucf101_split(tmp_path / "lists", 1) == s


def _mmaction_lists(split, out, kind="rawframes", prefix="ucf101"):
    """Write a split as MMAction2's tools/data scripts do (0-based labels)."""
    out.mkdir(parents=True, exist_ok=True)
    for part, recs in (("train", split.train), ("val", split.test)):
        lines = [f"{r.video_id} {17 + i % 5} {r.label}" if kind == "rawframes"
                 else f"{r.video_id}.avi {r.label}" for i, r in enumerate(recs)]
        (out / f"{prefix}_{part}_split_1_{kind}.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", ["rawframes", "videos"])
def test_mmaction_lists_equal_the_official_split(fixtures, tmp_path, kind):
    from two_stream.data.splits import mmaction_split
    official = ucf101_split(fixtures / "ucf101_splits", 1)
    _mmaction_lists(official, tmp_path, kind)
    s = mmaction_split(tmp_path, 1)
    assert s == official  # class names from the class folders, in label order
    (tmp_path / "label_map.txt").write_text("".join(f"C{k}\n" for k in range(101)))
    assert mmaction_split(tmp_path, 1).classes[:2] == ["C0", "C1"]


def test_mmaction_lists_bad_content_names_file_and_line(fixtures, tmp_path):
    from two_stream.data.splits import mmaction_split
    official = ucf101_split(fixtures / "ucf101_splits", 1)
    _mmaction_lists(official, tmp_path)
    path = tmp_path / "ucf101_val_split_1_rawframes.txt"
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], text[1] + " 7", *text[2:]]) + "\n")
    with pytest.raises(SplitError, match=r"ucf101_val_split_1_rawframes.txt:2: .*multi-label"):
        mmaction_split(tmp_path, 1)
    with pytest.raises(SplitError, match="no MMAction2 train list of split 2"):
        mmaction_split(tmp_path, 2)
    _mmaction_lists(official, tmp_path, prefix="other")
    with pytest.raises(SplitError, match="several train lists of split 1"):
        mmaction_split(tmp_path, 1)
