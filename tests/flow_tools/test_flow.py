import cv2
import numpy as np
import pytest

from flow_tools.errors import UserError
from flow_tools.flow import compute_flow, endpoint_error, read_flo, write_flo
from flow_tools.params import ALGORITHMS, FlowParams
from flow_tools.quantize import dequantize, quantize


def _texture(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 4, w // 4)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_recovers_known_translation(algorithm):
    a = _texture()
    dx, dy = 2.3, -1.6
    # b(x) = a(x - d): content moves by +d, the flow from a to b is d everywhere
    b = cv2.warpAffine(a, np.float32([[1, 0, dx], [0, 1, dy]]), (a.shape[1], a.shape[0]),
                       flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    flow = compute_flow(np.stack([a, b]), algorithm)
    assert flow.shape == (1, 96, 128, 2) and flow.dtype == np.float32
    inner = flow[0, 12:-12, 12:-12]
    epe = np.linalg.norm(inner - np.array([dx, dy]), axis=-1).mean()
    assert epe < 0.5, f"{algorithm}: mean end-point error {epe:.3f} px"


def test_step_and_too_few_frames():
    frames = np.stack([_texture(seed=i) for i in range(5)])
    assert compute_flow(frames, "dis", step=2).shape == (3, 96, 128, 2)
    with pytest.raises(UserError, match="need more than 1 frames"):
        compute_flow(frames[:1], "dis")
    with pytest.raises(UserError, match="unknown flow algorithm"):
        FlowParams("brox")


def test_quantise_jpeg_round_trip_error():
    yy, xx = np.mgrid[0:96, 0:128] / 20.0
    flow = np.stack([6 * np.sin(xx) + 3, 4 * np.cos(yy) - 2], axis=-1).astype(np.float32)
    q = quantize(flow, 20)
    back = np.stack([cv2.imdecode(cv2.imencode(".jpg", q[..., c],
                                               [cv2.IMWRITE_JPEG_QUALITY, 95])[1], 0)
                     for c in range(2)], axis=-1)
    err = np.abs(dequantize(back, 20) - flow)
    assert np.abs(dequantize(q, 20) - flow).max() <= 20 / 255 + 1e-5  # quantisation alone
    assert err.mean() < 0.15 and err.max() < 0.8  # plus JPEG at quality 95


def test_flo_round_trip_and_middlebury_fixture(tmp_path, fixtures):
    f = np.random.default_rng(0).normal(0, 3, (7, 9, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", f)
    assert np.array_equal(read_flo(tmp_path / "a.flo"), f)
    (tmp_path / "bad.flo").write_bytes(b"FLOW" + b"\0" * 8)  # magic is "PIEH"
    with pytest.raises(UserError, match="bad.flo: not a Middlebury .flo"):
        read_flo(tmp_path / "bad.flo")
    d = fixtures / "flow_gt" / "middlebury_RubberWhale"
    gt = read_flo(d / "flow10.flo")
    assert gt.shape == (388, 584, 2)
    unknown = (np.abs(gt) >= 1e9).any(-1).mean()
    assert 0.01 < unknown < 0.025
    a = cv2.imread(str(d / "frame10.png"), 0)
    b = cv2.imread(str(d / "frame11.png"), 0)
    epe, within = endpoint_error(compute_flow(np.stack([a, b]), "dis")[0], gt)
    assert epe < 0.5 and within > 0.8
