from pathlib import Path

import pytest
from helpers.data import TinySet, tiny_set
from helpers.real_fixtures import FIXTURES, fixtures_missing

from two_stream.data.synthetic import SyntheticConfig


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real files in ../shared/fixtures; tests that need them skip when it is absent,
    and fail under CI."""
    reason = fixtures_missing()
    if reason:
        pytest.skip(reason)
    return FIXTURES


# --- the shared tiny data set -------------------------------------------------------------
# One synthetic set with DIS rawframes, built once per test session (generation and
# extraction are the slow part of a data test); tests read it and never write into it.
TINY = SyntheticConfig(num_groups=4, clips_per_group=2, test_groups=1, num_frames=12,
                       width=64, height=48)


@pytest.fixture(scope="session")
def rawframes_factory(tmp_path_factory):
    """`make(cfg=TINY, **extract) -> TinySet`: a synthetic set with other sizes, or rawframes
    with other ExtractConfig fields (e.g. new_short=48), built once per session per set of
    arguments."""
    built: dict[tuple, TinySet] = {}

    def make(cfg: SyntheticConfig = TINY, **extract) -> TinySet:
        key = (cfg, tuple(sorted(extract.items())))
        if key not in built:
            built[key] = tiny_set(tmp_path_factory.mktemp("tiny_set"), cfg, **extract)
        return built[key]
    return make


@pytest.fixture(scope="session")
def tiny(rawframes_factory) -> TinySet:
    """The shared tiny set (`TINY`): `.root` (videos/, splits/), `.videos`, `.splits`,
    `.frames` (rawframes with DIS flow), `.config`. Read-only."""
    return rawframes_factory()


@pytest.fixture(autouse=True)
def _restore_cudnn_benchmark():
    """Training sets torch.backends.cudnn.benchmark process-wide; put it back after each
    test so no test sees another's setting. (torch is imported only if a test did.)"""
    import sys
    torch = sys.modules.get("torch")
    before = torch.backends.cudnn.benchmark if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.backends.cudnn.benchmark = bool(before) if before is not None else False
