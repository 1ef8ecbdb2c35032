"""The fixture guard itself: a missing ../shared skips locally and fails under CI."""
import pytest
from helpers.real_fixtures import fixtures_missing


def test_missing_fixtures_skip_locally_and_fail_under_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert "not found" in fixtures_missing(tmp_path / "nowhere")
    assert fixtures_missing(tmp_path) is None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but real fixtures not found"):
        fixtures_missing(tmp_path / "nowhere")


def test_the_shared_tiny_set_is_built_once(tiny, rawframes_factory):
    assert rawframes_factory() is tiny  # the same folder for every module of the session
    assert (tiny.splits / "classInd.txt").exists() and (tiny.root / "synthetic.json").exists()
    video = "Grow/v_Grow_g01_c01"
    assert (tiny.videos / f"{video}.avi").exists() and (tiny.frames / video / "meta.json").exists()
    assert len(list((tiny.frames / video).glob("flow_x_*.jpg"))) == tiny.config.num_frames - 1


def test_other_sizes_are_their_own_set(rawframes_factory, tiny):
    from two_stream.data.synthetic import SyntheticConfig
    small = SyntheticConfig(num_groups=2, clips_per_group=1, test_groups=1, num_frames=6,
                            width=32, height=24)
    a = rawframes_factory(small, new_short=16)
    assert a is rawframes_factory(small, new_short=16) and a.root != tiny.root
    assert a.config == small


# the two tests below run in this order: the first changes the global, the second sees it reset
def test_training_may_switch_cudnn_benchmark_on():
    import torch
    torch.backends.cudnn.benchmark = True


def test_the_next_test_sees_cudnn_benchmark_restored():
    import torch
    assert torch.backends.cudnn.benchmark is False
