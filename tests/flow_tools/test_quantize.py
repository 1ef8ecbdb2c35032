"""The device quantisation is bit-equal to numpy's, including at the .5 boundaries, where a
multiplication by the reciprocal (what CUDA does for `tensor / python_number`) rounds the
other way for some bounds."""
import numpy as np
import pytest
import torch

from flow_tools.quantize import quantize, quantize_torch

BOUNDS = (20.0, 15.0, 30.0, 12.5, 3.0, 0.7)


def boundary_flows(bound: float) -> np.ndarray:
    """float32 flows whose grey level 255 (f + B) / 2B is k + .5 for every k, and the floats
    a few ulps either side of each, in px."""
    d = np.float32(2 * bound)
    x = (d * (np.arange(255) + 0.5)).astype(np.float32)  # 255 (f + B) at the boundaries
    xs = [x]
    for direction in (np.inf, -np.inf):
        y = x
        for _ in range(4):
            y = np.nextafter(y, np.float32(direction))
            xs.append(y)
    f = np.concatenate(xs) / np.float32(255) - np.float32(bound)
    return np.concatenate([f, [-bound - 1, bound + 1, 0.0]]).astype(np.float32)


def reciprocal_quantize(f: np.ndarray, bound: float) -> np.ndarray:
    """The formula with the division done as CUDA does it for a Python scalar divisor."""
    f = np.clip(f, -bound, bound)
    return np.round(np.float32(255) * (f + np.float32(bound))
                    * (np.float32(1) / np.float32(2 * bound))).astype(np.uint8)


@pytest.mark.parametrize("bound", BOUNDS)
def test_torch_formula_equals_numpy_at_half_boundaries(bound):
    f = boundary_flows(bound)
    assert np.array_equal(quantize_torch(torch.from_numpy(f), bound).numpy(), quantize(f, bound))


def test_boundary_values_tell_true_division_from_the_reciprocal():
    """The values above would catch a reciprocal multiplication: it differs from numpy on
    some of them for the bounds where 1 / 2B is not exact enough."""
    differ = {b: int((reciprocal_quantize(boundary_flows(b), b)
                      != quantize(boundary_flows(b), b)).sum()) for b in BOUNDS}
    assert differ[15.0] > 0 and differ[30.0] > 0, differ


def test_shapes_dtypes_and_bad_bound():
    f = torch.tensor([[[-25.0, 0.0], [25.0, 0.078]]], dtype=torch.float64)  # [1, 2, 2]
    q = quantize_torch(f, 20.0)
    assert q.dtype == torch.uint8 and q.shape == (1, 2, 2)
    assert q.tolist() == [[[0, 128], [255, 128]]]
    with pytest.raises(Exception, match="bound must be positive"):
        quantize_torch(f, 0.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("bound", BOUNDS)
def test_cuda_quantisation_equals_numpy_at_half_boundaries(bound):
    f = boundary_flows(bound)
    rng = np.random.default_rng(0)
    f = np.concatenate([f, rng.uniform(-bound - 2, bound + 2, 200_000).astype(np.float32)])
    on_device = quantize_torch(torch.from_numpy(f).cuda(), bound).cpu().numpy()
    assert np.array_equal(on_device, quantize(f, bound))
