import numpy as np
import pytest

from flow_tools.errors import UserError
import torch

from two_stream.data.transforms import (FLOW_MEAN, FLOW_STD, TrainTransform, hflip, multi_crop,
                                        multiscale_crop_box, normalize,
                                        to_snippet_tensor)


def test_flow_stack_channel_order():
    # 2 segments x L=3 fields; pixel value encodes (field index, x/y)
    k, length = 2, 3
    frames = np.zeros((k * length, 4, 5, 2), np.uint8)
    for i in range(k * length):
        frames[i, ..., 0] = 10 * i      # x of field i
        frames[i, ..., 1] = 10 * i + 1  # y of field i
    x = to_snippet_tensor(frames, "flow", k)
    assert x.shape == (2, 6, 4, 5)
    got = (x[:, :, 0, 0] * 255).round().int().tolist()
    assert got == [[0, 1, 10, 11, 20, 21], [30, 31, 40, 41, 50, 51]]


def test_flow_flip_inverts_x_only():
    x = torch.rand(3, 4, 6, 8)
    f = hflip(x, "flow")
    assert torch.allclose(f[:, 0::2], 1 - x[:, 0::2].flip(-1))
    assert torch.allclose(f[:, 1::2], x[:, 1::2].flip(-1))
    assert torch.allclose(hflip(f, "flow"), x)
    # normalised: a flipped field has the opposite sign of motion
    n, nf = normalize(x, "flow"), normalize(f, "flow")
    assert torch.allclose(nf[:, 0::2], -n[:, 0::2].flip(-1), atol=1e-5)
    r = hflip(x[:, :3], "rgb")
    assert torch.allclose(r, x[:, :3].flip(-1))


def test_flow_normalisation_values():
    x = torch.full((1, 2, 2, 2), 0.5)
    assert torch.allclose(normalize(x, "flow"), torch.zeros_like(x))
    assert normalize(torch.ones(1), "flow").item() == pytest.approx((1 - FLOW_MEAN) / FLOW_STD)


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


def test_train_transform_shape_and_determinism():
    x = torch.rand(3, 10, 60, 80)
    tr = TrainTransform("flow", input_size=48)
    a = tr(x, np.random.default_rng(1))
    b = tr(x, np.random.default_rng(1))
    assert a.shape == (3, 10, 48, 48) and torch.equal(a, b)


@pytest.mark.parametrize("crops", [1, 3, 10])
def test_test_crop_shapes(crops):
    x = torch.rand(5, 3, 60, 80)
    out = multi_crop(x, "rgb", input_size=48, scale_size=54, num_crops=crops)
    assert out.shape == (crops, 5, 3, 48, 48)


def test_ten_crop_flips_flow():
    x = torch.rand(2, 4, 48, 64)
    out = multi_crop(x, "flow", input_size=48, scale_size=48, num_crops=10)
    # crop 4 is the centre, crop 9 its mirror with x inverted
    assert torch.allclose(out[9, :, 0::2], -out[4, :, 0::2].flip(-1), atol=1e-5)
    assert torch.allclose(out[9, :, 1::2], out[4, :, 1::2].flip(-1), atol=1e-5)


def test_bad_crop_count():
    with pytest.raises(UserError, match="1, 3 or 10"):
        multi_crop(torch.rand(1, 3, 32, 32), "rgb", 32, 32, num_crops=5)
