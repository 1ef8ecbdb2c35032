import cv2
import numpy as np
import pytest

from flow_tools.errors import UserError
from two_stream.data.frames import read_video_frames
from two_stream.data.splits import group_of, ucf101_split
from two_stream.data.synthetic import (
    APPEARANCE_CLASSES,
    COLOURS,
    MOTION_CLASSES,
    OBJECT_LUMA,
    SyntheticConfig,
    equal_luma_colour,
    generate,
)

TINY = SyntheticConfig(num_groups=3, clips_per_group=2, test_groups=1, num_frames=10,
                       width=64, height=48)


@pytest.mark.parametrize("hue", list(COLOURS.values()))
def test_appearance_colours_have_equal_grey(hue):
    rgb = np.clip(np.round(equal_luma_colour(hue)), 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(rgb[None, None], cv2.COLOR_RGB2GRAY)[0, 0]
    assert abs(int(grey) - OBJECT_LUMA) <= 1
    assert rgb.max() - rgb.min() > 60  # and still clearly coloured


def test_generate_ucf_layout_groups_and_resume(tmp_path):
    split = generate(tmp_path, TINY, quiet=True)
    assert split.classes == APPEARANCE_CLASSES + MOTION_CLASSES
    assert len(split.train) == 12 * 2 * 2 and len(split.test) == 12 * 2
    assert {group_of(r.video_id).split("/")[1] for r in split.test} == {"g01"}
    assert ucf101_split(tmp_path / "splits", 1) == split
    path = tmp_path / "videos" / "Grow" / "v_Grow_g02_c01.avi"
    frames = read_video_frames(path)
    assert frames.shape == (10, 48, 64, 3)
    before = path.stat().st_mtime_ns
    assert generate(tmp_path, TINY, quiet=True) == split  # complete: nothing rewritten
    assert path.stat().st_mtime_ns == before
    with pytest.raises(UserError, match="another config"):
        generate(tmp_path, SyntheticConfig(num_frames=11), quiet=True)


def test_same_seed_same_video(tmp_path):
    generate(tmp_path / "a", TINY, quiet=True)
    generate(tmp_path / "b", TINY, quiet=True)
    rel = "videos/MoveUp/v_MoveUp_g01_c02.avi"
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_motion_classes_move_as_named(tmp_path):
    """The object in MoveUp goes up, in MoveDown down: track where frames leave the
    background (the per-pixel median over time, as the object keeps moving)."""
    cfg = SyntheticConfig(num_groups=2, clips_per_group=1, test_groups=1, num_frames=20,
                          noise=0.0, jitter=0.0)
    generate(tmp_path, cfg, quiet=True)
    for cls, sign in (("MoveUp", -1), ("MoveDown", 1)):
        f = read_video_frames(tmp_path / "videos" / cls / f"v_{cls}_g02_c01.avi")
        diff = np.abs(f.astype(float) - np.median(f, axis=0)).sum(-1)
        ys = [np.argwhere(d > 30)[:, 0].mean() for d in diff[[0, -1]]]
        assert sign * (ys[1] - ys[0]) > 5
