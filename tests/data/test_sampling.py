import numpy as np
import pytest

from two_stream.data.sampling import test_indices as centre_indices
from two_stream.data.sampling import train_indices


@pytest.mark.parametrize("n,k,length,expected", [
    # 30 frames, 3 segments of 10 frames, one frame: centres 5, 15, 25
    (30, 3, 1, [[5], [15], [25]]),
    # 30 flows, L=5: 26 valid starts, segment edges 0, 8.67, 17.33, 26 -> centres 4, 13, 21
    (30, 3, 5, [[4, 5, 6, 7, 8], [13, 14, 15, 16, 17], [21, 22, 23, 24, 25]]),
    # shorter than K: starts repeat
    (2, 4, 1, [[0], [0], [1], [1]]),
    # shorter than L: the last field repeats
    (3, 2, 5, [[0, 1, 2, 2, 2], [0, 1, 2, 2, 2]]),
    (1, 3, 1, [[0], [0], [0]]),
])
def test_centre_sampling_table(n, k, length, expected):
    assert centre_indices(n, k, length).tolist() == expected


def test_train_sampling_table():
    rng = np.random.default_rng(0)
    idx = train_indices(30, 3, 1, rng)
    assert idx.shape == (3, 1)
    assert 0 <= idx[0, 0] < 10 <= idx[1, 0] < 20 <= idx[2, 0] < 30


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 16, 31, 100, 257])
@pytest.mark.parametrize("k", [1, 3, 7, 25])
@pytest.mark.parametrize("length", [1, 5, 10])
def test_sampling_properties(n, k, length):
    rng = np.random.default_rng(n * 1000 + k * 10 + length)
    starts_seen = set()
    for _ in range(200):
        idx = train_indices(n, k, length, rng)
        assert idx.shape == (k, length) and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() < n
        assert np.all(np.diff(idx[:, 0]) >= 0)  # segments in time order
        assert np.all(np.diff(idx, axis=1) <= 1) and np.all(np.diff(idx, axis=1) >= 0)
        starts_seen.update(idx[:, 0].tolist())
    valid = max(n - length + 1, 1)
    if valid >= k and valid // k <= 8:
        # segments partition the valid starts: each start can be drawn
        assert starts_seen == set(range(valid))
    t = centre_indices(n, k, length)
    assert t.min() >= 0 and t.max() < n and t.shape == (k, length)
    assert np.array_equal(t, centre_indices(n, k, length))


def test_train_sampling_is_seeded():
    a = train_indices(100, 3, 5, np.random.default_rng(7))
    b = train_indices(100, 3, 5, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_empty_video_raises():
    with pytest.raises(ValueError, match="0 items"):
        centre_indices(0, 3, 1)
