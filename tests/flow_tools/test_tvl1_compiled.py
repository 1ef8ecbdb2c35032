"""The compiled TV-L1 path: same flow as the eager reference, a short batch without a
recompile, and a one-line fallback where the machine cannot compile. Tests that compile are
`slow` (inductor needs one to two minutes on 2 loaded cores; a warm cache a few seconds)."""
import logging

import cv2
import numpy as np
import pytest
import torch

from flow_tools import tvl1_step
from flow_tools.errors import UserError
from flow_tools.params import TVL1Params
from flow_tools.quantize import quantize
from flow_tools.tvl1_torch import resolve_flow_compile, tvl1
from two_stream.data.frames import read_video_frames

ONE_LEVEL = TVL1Params(nscales=1, warps=2, outer_iterations=3, inner_iterations=10)
CLIPS = ["ucf101/v_TennisSwing_g14_c03.avi", "ucf101/v_Diving_g03_c07.avi",
         "hmdb51/TrumanShow_wave_f_nm_np1_fr_med_26.avi"]


def _grey(path, n, size):
    frames = read_video_frames(path, np.arange(n))
    return np.stack([cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_RGB2GRAY) for f in frames])


def _within_one_level(a: torch.Tensor, b: torch.Tensor) -> float:
    qa, qb = quantize(a.numpy()).astype(int), quantize(b.numpy()).astype(int)
    return float((np.abs(qa - qb) <= 1).all(-1).mean())


@pytest.mark.parametrize("mode,interactive,expected", [
    ("off", False, False), ("off", True, False), ("on", False, True), ("on", True, True),
    ("auto", False, True),  # extraction compiles on any device
    ("auto", True, False),  # live / predict on a CPU would compile before the first frame
])
def test_resolve_flow_compile_on_cpu(mode, interactive, expected, monkeypatch):
    monkeypatch.setattr(tvl1_step.shutil, "which", lambda name: "/usr/bin/" + name)
    assert resolve_flow_compile(mode, "cpu", interactive=interactive) is expected
    with pytest.raises(UserError, match="--flow-compile 'yes': choose from auto, on, off"):
        resolve_flow_compile("yes", "cpu", interactive=interactive)


def test_without_a_compiler_it_says_so_in_one_line(monkeypatch, caplog):
    monkeypatch.setattr(tvl1_step.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="flow_tools.tvl1_step"):
        assert resolve_flow_compile("on", "cpu", interactive=False) is False
        assert resolve_flow_compile("off", "cpu", interactive=False) is False
    assert [r.getMessage() for r in caplog.records] == [
        "TV-L1: not compiling (--flow-compile on): no C++ compiler (g++, c++ or clang++) on "
        "the PATH; running the eager code"]


def test_a_failing_compile_falls_back_to_the_eager_result(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise torch._inductor.exc.CppCompileError(["g++", "x.cpp"], "fatal error: no space")
    monkeypatch.setattr(tvl1_step, "run_compiled", broken)
    monkeypatch.setattr(tvl1_step, "_broken", [])
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.integers(0, 255, (2, 24, 30), dtype=np.uint8))
    b = torch.roll(a, 1, dims=2)
    with caplog.at_level(logging.WARNING, logger="flow_tools.tvl1_step"):
        got = [tvl1(a, b, ONE_LEVEL, compiled=True) for _ in range(2)]
    assert all(torch.equal(g, tvl1(a, b, ONE_LEVEL)) for g in got)
    assert len(caplog.records) == 1 and "torch.compile failed (CppCompileError" in \
        caplog.records[0].getMessage()


@pytest.mark.slow
def test_compiled_equals_eager_and_a_short_batch_does_not_recompile(fixtures):
    """Tiny real frames, one level: compiled flow within 1 grey level of the eager flow on
    >= 99.9 % of pixels; a shorter batch of the same frame size reuses the graphs."""
    grey = _grey(fixtures / "videos" / CLIPS[0], 5, (64, 48))
    a, b = torch.from_numpy(grey[:-1]), torch.from_numpy(grey[1:])
    eager, comp = tvl1(a, b, ONE_LEVEL), tvl1(a, b, ONE_LEVEL, compiled=True)
    assert _within_one_level(eager, comp) >= 0.999
    assert (eager - comp).abs().max() < 0.05
    with torch.compiler.set_stance("fail_on_recompile"):
        short = tvl1(a[:2], b[:2], ONE_LEVEL, compiled=True)
    assert _within_one_level(eager[:2], short) >= 0.999


@pytest.mark.slow
def test_compiled_agrees_with_eager_on_real_clips(fixtures):
    """OpenCV's default parameters (5 levels), short side 128, 3 real clips x 2 pairs."""
    eagers, comps = [], []
    for clip in CLIPS:
        grey = torch.from_numpy(_grey(fixtures / "videos" / clip, 3, (171, 128)))
        eagers.append(tvl1(grey[:-1], grey[1:]))
        comps.append(tvl1(grey[:-1], grey[1:], compiled=True))
    assert _within_one_level(torch.cat(eagers), torch.cat(comps)) >= 0.999
