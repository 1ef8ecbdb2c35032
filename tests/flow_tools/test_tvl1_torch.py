"""The PyTorch TV-L1 backend: known motions, batch = single calls, agreement with OpenCV's
TV-L1 on real footage, and the extractor's torch path."""
import json

import cv2
import numpy as np
import pytest
import torch

from flow_tools.errors import UserError
from flow_tools.extract import main
from flow_tools.extraction import extract_all
from flow_tools.flow import compute_flow, make_flow_fn
from flow_tools.params import ExtractConfig, FlowParams, TVL1Params
from flow_tools.quantize import quantize
from flow_tools.tvl1_torch import (
    centered_gradient,
    divergence,
    forward_gradient,
    median_filter,
    pyramid_sizes,
    resize_linear,
    tvl1,
)

FAST = TVL1Params(nscales=3, warps=3, outer_iterations=3)  # keeps CPU tests short


def _texture(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 4, w // 4)).astype(np.float32)
    img = cv2.GaussianBlur(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _moved(a, matrix):
    return cv2.warpAffine(a, np.float32(matrix), (a.shape[1], a.shape[0]),
                          flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_primitives_match_opencv():
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 255, (37, 53)).astype(np.float32)
    t = torch.from_numpy(img)[None]
    # OpenCV's bilinear resize by a scale factor, and to a given size
    ref = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    assert pyramid_sizes(37, 53, TVL1Params(nscales=2))[1] == ref.shape
    ours = resize_linear(t, ref.shape, (1 / 0.8, 1 / 0.8))[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    up = cv2.resize(img, (70, 50), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resize_linear(t, (50, 70), (37 / 50, 53 / 70))[0].numpy(), up,
                               atol=1e-3)
    # 5x5 median with replicated borders
    np.testing.assert_array_equal(median_filter(t[None], 5)[0, 0].numpy(),
                                  cv2.medianBlur(img, 5))
    # divergence is minus the adjoint of the forward gradient: <grad u, p> = -<u, div p>
    u, p = torch.randn(1, 9, 11, dtype=torch.float64), torch.randn(1, 2, 9, 11, dtype=torch.float64)
    p[..., 0, :, -1] = 0  # the dual field vanishes where the gradient is zero by definition
    p[..., 1, -1, :] = 0
    assert torch.allclose((forward_gradient(u) * p).sum(), -(u * divergence(p)).sum())
    dx, dy = centered_gradient(t)
    assert dx[0, 5, 0] == 0.5 * (t[0, 5, 1] - t[0, 5, 0])
    assert dy[0, 3, 7] == 0.5 * (t[0, 4, 7] - t[0, 2, 7])


@pytest.mark.parametrize("kind", ["translation", "rotation"])
def test_recovers_known_motion(kind):
    a = _texture()
    h, w = a.shape
    if kind == "translation":
        m = [[1, 0, 1.7], [0, 1, -0.8]]
    else:  # 2 degrees about the centre
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), 2.0, 1.0)
    b = _moved(a, m)  # b(x) = a(M^-1 x): the flow at x is M x - x
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    m = np.float32(m)
    truth = np.stack([m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - xs,
                      m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - ys], -1)
    flow = tvl1(torch.from_numpy(a)[None], torch.from_numpy(b)[None]).numpy()[0]
    err = np.linalg.norm(flow - truth, axis=-1)[8:-8, 8:-8]
    assert flow.shape == (h, w, 2) and err.mean() < 0.15, f"{kind}: {err.mean():.3f} px"


def test_batch_equals_single_calls():
    frames = [_texture(seed=s) for s in range(3)]
    prev = np.stack(frames)
    nxt = np.stack([_moved(frames[0], [[1, 0, 0.5], [0, 1, 0]]),  # converges fast
                    _moved(frames[1], [[1, 0, 3.0], [0, 1, 2.0]]),  # needs more iterations
                    frames[2]])  # no motion at all
    batch = tvl1(torch.from_numpy(prev), torch.from_numpy(nxt), FAST)
    for i in range(3):
        single = tvl1(torch.from_numpy(prev[i:i + 1]), torch.from_numpy(nxt[i:i + 1]), FAST)
        assert (batch[i] - single[0]).abs().max() < 1e-4


def _encoded(flows):
    """[N, H, W, 2] px -> grey levels after quantisation and a JPEG round trip."""
    q = quantize(flows)
    return np.stack([np.stack([cv2.imdecode(cv2.imencode(".jpg", f[..., k],
                                                         [cv2.IMWRITE_JPEG_QUALITY, 95])[1], 0)
                               for k in range(2)], -1) for f in q]).astype(int)


def test_agrees_with_opencv_on_a_real_clip(fixtures):
    """Same parameters (OpenCV's defaults), short side 128, after the bound-20 JPEG
    quantisation: both components within 3 grey levels (0.5 px) on >= 90 % of the moving
    pixels and >= 97 % of all pixels."""
    cap = cv2.VideoCapture(str(fixtures / "videos/ucf101/v_TennisSwing_g14_c03.avi"))
    grey = []
    for _ in range(3):
        ok, f = cap.read()
        assert ok
        f = cv2.resize(f, (171, 128), interpolation=cv2.INTER_AREA)
        grey.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    grey = np.stack(grey)
    fn = make_flow_fn(FlowParams("tvl1"))
    ref = np.stack([fn(grey[i], grey[i + 1]) for i in range(2)])
    ours = compute_flow(grey, FlowParams("tvl1", backend="torch"), batch_pairs=2)
    agree = (np.abs(_encoded(ref) - _encoded(ours)) <= 3).all(-1)
    moving = np.linalg.norm(ref, axis=-1) > 1
    assert moving.mean() > 0.01
    assert agree[moving].mean() >= 0.90 and agree.mean() >= 0.97, \
        (agree[moving].mean(), agree.mean())


def test_extract_cli_torch_backend_writes_the_same_layout(tmp_path):
    from two_stream.data.synthetic import SyntheticConfig, generate
    generate(tmp_path / "syn", SyntheticConfig(num_groups=2, clips_per_group=1, test_groups=1,
                                               num_frames=6, width=48, height=32), quiet=True)
    videos = tmp_path / "syn" / "videos"
    (tmp_path / "list.txt").write_text("MoveUp/v_MoveUp_g01_c01.avi\nGrow/v_Grow_g02_c01.avi\n")
    common = [str(videos), "--list", str(tmp_path / "list.txt"), "--tvl1-nscales", "2",
              "--tvl1-warps", "2", "--tvl1-outer-iterations", "2", "--quiet"]
    assert main([common[0], str(tmp_path / "cv"), *common[1:]]) == 0
    assert main([common[0], str(tmp_path / "pt"), *common[1:], "--backend", "torch",
                 "--device", "cpu", "--batch-pairs", "4"]) == 0
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert files(tmp_path / "cv") == files(tmp_path / "pt")
    for vid in ("MoveUp/v_MoveUp_g01_c01", "Grow/v_Grow_g02_c01"):
        a = json.loads((tmp_path / "cv" / vid / "meta.json").read_text())
        b = json.loads((tmp_path / "pt" / vid / "meta.json").read_text())
        assert b["flow_backend"]["backend"] == "torch" and b["flow_backend"]["device_type"] == "cpu"
        assert b["params"]["flow"].pop("backend") == "torch"
        assert a["params"] == b["params"]
        assert (a["num_frames"], a["num_flows"]) == (b["num_frames"], b["num_flows"]) == (6, 5)
        # RGB frames are the same bytes; flow images agree within the JPEG tolerance
        assert (tmp_path / "cv" / vid / "img_00003.jpg").read_bytes() == \
               (tmp_path / "pt" / vid / "img_00003.jpg").read_bytes()
        x_cv = cv2.imread(str(tmp_path / "cv" / vid / "flow_x_00002.jpg"), 0).astype(int)
        x_pt = cv2.imread(str(tmp_path / "pt" / vid / "flow_x_00002.jpg"), 0).astype(int)
        assert (np.abs(x_cv - x_pt) <= 3).mean() > 0.97
    # a rerun with the torch backend skips everything
    s = extract_all(videos, tmp_path / "pt", ExtractConfig(flow=FlowParams(
        "tvl1", TVL1Params(nscales=2, warps=2, outer_iterations=2), backend="torch")),
        ["MoveUp/v_MoveUp_g01_c01.avi"], quiet=True)
    assert (s.done, s.skipped) == (0, 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    rc = main([str(tmp_path / "in"), str(tmp_path / "out"), "--backend", "torch", "--device",
               "cuda"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("error: --device cuda: CUDA is not available on this machine "
                               "(use --device cpu)")
    with pytest.raises(UserError, match="computes TV-L1 only"):
        FlowParams("dis", backend="torch")
