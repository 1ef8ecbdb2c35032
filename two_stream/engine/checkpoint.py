"""Checkpoints: plain dicts of tensors and built-in types, written atomically.

They load with `torch.load(path, weights_only=True)` (no pickled Namespace or dataclass) and
rebuild their model on their own: the resolved config travels inside as plain JSON types.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import UserError

CHECKPOINT_KEYS = frozenset({"model", "config", "classes", "epoch"})


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a checkpoint."""
    tmp = atomic_path(path)
    torch.save(state, tmp)
    os.replace(tmp, path)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder's best (else last) checkpoint."""
    p = Path(path)
    if p.is_dir():
        for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
            if (p / name).exists():
                return p / name
        raise UserError(f"{p}: no checkpoint_best.pt or checkpoint_last.pt; train first or "
                        "pass a checkpoint file")
    return p


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint of ours, or a UserError naming the file (missing, truncated, not ours)."""
    if not Path(path).is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise UserError(f"{path}: cannot load as a checkpoint ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else 'empty'})"
                        ) from None
    missing = CHECKPOINT_KEYS - set(ck) if isinstance(ck, dict) else CHECKPOINT_KEYS
    if missing:
        raise UserError(f"{path}: not a two_stream checkpoint (missing {sorted(missing)}); "
                        "for a weights file use --weights")
    return ck


def rng_state() -> dict:
    """Python, numpy and torch generator states as tensors / built-ins."""
    np_state = np.random.get_state()
    return {"python": list(random.getstate()[1]), "python_pos": random.getstate()[2],
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32),
                         state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
