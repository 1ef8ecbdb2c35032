"""One parser for `--device`, shared by extraction, training, evaluation and prediction."""
from __future__ import annotations

from .errors import UserError


def resolve_device(device: str):
    """`cpu`, `cuda` or `cuda:N` as a torch.device; CUDA without a GPU is a user error."""
    import torch
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine "
                        "(use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev
