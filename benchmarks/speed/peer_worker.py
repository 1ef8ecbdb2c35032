"""MMAction2's side of `peer_loader`, run by the peer environment's Python (never ours).

    <peer-venv>/bin/python benchmarks/speed/peer_worker.py

Reads one JSON request per line on stdin and answers one JSON line on stdout (anything the
libraries print goes to stderr), so `peer_loader` keeps one warm process and alternates its
passes with ours. Imports only the standard library, numpy, OpenCV, torch and OpenMMLab's
packages: none of the project's code runs here, and none of MMAction2's in our process.

Requests (`op` plus arguments): `versions`; `setup` (rawframe root, annotation lists);
`time` (modality, batches, seed: samples per wall and per CPU second of the TSN training
pipeline through a DataLoader, 0 workers, batch 8, mmengine's pseudo_collate, as its training
runner feeds the model); `bound` (files, grey: cv2.imdecode rates in this environment);
`flip` (modality, frame dir, frames, out: the deterministic pipeline with Flip off and forced
on, saved to `out` .npz);
`dump` (npz of scores/labels, out .pkl, batch: an MMAction2 1.x `--dump` file);
`fused` (dumps, coefficients, softmax: which videos tie at the top of MMAction2's own
weighted score).
"""
from __future__ import annotations

import json
import os
import sys
import time


def _pipeline(modality: str, train: bool = True, flip_ratio: float = 0.5) -> list:
    """TSN's pipeline as MMAction2's configs write it (RGB: 1 frame per clip; flow: 5)."""
    from mmaction.datasets.transforms import (
        Flip,
        FormatShape,
        MultiScaleCrop,
        PackActionInputs,
        RawFrameDecode,
        Resize,
        SampleFrames,
    )
    clip_len = 1 if modality == "rgb" else 5
    steps = [SampleFrames(clip_len=clip_len, frame_interval=1, num_clips=3, test_mode=not train),
             RawFrameDecode()]
    if train:
        steps.append(MultiScaleCrop(224, (1, .875, .75, .66), random_crop=False,
                                    max_wh_scale_gap=1))
    steps += [Resize(scale=(224, 224), keep_ratio=False), Flip(flip_ratio=flip_ratio),
              FormatShape(input_format="NCHW")]
    return steps + [PackActionInputs()] if train else steps


TEMPLATES = {"rgb": ("img_{:05}.jpg", "RGB"), "flow": ("flow_{}_{:05d}.jpg", "Flow")}
_state: dict = {}


def op_versions() -> dict:
    import importlib.metadata as m

    import cv2
    import numpy
    import torch
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "opencv": cv2.__version__, "numpy": numpy.__version__,
            **{d: m.version(d) for d in ("mmaction2", "mmengine", "mmcv-lite")}}


def op_setup(root: str, ann: dict) -> dict:
    """One RawframeDataset per modality over the annotation lists (`video total label`)."""
    import cv2
    import torch
    from mmaction.datasets import RawframeDataset
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _state["ds"] = {m: RawframeDataset(ann_file=path, pipeline=_pipeline(m),
                                       data_prefix=dict(img=root),
                                       filename_tmpl=TEMPLATES[m][0], modality=TEMPLATES[m][1])
                    for m, path in ann.items()}
    return {"videos": {m: len(ds) for m, ds in _state["ds"].items()},
            "torch_threads": torch.get_num_threads()}


def op_time(modality: str, batches: int, seed: int) -> dict:
    """Training samples per wall / CPU second over `batches` batches of 8 (after one warm-up
    batch)."""
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader
    np.random.seed(seed)  # MMAction2's transforms draw from numpy's global generator
    loader = DataLoader(_state["ds"][modality], batch_size=8, shuffle=True, num_workers=0,
                        collate_fn=pseudo_collate,
                        generator=torch.Generator().manual_seed(seed))
    it = iter(loader)
    shape = tuple(next(it)["inputs"][0].shape)
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for _ in range(batches):
        n += len(next(it)["inputs"])
    return {"samples_per_s": n / (time.perf_counter() - t),
            "samples_per_cpu_s": n / max(time.process_time() - c, 1e-9),
            "samples": n, "shape": shape}


