"""Optical-flow algorithms behind one signature, and the Middlebury `.flo` format.

`compute_flow(frames, algorithm) -> float32 [T - step, H, W, 2]` (x, y displacement in px of
frame i+step relative to frame i), for TV-L1 (opencv-contrib's DualTVL1, the two-stream
standard), DIS (fast, with presets) and Farneback. Their parameters are the dataclasses of
`flow_tools.params`, so the extractor records exactly what ran in meta.json.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import UserError
from .params import (
    FlowParams,
)

DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def make_flow_fn(params: FlowParams):
    """A function (prev_grey, next_grey) uint8 [H, W] -> float32 [H, W, 2]."""
    if params.algorithm == "tvl1":
        p = params.tvl1
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(
            tau=p.tau, lambda_=p.lambda_, theta=p.theta, nscales=p.nscales, warps=p.warps,
            epsilon=p.epsilon, innnerIterations=p.inner_iterations,
            outerIterations=p.outer_iterations, scaleStep=p.scale_step, gamma=p.gamma,
            medianFiltering=p.median_filtering)
        return lambda a, b: tvl1.calc(a, b, None)
    if params.algorithm == "dis":
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[params.dis_preset])
        return lambda a, b: dis.calc(a, b, None)
    f = params.farneback
    return lambda a, b: cv2.calcOpticalFlowFarneback(
        a, b, None, f.pyr_scale, f.levels, f.winsize, f.iterations, f.poly_n, f.poly_sigma, 0)


def to_grey(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB (or already [T, H, W]) -> uint8 [T, H, W]."""
    if frames.ndim == 3:
        return frames
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def compute_flow(frames: np.ndarray, algorithm: str | FlowParams = "tvl1", step: int = 1,
                 device: str = "cpu", batch_pairs: int = 16) -> np.ndarray:
    """Flow between frames i and i+step: float32 [T - step, H, W, 2] (x, y in px).

    With `FlowParams(backend="torch")` the pairs run `batch_pairs` at a time on `device`.
    """
    params = algorithm if isinstance(algorithm, FlowParams) else FlowParams(algorithm)
    grey = to_grey(np.asarray(frames))
    if len(grey) <= step:
        raise UserError(f"need more than {step} frames for flow with step {step}, "
                        f"got {len(grey)}")
    return pair_flows(grey[:-step], grey[step:], params, device, batch_pairs)


def pair_flows(prev: np.ndarray, nxt: np.ndarray, params: FlowParams, device: str = "cpu",
               batch_pairs: int = 16) -> np.ndarray:
    """Flow from each prev[i] to nxt[i] (grey uint8 [N, H, W]): float32 [N, H, W, 2]."""
    if params.backend == "torch":
        import torch

        from .device import resolve_device
        from .tvl1_torch import tvl1
        dev = resolve_device(device)
        a = torch.from_numpy(np.ascontiguousarray(prev))
        b = torch.from_numpy(np.ascontiguousarray(nxt))
        out = [tvl1(a[i:i + batch_pairs], b[i:i + batch_pairs], params.tvl1, dev).cpu()
               for i in range(0, len(a), batch_pairs)]
        return torch.cat(out).numpy().astype(np.float32)
    fn = make_flow_fn(params)
    return np.stack([fn(x, y) for x, y in zip(prev, nxt)]).astype(np.float32)


# --- Middlebury .flo -----------------------------------------------------------------------

FLO_MAGIC = 202021.25
UNKNOWN_FLOW = 1e9


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Middlebury `.flo`: float32 [H, W, 2]; values above 1e9 mark unknown flow."""
    try:
        raw = open(path, "rb").read()
    except FileNotFoundError:
        raise UserError(f"{path}: .flo file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) < 12 or np.frombuffer(raw[:4], np.float32)[0] != FLO_MAGIC:
        raise UserError(f"{path}: not a Middlebury .flo file (bad magic number)")
    w, h = (int(v) for v in np.frombuffer(raw[4:12], np.int32))
    if not (0 < w < 100_000 and 0 < h < 100_000):
        raise UserError(f"{path}: invalid .flo size {w}x{h}")
    data = np.frombuffer(raw[12:12 + 8 * w * h], np.float32)
    if data.size != 2 * w * h:
        raise UserError(f"{path}: truncated .flo file ({data.size} of {2 * w * h} values)")
    if np.isnan(data).any():
        raise UserError(f"{path}: .flo file holds NaN values")
    return data.reshape(h, w, 2).copy()


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    h, w = flow.shape[:2]
    with open(path, "wb") as f:
        np.array([FLO_MAGIC], np.float32).tofile(f)
        np.array([w, h], np.int32).tofile(f)
        np.asarray(flow, np.float32).tofile(f)


def endpoint_error(flow: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mean end-point error in px, share of pixels within 0.5 px) over known pixels."""
    valid = np.all(np.abs(truth) < UNKNOWN_FLOW, axis=-1)
    epe = np.linalg.norm(flow - truth, axis=-1)[valid]
    return float(epe.mean()), float((epe < 0.5).mean())
