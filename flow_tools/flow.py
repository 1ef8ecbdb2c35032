"""Optical-flow algorithms behind one signature, and the Middlebury `.flo` format.

`compute_flow(frames, algorithm) -> float32 [T - step, H, W, 2]` (x, y displacement in px of
frame i+step relative to frame i), for TV-L1 (opencv-contrib's DualTVL1, the two-stream
standard), DIS (fast, with presets) and Farneback. Parameters live in a dataclass so the
extractor records exactly what ran in meta.json.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .errors import UserError

ALGORITHMS = ("tvl1", "dis", "farneback")
BACKENDS = ("opencv", "torch")  # torch: TV-L1 only (flow_tools.tvl1_torch), batched, any device
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass(frozen=True)
class TVL1Params:
    """opencv-contrib DualTVL1 defaults (the values denseflow and most two-stream code use)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5


# Fewer scales, warps and iterations than the defaults: the `cpu-demo` preset's TV-L1, and the
# speed benchmarks' (they need flow images with TV-L1's texture, not its accuracy).
LIGHT_TVL1 = TVL1Params(nscales=3, warps=3, inner_iterations=10, outer_iterations=2,
                        epsilon=0.05)


@dataclass(frozen=True)
class FarnebackParams:
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2


@dataclass(frozen=True)
class FlowParams:
    """Everything that determines the flow images (recorded in meta.json)."""

    algorithm: str = "tvl1"
    tvl1: TVL1Params = field(default_factory=TVL1Params)
    dis_preset: str = "medium"
    farneback: FarnebackParams = field(default_factory=FarnebackParams)
    backend: str = "opencv"

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"unknown flow algorithm {self.algorithm!r}; choose from "
                            f"{ALGORITHMS}")
        if self.dis_preset not in DIS_PRESETS:
            raise UserError(f"unknown DIS preset {self.dis_preset!r}; choose from "
                            f"{sorted(DIS_PRESETS)}")
        if self.backend not in BACKENDS:
            raise UserError(f"unknown flow backend {self.backend!r}; choose from {BACKENDS}")
        if self.backend == "torch" and self.algorithm != "tvl1":
            raise UserError(f"the torch backend computes TV-L1 only, not {self.algorithm!r}; "
                            "use --backend opencv")

    @classmethod
    def from_record(cls, rec: dict) -> "FlowParams":
        """The inverse of `record` (meta.json, a checkpoint's input): what ran, to run again."""
        rec = dict(rec)
        algorithm = rec.pop("algorithm")
        backend = rec.pop("backend", "opencv")
        if algorithm == "tvl1":
            return cls("tvl1", TVL1Params(**rec), backend=backend)
        if algorithm == "dis":
            return cls("dis", dis_preset=rec.get("preset", "medium"), backend=backend)
        return cls(algorithm, farneback=FarnebackParams(**rec), backend=backend)

    def record(self) -> dict:
        """Only the parameters of the chosen algorithm."""
        if self.algorithm == "tvl1":
            # the default backend is left out so rawframes extracted before backends existed
            # still match their parameters
            extra = {} if self.backend == "opencv" else {"backend": self.backend}
            return {"algorithm": "tvl1", **asdict(self.tvl1), **extra}
        if self.algorithm == "dis":
            return {"algorithm": "dis", "preset": self.dis_preset}
        return {"algorithm": "farneback", **asdict(self.farneback)}


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
