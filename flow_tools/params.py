"""The parameters that determine extraction output, as frozen dataclasses recorded in
meta.json (and compared against it on reruns).

A module of its own, with no algorithm code, so every module that needs the parameters
(the OpenCV algorithms, the torch TV-L1, extraction, the data layer) imports them from below
instead of from each other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import UserError
from .quantize import DEFAULT_BOUND

ALGORITHMS = ("tvl1", "dis", "farneback")
BACKENDS = ("opencv", "torch")  # torch: TV-L1 only (flow_tools.tvl1_torch), batched, any device
DIS_PRESET_NAMES = ("ultrafast", "fast", "medium")  # OpenCV's DISOpticalFlow presets
# how the torch backend runs (not recorded: they do not change the output)
FLOW_COMPILE_MODES = ("auto", "on", "off")  # --flow-compile; here, where no torch is loaded
DEFAULT_MEMORY_BUDGET_GB = 4.0  # what --batch-pairs auto may fill on a CPU unless told
FORMAT_VERSION = 1  # of the rawframe output; part of the parameters a rerun must match


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
        if self.dis_preset not in DIS_PRESET_NAMES:
            raise UserError(f"unknown DIS preset {self.dis_preset!r}; choose from "
                            f"{sorted(DIS_PRESET_NAMES)}")
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


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that determines the output files (compared against meta.json on reruns)."""

    flow: FlowParams = FlowParams()
    bound: float = DEFAULT_BOUND
    new_short: int = 0  # resize so the short side is this (0: keep)
    new_size: tuple[int, int] | None = None  # (W, H), overrides new_short
    step: int = 1
    rgb: bool = True
    flow_images: bool = True
    jpeg_quality: int = 95

    @classmethod
    def from_record(cls, rec: dict) -> "ExtractConfig":
        """The inverse of `record`: the configuration some rawframes were made with."""
        return cls(flow=FlowParams.from_record(rec["flow"]) if rec.get("flow") else FlowParams(),
                   bound=float(rec.get("bound", DEFAULT_BOUND)),
                   new_short=int(rec.get("new_short") or 0),
                   new_size=tuple(rec["new_size"]) if rec.get("new_size") else None,
                   step=int(rec.get("step", 1)), rgb=bool(rec.get("rgb", True)),
                   flow_images=bool(rec.get("flow_images", True)),
                   jpeg_quality=int(rec.get("jpeg_quality", 95)))

    def record(self) -> dict:
        """The parameters a rerun must match, as plain JSON."""
        return {"format_version": FORMAT_VERSION,
                "flow": self.flow.record() if self.flow_images else None,
                "bound": self.bound, "new_short": self.new_short,
                "new_size": list(self.new_size) if self.new_size else None, "step": self.step,
                "rgb": self.rgb, "flow_images": self.flow_images,
                "jpeg_quality": self.jpeg_quality}