def op_bound(files: list[str], grey: bool) -> dict:
    """JPEGs per wall / CPU second decoded by one thread with this environment's
    cv2.imdecode."""
    import cv2
    import numpy as np
    data = [np.fromfile(f, np.uint8) for f in files]
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    t, c = time.perf_counter(), time.process_time()
    for d in data:
        cv2.imdecode(d, flag)
    return {"jpegs_per_s": len(data) / (time.perf_counter() - t),
            "jpegs_per_cpu_s": len(data) / max(time.process_time() - c, 1e-9)}


def op_flip(modality: str, frame_dir: str, total_frames: int, out: str) -> dict:
    """The test-mode pipeline (no random crop) with Flip(0) and Flip(1): [3, C, 224, 224]
    each, saved as `plain` / `flipped` in `out`, the frame indices with them."""
    import numpy as np
    tmpl, mod = TEMPLATES[modality]
    got = {}
    for name, ratio in (("plain", 0.0), ("flipped", 1.0)):
        r = dict(frame_dir=frame_dir, total_frames=total_frames, label=0, start_index=1,
                 filename_tmpl=tmpl, modality=mod, offset=0)
        for step in _pipeline(modality, train=False, flip_ratio=ratio):
            r = step(r)
        got[name] = np.ascontiguousarray(r["imgs"])
        got["frame_inds"] = np.asarray(r["frame_inds"])
    np.savez(out, **got)
    return {"shape": list(got["plain"].shape), "out": out}


def op_dump(npz: str, out: str, batch: int) -> dict:
    """Our score file's scores as MMAction2 1.x's test loop dumps them (`--dump`, the
    DumpResults metric): `mmengine.dump` of a list of `ActionDataSample.to_dict()`, one per
    video, with `gt_label` int64 [1], `pred_score` float32 [C] and `pred_label` int64 [1];
    as its heads set them, the scores and predictions of a batch are rows (views) of one
    [B, C] / [B, 1] tensor."""
    import mmengine
    import numpy as np
    import torch
    from mmaction.structures import ActionDataSample
    with np.load(npz, allow_pickle=False) as z:
        scores, labels = z["scores"].astype(np.float32), z["labels"].astype(np.int64)
    samples = []
    for start in range(0, len(scores), batch):
        cls_scores = torch.from_numpy(scores[start:start + batch].copy())
        pred_labels = cls_scores.argmax(dim=-1, keepdim=True).detach()
        for score, pred, label in zip(cls_scores, pred_labels, labels[start:start + batch]):
            s = ActionDataSample(metainfo=dict(img_shape=(224, 224)))
            s.set_gt_label(int(label))
            s.set_pred_score(score)
            s.set_pred_label(pred)
            samples.append(s.to_dict())
    mmengine.dump(samples, out)
    return {"videos": len(samples), "keys": sorted(samples[0]), "out": out}


def op_fused(dumps: list[str], coefficients: list[float], softmax: bool) -> dict:
    """Indices of the videos whose top score MMAction2's report_accuracy arithmetic ties
    (its own loading, softmax and get_weighted_score), and which top-5 sets it cuts at a
    tie: on those, the tool's answer depends on argsort's order."""
    import numpy as np
    from mmaction.evaluation.functional import get_weighted_score
    from mmengine import load
    from scipy.special import softmax as sp_softmax
    score_list = [[s["pred_score"].numpy() for s in load(f)] for f in dumps]
    if softmax:
        score_list = [[sp_softmax(s) for s in scores] for scores in score_list]
    fused = np.array(get_weighted_score(score_list, coefficients))
    top = fused.max(axis=1, keepdims=True)
    tied1 = np.flatnonzero((fused == top).sum(axis=1) > 1)
    fifth = -np.sort(-fused, axis=1)[:, 4:5] if fused.shape[1] > 5 else None
    tied5 = ([] if fifth is None else
             np.flatnonzero(((fused > fifth).sum(axis=1) < 5)
                            & ((fused >= fifth).sum(axis=1) > 5)).tolist())
    return {"tied_top1": tied1.tolist(), "tied_top5": tied5}


OPS = {"versions": op_versions, "setup": op_setup, "time": op_time, "bound": op_bound,
       "flip": op_flip, "dump": op_dump, "fused": op_fused}


def serve() -> None:
    """The request loop: answers go to the real stdout, all else to stderr."""
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop("op")
        try:
            res = {"ok": True, **OPS[op](**req)}
        except Exception as e:  # sent back whole: the caller raises it with the request
            import traceback
            res = {"ok": False, "error": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc()}
        answer.write(json.dumps(res) + "\n")
        answer.flush()


if __name__ == "__main__":
    serve()
