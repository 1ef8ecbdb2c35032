import cv2
import numpy as np
import pytest
import torch

from flow_tools.errors import UserError
from two_stream.data.frames import FrameReadError
from two_stream.data.transforms import (
    FLOW_MEAN,
    FLOW_STD,
    channel_stats,
    eval_sample,
    flow_snippets,
    hflip,
    multiscale_crop_box,
    normalize_batch,
    train_sample,
)


def _fields(n, h=4, w=5):
    """n (x, y) fields whose pixel values encode (field index, x/y)."""
    return [(np.full((h, w), 10 * i, np.uint8), np.full((h, w), 10 * i + 1, np.uint8))
            for i in range(n)]


def test_flow_stack_channel_order():
    # 2 segments x L=3 fields -> channels x_0, y_0, x_1, y_1, x_2, y_2 per snippet
    snippets = flow_snippets(_fields(6), 2)
    x = eval_sample(snippets, "flow", input_size=4, scale_size=4)
    assert x.shape == (1, 2, 6, 4, 4) and x.dtype == torch.uint8
    assert x[0, :, :, 0, 0].tolist() == [[0, 1, 10, 11, 20, 21], [30, 31, 40, 41, 50, 51]]


def test_flow_flip_inverts_x_only():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 4, 6, 8), dtype=np.uint8)
    f = hflip(x, "flow")
    np.testing.assert_array_equal(f[:, 0::2], 255 - x[:, 0::2, :, ::-1])
    np.testing.assert_array_equal(f[:, 1::2], x[:, 1::2, :, ::-1])
    np.testing.assert_array_equal(hflip(f, "flow"), x)
    # normalised: a flipped field has the opposite sign of motion
    mean, std = channel_stats("flow", 4)
    n = normalize_batch(torch.from_numpy(x), mean, std)
    nf = normalize_batch(torch.from_numpy(f), mean, std)
    assert torch.allclose(nf[:, 0::2], -n[:, 0::2].flip(-1), atol=1e-5)
    np.testing.assert_array_equal(hflip(x[:, :3], "rgb"), x[:, :3, :, ::-1])


def test_normalisation_values():
    mean, std = channel_stats("flow", 2)
    x = torch.full((1, 2, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(normalize_batch(x, mean, std),
                          torch.full((1, 2, 2, 2), (1 - FLOW_MEAN) / FLOW_STD))
    mean, std = channel_stats("rgb", 3)
    x = torch.zeros(2, 3, 1, 1, dtype=torch.uint8)
    assert torch.allclose(normalize_batch(x, mean, std)[0, :, 0, 0],
                          torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))


def test_multiscale_crop_boxes_inside_image():
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(500):
        t, l, h, w = multiscale_crop_box(240, 320, 224, rng)
        assert 0 <= t and t + h <= 240 and 0 <= l and l + w <= 320
        sizes.add((h, w))
    # scales 1, .875, .75, .66 of 240 -> 240, 210, 180, 158 (snapped: none within 3 px of 224)
    assert {s for hw in sizes for s in hw} == {240, 210, 180, 158}
    assert all(abs([240, 210, 180, 158].index(h) - [240, 210, 180, 158].index(w)) <= 1
               for h, w in sizes)


def test_train_sample_is_the_crop_of_the_frame_resized():
    """Each plane is its crop box resized with OpenCV (area when shrinking), one box and one
    flip for the whole sample, deterministic for a given generator."""
    rng = np.random.default_rng(3)
    fields = [(rng.integers(0, 256, (60, 80), dtype=np.uint8),
               rng.integers(0, 256, (60, 80), dtype=np.uint8)) for _ in range(15)]
    snippets = flow_snippets(fields, 3)
    a = train_sample(snippets, "flow", 48, np.random.default_rng(1))
    b = train_sample(snippets, "flow", 48, np.random.default_rng(1))
    assert a.shape == (3, 10, 48, 48) and a.dtype == torch.uint8 and torch.equal(a, b)
    g = np.random.default_rng(1)
    top, left, h, w = multiscale_crop_box(60, 80, 48, g)
    flipped = g.random() < 0.5
    interp = cv2.INTER_AREA if (h > 72 and w > 72) else cv2.INTER_LINEAR
    want = cv2.resize(fields[7][1][top:top + h, left:left + w], (48, 48), interpolation=interp)
    if flipped:
        want = want[:, ::-1]
    np.testing.assert_array_equal(a[1, 5].numpy(), want)  # snippet 1, field 2 (7), y


def test_rgb_sample_layout():
    img = np.zeros((40, 50, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # R, G, B
    x = eval_sample([[img], [img]], "rgb", 32, 40, 1)
    assert x.shape == (1, 2, 3, 32, 32) and x[0, 1, :, 5, 5].tolist() == [10, 20, 30]


@pytest.mark.parametrize("crops", [1, 3, 10])
def test_test_crop_shapes(crops):
    img = np.zeros((60, 80, 3), np.uint8)
    out = eval_sample([[img]] * 5, "rgb", input_size=48, scale_size=54, num_crops=crops)
    assert out.shape == (crops, 5, 3, 48, 48)


def test_ten_crop_flips_flow():
    rng = np.random.default_rng(0)
    fields = [(rng.integers(0, 256, (48, 64), dtype=np.uint8),
               rng.integers(0, 256, (48, 64), dtype=np.uint8)) for _ in range(4)]
    out = eval_sample(flow_snippets(fields, 2), "flow", 48, 48, 10).numpy().astype(int)
    # crop 4 is the centre, crop 9 its mirror with x inverted
    np.testing.assert_array_equal(out[9, :, 0::2], 255 - out[4, :, 0::2, :, ::-1])
    np.testing.assert_array_equal(out[9, :, 1::2], out[4, :, 1::2, :, ::-1])


def test_bad_crop_count_and_mixed_frame_sizes():
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(UserError, match="1, 3 or 10"):
        eval_sample([[img]], "rgb", 32, 32, num_crops=5)
    with pytest.raises(FrameReadError, match="v1: frames of different sizes"):
        eval_sample([[img], [np.zeros((30, 32, 3), np.uint8)]], "rgb", 16, 16, what="v1")
