"""`peak_bytes_per_pair` bounds the memory the eager TV-L1 really holds, and not loosely: the
bytes of every tensor alive are tracked through a dispatch mode while `tvl1` runs."""
import weakref

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from flow_tools.params import TVL1Params
from flow_tools.tvl1_torch import peak_bytes_per_pair, tvl1


class LiveBytes(TorchDispatchMode):
    """Peak of the summed sizes of the storages that tensors made by torch ops keep alive."""

    def __init__(self):
        super().__init__()
        self.refs, self.size, self.now, self.peak = {}, {}, 0, 0

    def _release(self, key):
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.now -= self.size.pop(key)
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                key = t.untyped_storage().data_ptr()
                if key not in self.refs:
                    self.refs[key], self.size[key] = 0, t.untyped_storage().nbytes()
                    self.now += self.size[key]
                    self.peak = max(self.peak, self.now)
                self.refs[key] += 1
                weakref.finalize(t, self._release, key)
        return out


@pytest.mark.parametrize("gamma", [0.0, 0.1])
@pytest.mark.parametrize("b", [2, 4])
def test_peak_formula_bounds_the_eager_peak_tightly(gamma, b):
    """b = 4: half the pairs are still frames and converge at once, so the others go on as a
    compacted batch beside the kept state of the whole one."""
    params = TVL1Params(warps=2, outer_iterations=3, inner_iterations=10, gamma=gamma)
    h, w = 48, 64
    rng = np.random.default_rng(0)
    prev = torch.from_numpy(rng.integers(0, 255, (b, h, w), dtype=np.uint8))
    nxt = torch.roll(prev, 1, dims=2)
    if b > 2:
        nxt[::2] = prev[::2]
    with LiveBytes() as live:
        tvl1(prev, nxt, params)
    bound = b * peak_bytes_per_pair(h, w, params)
    assert live.peak <= bound <= 1.1 * live.peak, (live.peak, bound)


def test_peak_formula_values():
    # 340x256, OpenCV's defaults: 2 HW + 4 (2 x 5 levels' areas + 54 HW)
    areas = 340 * 256 + 272 * 205 + 218 * 164 + 174 * 131 + 139 * 105
    assert peak_bytes_per_pair(256, 340) == 2 * 340 * 256 + 4 * (2 * areas + 54 * 340 * 256)
    assert peak_bytes_per_pair(256, 340, TVL1Params(gamma=0.1)) > peak_bytes_per_pair(256, 340)
