"""Is each loader's horizontal flip what it claims? Plane by plane, against its own unflipped
sample of the same frames.

Flow images store horizontal motion as grey levels around 128, so a mirrored flow field's x
plane must also be inverted (v -> 255 - v) and its y plane not. Ours claims exactly that
(`two_stream.data.transforms`). MMAction2 1.x's `Flip._flip_imgs` inverts `imgs[0::2]`, the
comment says "the 1st frame of each 2 frames is flow-x"; but its 1.x RawFrameDecode stacks
x and y into one [H, W, 2] image per frame, so what it inverts is both planes of every other
frame of the sample (counted across all clips: frames 0, 2, 4 of the first 5-frame clip,
frames 1 and 3 of the second), and neither plane of the rest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from two_stream.data.datasets import ClipConfig, VideoDataset
from two_stream.data.splits import VideoRecord
from two_stream.data.transforms import train_sample

MIRROR, INVERTED, OTHER = "mirror", "mirror+invert", "other"
_LABEL = "<U16"  # wide enough for every label (np.full would size the dtype to its fill)
FLIP_CLAIMS = (
    "Each loader's sample of the same frames (the first video, MMAction2's test-mode frame "
    "indices: 3 clips) with its flip off and forced on, compared plane by plane: `mirror` = "
    "the flipped plane is the unflipped one mirrored; `mirror+invert` = mirrored and "
    "inverted (v -> 255 - v). Flow frames are counted within each clip (0-4); channels are "
    "x_0, y_0, x_1, y_1, ... for both. Correct for flow: x inverted at every frame, y at "
    "none. `as claimed`: ours against that; MMAction2 against the behaviour issue 22 found "
    "(both planes of every other frame of the whole sample inverted, none of the others).")


def classify_planes(plain: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """str [K, C]: how each plane of `flipped` uint8 [K, C, H, W] relates to `plain`'s."""
    if plain.shape != flipped.shape:
        raise ValueError(f"shapes differ: {plain.shape} and {flipped.shape}")
    mirrored = plain[..., ::-1]
    same = (flipped == mirrored).all(axis=(2, 3))
    inverted = (flipped == 255 - mirrored).all(axis=(2, 3))
    return np.where(same, MIRROR, np.where(inverted, INVERTED, OTHER))


def correct_flip(modality: str, segments: int, length: int) -> np.ndarray:
    """What a correct flip does to each plane, str [K, C]: RGB mirrored; flow x planes
    (even channels) mirrored and inverted, y planes mirrored."""
    if modality == "rgb":
        return np.full((segments, 3), MIRROR, dtype=_LABEL)
    out = np.full((segments, 2 * length), MIRROR, dtype=_LABEL)
    out[:, 0::2] = INVERTED
    return out


def mmaction2_flip(modality: str, segments: int, length: int) -> np.ndarray:
    """What MMAction2 1.x's Flip does (issue 22): RGB mirrored; flow frames with an even
    index in the whole sample (clip k, frame t: k * length + t) have both planes inverted,
    the others neither."""
    if modality == "rgb":
        return np.full((segments, 3), MIRROR, dtype=_LABEL)
    even = (np.arange(segments)[:, None] * length + np.arange(length)[None, :]) % 2 == 0
    return np.repeat(np.where(even, INVERTED, MIRROR), 2, axis=1)


def describe(labels: np.ndarray, modality: str) -> list[dict]:
    """One dict per clip: the frames whose x / y planes (flow) or the channels (RGB) are
    inverted, and any plane that is not even mirrored."""
    rows = []
    for k, clip in enumerate(labels):
        def listed(where: np.ndarray) -> str:
            return ", ".join(map(str, np.flatnonzero(where))) or "none"

        row = {"clip": k, "channels not mirrored": listed(clip == OTHER)}
        flow = modality == "flow"
        row["x planes inverted at frames"] = listed(clip[0::2] == INVERTED) if flow else "-"
        row["y planes inverted at frames"] = listed(clip[1::2] == INVERTED) if flow else "-"
        row["RGB channels inverted"] = "-" if flow else listed(clip == INVERTED)
        rows.append(row)
    return rows


def our_pair(ds: VideoDataset, record: VideoRecord, idx: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Our training transform of the frames at `idx` [K, L], unflipped and flipped, with the
    same crop: the first seed whose flip draw comes out true."""
    c = ds.clip
    snippets = ds.snippets(record, idx)
    for seed in range(64):
        plain = train_sample(snippets, c.modality, c.input_size, np.random.default_rng(seed),
                             c.scales, flip=False, bgr=True).numpy()
        flipped = train_sample(snippets, c.modality, c.input_size, np.random.default_rng(seed),
                               c.scales, flip=True, bgr=True).numpy()
        if not np.array_equal(plain, flipped):
            return plain, flipped
    raise RuntimeError("64 seeds and no flip drawn: the transform ignores flip=True")


def flip_table(worker, src, records: list[VideoRecord], tmp: Path
               ) -> tuple[pd.DataFrame, bool]:
    """Rows per (modality, loader, clip) and whether every loader did what it claims."""
    rows, ok = [], True
    record = records[0]
    for m, length in (("rgb", 1), ("flow", 5)):
        total = record.num_frames if m == "rgb" else record.num_flows
        out = tmp / f"flip_{m}.npz"
        worker.call("flip", modality=m, frame_dir=str(Path(src.root).resolve() / record.video_id),
                    total_frames=total, out=str(out))
        with np.load(out) as z:
            theirs = z["plain"], z["flipped"]
            idx = z["frame_inds"].astype(np.int64).reshape(3, length) - 1  # 1-based on disk
        clip = ClipConfig(modality=m, new_length=length, input_size=224)
        ours = our_pair(VideoDataset([record], src, clip, train=True), record, idx)
        for name, pair, claim in (("two-stream", ours, correct_flip(m, 3, length)),
                                  ("MMAction2 1.2.0", theirs, mmaction2_flip(m, 3, length))):
            labels = classify_planes(*pair)
            held = bool((labels == claim).all())
            ok &= held
            correct = bool((labels == correct_flip(m, 3, length)).all())
            for r in describe(labels, m):
                rows.append({"modality": m, "loader": name, **r, "correct": correct,
                             "as claimed": held})
    return pd.DataFrame(rows), ok
