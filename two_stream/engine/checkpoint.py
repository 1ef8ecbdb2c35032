"""Checkpoints and run identity: plain dicts of tensors and built-in types, written atomically.

They load with `torch.load(path, weights_only=True)` (no pickled Namespace or dataclass) and
rebuild their model on their own: the resolved config travels inside as plain JSON types
(`Config.to_dict`). A run's identity (`run_identity`) is the part of its config that makes it
another run; `--resume` and the suite compare it before reusing a checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, atomic_replace
from ..config import Config
from ..data.build import Data
from ..data.frames import RawframeSource, read_meta
from ..errors import UserError
from ..models.tsn import TSN
from ..report import sha256
from ..runlock import acquire
from . import distributed as dist

CHECKPOINT_KEYS = frozenset({"model", "config", "classes", "epoch"})


def run_lock(run_dir: Path, what: str):
    """The run directory's lock (two_stream.runlock: one writer per run directory), taken by
    rank 0 for the job; a no-op context on the other ranks."""
    if not dist.is_main():
        return contextlib.nullcontext()
    return acquire(run_dir, what=f"run directory ({what})")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a checkpoint."""
    tmp = atomic_path(path)
    torch.save(state, tmp)
    atomic_replace(tmp, path)


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


# --- run identity ---------------------------------------------------------------------------

# what a run is: changing any of these makes another run (not workers, devices, test protocol)
_NOT_IDENTITY = {"data": {"workers", "eval_batch_size", "decode"},
                 "clip": {"test_segments", "test_crops", "average_views"},
                 "model": {"num_classes"},  # derived from the split (part of data)
                 "optim": {"epochs"}}


def weights_digest(weights: str) -> str | None:
    """SHA-256 of a `--weights PATH` file (None for none / imagenet / a missing file): a run
    that starts from a retrained checkpoint under the same path is another run."""
    if weights in ("", "none", "imagenet") or not Path(weights).is_file():
        return None
    return sha256(weights)


def saved_config(ck: dict) -> dict:
    """A checkpoint's config with the digest of the weights file it started from."""
    return {**ck["config"], "weights_sha256": ck.get("weights_sha256")}


def run_identity(config: Config | dict) -> dict:
    """The fields of a saved or requested config (a Config or its `to_dict` form) that define
    a run: data, clip, model, optim, the seed and the digest of the weights file it starts from
    (a saved config carries it as `weights_sha256`, see `saved_config`), as JSON values."""
    if isinstance(config, Config):
        config = {**config.to_dict()}
    out = {}
    for concern in ("data", "clip", "model", "optim"):
        out[concern] = {k: v for k, v in config[concern].items()
                        if k not in _NOT_IDENTITY.get(concern, set())}
    # settings of a head the run does not use change nothing
    consensus = out["model"].get("consensus")
    for k in list(out["model"]):
        if (k.startswith("lstm_") and consensus != "lstm") or (
                k == "topk_segments" and consensus != "topk"):
            del out["model"][k]
    out["seed"] = config["run"]["seed"]
    out["weights_sha256"] = (config["weights_sha256"] if "weights_sha256" in config
                             else weights_digest(str(out["model"].get("weights", "none"))))
    return json.loads(json.dumps(out, default=list))


def identity_diff(saved: Config | dict, requested: Config | dict) -> str:
    """'' when the two configs define the same run, else the differing fields (a: old -> new)."""
    a, b = run_identity(saved), run_identity(requested)
    diffs = []
    for concern in ("data", "clip", "model", "optim"):
        for k in sorted(set(a[concern]) | set(b[concern])):
            if a[concern].get(k) != b[concern].get(k):
                diffs.append(f"{concern}.{k}: {a[concern].get(k)!r} -> {b[concern].get(k)!r}")
    for k in ("seed", "weights_sha256"):
        if a[k] != b[k]:
            diffs.append(f"{k}: {str(a[k])[:12]} -> {str(b[k])[:12]}")
    return ", ".join(diffs)


# --- training state -------------------------------------------------------------------------

def checkpoint_state(*, model, opt, scheduler, scaler, epoch: int, step: int, best: float,
                     cfg: Config, classes: list[str], input_meta: dict | None = None,
                     weights_sha256: str | None = None) -> dict:
    """Everything `--resume` needs and everything inference needs, as plain types."""
    core = model.module if hasattr(model, "module") else model
    state = {"model": core.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
             "epoch": epoch, "step": step, "best_val_top1": float(best), "rng": rng_state(),
             "config": cfg.to_dict(),
             "classes": list(classes), "weights_sha256": weights_sha256}
    if input_meta:
        state["input"] = input_meta
    return state


def restore_training_state(ck: dict, *, model, opt, scheduler, scaler) -> None:
    """Load a checkpoint's weights, optimiser, schedule and gradient-scaler states. A run saved
    with bf16 or AMP off has an empty scaler state: resumed under `--amp fp16` the scaler then
    starts fresh (its initial scale), as at the start of any fp16 run."""
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    if ck.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(ck["scaler"])


def rawframe_input(data: Data) -> dict | None:
    """How the training rawframes were made (extraction parameters, bound, frame size, from a
    training video's meta.json): inference recomputes its input exactly so. None when the
    frames have no meta.json (another extractor) or come straight from videos."""
    if not isinstance(data.source, RawframeSource) or not data.train:
        return None
    meta = read_meta(data.source.root / data.train[0].video_id)
    if meta is None or "params" not in meta:
        return None
    return json.loads(json.dumps({"extraction": meta["params"], "bound": meta.get("bound"),
                                  "width": meta.get("width"), "height": meta.get("height"),
                                  "flow_backend": meta.get("flow_backend")}))


def build_model_from_checkpoint(ck: dict) -> TSN:
    """Rebuild the network a checkpoint was trained as, from its own config."""
    m = Config.from_dict(ck["config"]).model
    model = TSN(dataclasses.replace(m, weights="none"))
    model.load_state_dict(ck["model"])
    return model
