"""The small synthetic set most engine tests train on (4 groups of one clip, 8 frames, 48x40):
built once per session by the shared `rawframes_factory`, read-only."""
import pytest

from two_stream.data.synthetic import SyntheticConfig

SMALL = SyntheticConfig(num_groups=4, clips_per_group=1, test_groups=1, num_frames=8,
                        width=48, height=40)


@pytest.fixture(scope="module")
def syn(rawframes_factory):
    """Root of the small set: frames/, splits/, videos/ (test_engine.py has its own `syn`)."""
    return rawframes_factory(SMALL).root
