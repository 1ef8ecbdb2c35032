"""One parser for `--device`, shared by extraction, training, evaluation and prediction."""
from __future__ import annotations

from .errors import UserError

DEVICE_HELP = "auto | cpu | cuda | cuda:N"


def resolve_device(device: str):
    """`auto` (CUDA when there is a GPU, else the CPU), `cpu`, `cuda` or `cuda:N` as a
    torch.device; anything else (`gpu`, `cuda:x`, `mps`) and CUDA without a GPU (or without
    device N) are user errors. `cuda` keeps index None: the caller picks its process's GPU."""
    import torch
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: expected {DEVICE_HELP}") from None
    if dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index not in (None, 0)):
        raise UserError(f"--device {device!r}: expected {DEVICE_HELP}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine "
                        "(use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev
