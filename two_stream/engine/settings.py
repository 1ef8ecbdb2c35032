"""Device and precision settings of training and evaluation: AMP dtype, channels_last, where
JPEGs are decoded, cuDNN algorithm choice. Each reads the run's flags and the device, so
training and evaluation make the same choice from the same config."""
from __future__ import annotations

import contextlib

import torch

from ..config import DataConfig, RunConfig
from ..data.frames import RawframeSource
from ..errors import UserError


def native_bf16(device: torch.device) -> bool:
    """bf16 runs natively on this CUDA device: compute capability >= 8.0 (Ampere on).
    `torch.cuda.is_bf16_supported()` is also true where bf16 is only emulated, and slow."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def amp_settings(run: RunConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler). `--amp auto`: off on a CPU; on CUDA bf16
    where it is native, else fp16 with a gradient scaler."""
    mode = run.amp
    if mode == "auto":
        mode = ("bf16" if native_bf16(device) else "fp16") if device.type == "cuda" else "off"
    if mode == "off":
        return None, False
    if mode == "fp16" and device.type != "cuda":
        raise UserError("--amp fp16 needs CUDA; use bf16 or off on CPU")
    return (torch.bfloat16 if mode == "bf16" else torch.float16), mode == "fp16"


def decode_mode(d: DataConfig, device: torch.device, source) -> str:
    """`--decode`: auto decodes on the GPU when there is one and the frames are JPEGs."""
    if d.decode != "auto":
        return d.decode
    return "gpu" if device.type == "cuda" and isinstance(source, RawframeSource) else "cpu"


def use_channels_last(run: RunConfig, device: torch.device) -> bool:
    """NHWC for weights and inputs: `on`, or `auto` on CUDA (where tensor cores gain)."""
    return run.channels_last == "on" or (run.channels_last == "auto" and device.type == "cuda")


def configure_cudnn(run: RunConfig, device: torch.device) -> None:
    """On CUDA: the fastest convolution algorithms (cudnn.benchmark), unless --deterministic.
    Global torch state: set once per training run."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not run.deterministic
        torch.backends.cudnn.deterministic = run.deterministic


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype`, or a no-op context for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
