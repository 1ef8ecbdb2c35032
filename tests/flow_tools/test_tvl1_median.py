"""The selection-network median equals the sorted median of the unfolded windows, element for
element, borders (replicated) included."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flow_tools import tvl1_step
from flow_tools.tvl1_median import median_blur_cpu, median_filter, median_of, pad_replicate


def _unfold_median(u: torch.Tensor, k: int) -> torch.Tensor:
    """The previous implementation: a [B, C, H, W, k*k] copy and a median along it."""
    r = k // 2
    p = F.pad(u, (r, r, r, r), mode="replicate")
    win = p.unfold(2, k, 1).unfold(3, k, 1)
    return win.reshape(*u.shape, k * k).median(dim=-1).values


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (2, 2, 7, 9), (3, 2, 31, 17)])
def test_equals_the_sorted_median(k, shape):
    g = torch.Generator().manual_seed(k * 100 + shape[-1])
    for u in (torch.randn(shape, generator=g),  # distinct values
              torch.randint(0, 3, shape, generator=g).float(),  # many ties
              torch.randn(shape, generator=g).round() * 0.0):  # signed zeros
        assert torch.equal(median_filter(u, k), _unfold_median(u, k))


def test_equals_the_sorted_median_on_a_real_frame_and_opencv(fixtures):
    frame = cv2.imread(str(fixtures / "flow_gt/middlebury_RubberWhale/frame10.png"), 0)
    img = frame.astype(np.float32) / 7.0  # float values with ties, like a flow field's
    u = torch.from_numpy(np.stack([img, img[::-1].copy()]))[None]  # [1, 2, H, W]
    for k in (3, 5):
        ours = median_filter(u, k)
        assert torch.equal(ours, _unfold_median(u, k))
        np.testing.assert_array_equal(ours[0, 0].numpy(), cv2.medianBlur(img, k))


def test_median_of_any_odd_count():
    g = torch.Generator().manual_seed(0)
    for n in (1, 3, 5, 7, 9, 11, 25, 49):
        vals = torch.randn(n, 50, generator=g)
        assert torch.equal(median_of(list(vals)), vals.median(dim=0).values), n
    with pytest.raises(ValueError, match="odd"):
        median_of([vals[0], vals[1]])


@pytest.mark.parametrize("k", [3, 5])
def test_the_fast_paths_equal_the_network(k):
    """OpenCV's median (the CPU fast path) and the network on padded input (what CUDA
    compiles) give the network's values on the running pairs and leave the others alone."""
    g = torch.Generator().manual_seed(k)
    u = torch.randn(3, 3, 23, 31, generator=g)  # 3 channels: the illumination one stays
    u[1] = torch.randint(0, 4, (3, 23, 31), generator=g).float()  # ties
    run = torch.tensor([True, True, False])
    want = tvl1_step.median_step(u, run, k=k)
    assert torch.equal(want[2], u[2]) and not torch.equal(want[0], u[0])
    assert torch.equal(median_blur_cpu(u, run, k), want)
    padded = pad_replicate(u[:, :2], k)
    assert torch.equal(tvl1_step.median_step_padded(u, padded, run, k=k), want)


def test_opencv_median_only_at_its_float_sizes():
    with pytest.raises(ValueError, match="3 and 5"):
        median_blur_cpu(torch.zeros(1, 2, 9, 9), torch.tensor([True]), 7)
