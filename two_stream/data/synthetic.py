"""Synthetic action videos that make the two-stream idea visible, in the UCF101 layout.

Half of the classes differ only in appearance: an object of one colour drifting at random
(the colours have equal luma, so the grey images that optical flow is computed on look the
same in every colour class: motion alone cannot tell them apart). The other half differ only
in motion: the same neutral-grey object moving up or down, growing or shrinking, swinging
horizontally or vertically (a single frame cannot tell a pair apart). Motions are chosen to be
invariant under the horizontal flip used in training (no left/right or clockwise classes).
Textured backgrounds shared by a group (`gNN`, as UCF101's actor/background groups), random
size, position and speed, frame noise and camera jitter keep it from being trivial.

Output: `<out>/videos/<Class>/v_<Class>_gGG_cCC.avi` (MJPG), `<out>/splits/classInd.txt`,
`trainlist0N.txt`, `testlist0N.txt` for three group-disjoint splits as UCF101's (split N tests
the N-th block of `test_groups` groups: 1-3, 4-6, 7-9 by default; fewer splits when the groups
run out), and
`<out>/synthetic.json` (the generator config and which classes are appearance / motion),
written last: its presence means the data set is complete.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_write_text
from ..errors import EXIT_CODES_HELP, UserError, run_cli
from ..progress import progress
from .splits import Split, VideoRecord, ucf101_split, write_ucf_lists

COLOURS = {  # hue in degrees; all rendered at the same luma
    "Red": 0, "Yellow": 60, "Green": 120, "Cyan": 180, "Blue": 240, "Purple": 300,
}
APPEARANCE_CLASSES = [f"{c}Drift" for c in COLOURS]
MOTION_CLASSES = ["MoveUp", "MoveDown", "Grow", "Shrink", "SwingHorizontal", "SwingVertical"]
LUMA = np.array([0.299, 0.587, 0.114])  # OpenCV's RGB -> grey weights
OBJECT_LUMA = 150.0
MANIFEST = "synthetic.json"


@dataclass(frozen=True)
class SyntheticConfig:
    num_groups: int = 10  # split N tests groups (N-1)*test_groups+1 .. N*test_groups
    clips_per_group: int = 2
    test_groups: int = 3
    num_frames: int = 24
    width: int = 128
    height: int = 96
    fps: int = 25
    noise: float = 4.0  # std of per-frame Gaussian noise, grey levels
    jitter: float = 0.3  # std of per-frame camera shake, px
    seed: int = 0


def equal_luma_colour(hue_deg: float, luma: float = OBJECT_LUMA) -> np.ndarray:
    """RGB (0..255) of the given hue whose OpenCV grey value is exactly `luma`."""
    hsv = np.uint8([[[hue_deg / 2, 255, 255]]])
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(float)
    chroma = rgb - rgb @ LUMA  # zero-luma direction of this hue
    scale = min((255 - luma) / chroma.max(), luma / -chroma.min())
    return luma + 0.9 * scale * chroma


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random texture, float [H, W, 3], faintly tinted."""
    coarse = rng.uniform(40, 200, size=(4 + rng.integers(4), 5 + rng.integers(5), 1))
    tex = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    fine = cv2.GaussianBlur(rng.normal(0, 25, size=(h, w)), (0, 0), 1.5)[..., None]
    tint = rng.uniform(0.9, 1.1, size=3)
    return np.clip((tex + fine) * tint, 0, 255)


def _trajectory(kind: str, rng: np.random.Generator, cfg: SyntheticConfig):
    """Per-frame (cx, cy, scale) of the object for one clip."""
    t = np.arange(cfg.num_frames, dtype=float)
    w, h = cfg.width, cfg.height
    cx0, cy0 = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    scale = np.ones_like(t)
    cx, cy = np.full_like(t, cx0), np.full_like(t, cy0)
    speed = rng.uniform(1.5, 2.5) * h / 96
    if kind == "drift":  # slow random walk: no consistent direction
        v = np.cumsum(rng.normal(0, 0.25, size=(cfg.num_frames, 2)), axis=0)
        v = np.clip(v, -0.4, 0.4) * h / 96
        cx, cy = cx0 + np.cumsum(v[:, 0]), cy0 + np.cumsum(v[:, 1])
    elif kind in ("MoveUp", "MoveDown"):
        sign = -1 if kind == "MoveUp" else 1
        cy = cy0 - sign * speed * cfg.num_frames / 2 + sign * speed * t
        cx = cx + rng.normal(0, 0.3, size=t.shape).cumsum() * 0.3
    elif kind in ("Grow", "Shrink"):
        rate = rng.uniform(0.035, 0.05)
        grow = np.exp(rate * (t - t.mean()))
        scale = grow if kind == "Grow" else grow[::-1]
    elif kind in ("SwingHorizontal", "SwingVertical"):
        amp = rng.uniform(0.09, 0.14) * h
        period = rng.uniform(8, 12)
        phase = rng.uniform(0, 2 * np.pi)
        off = amp * np.sin(2 * np.pi * t / period + phase)
        if kind == "SwingHorizontal":
            cx = cx + off
        else:
            cy = cy + off
    else:
        raise ValueError(kind)
    return cx, cy, scale


def render_clip(class_name: str, background: np.ndarray, size: float,
                rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB frames of one clip of `class_name`."""
    if class_name in APPEARANCE_CLASSES:
        colour = equal_luma_colour(COLOURS[class_name[: -len("Drift")]])
        kind = "drift"
    else:
        colour = np.full(3, OBJECT_LUMA)
        kind = class_name
    cx, cy, scale = _trajectory(kind, rng, cfg)
    angle = rng.uniform(0, 180)
    aspect = rng.uniform(0.5, 0.7)
    frames = []
    sh = 16  # sub-pixel drawing: coordinates in 1/16 px
    for t in range(cfg.num_frames):
        img = background.copy()
        a = size * scale[t]
        centre = (int(cx[t] * sh), int(cy[t] * sh))
        axes = (int(a * sh), int(a * aspect * sh))
        cv2.ellipse(img, centre, axes, angle, 0, 360, colour.tolist(), -1, cv2.LINE_AA, 4)
        # a darker band across the object gives it texture that flow can track
        band = (int(a * 0.35 * sh), int(a * aspect * sh))
        cv2.ellipse(img, centre, band, angle, 0, 360, (0.55 * colour).tolist(), -1,
                    cv2.LINE_AA, 4)
        dx, dy = rng.normal(0, cfg.jitter, size=2)
        img = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]),
                             (cfg.width, cfg.height), borderMode=cv2.BORDER_REFLECT)
        img = img + rng.normal(0, cfg.noise, size=img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """MJPG .avi through cv2.VideoWriter, written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp_{path.name}")
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"{tmp}: OpenCV cannot open an MJPG writer")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(tmp, path)


def generate(out_dir: str | os.PathLike, cfg: SyntheticConfig = SyntheticConfig(),
             quiet: bool = False) -> Split:
    """Write the data set (skipped when a complete one with the same config exists)."""
    out = Path(out_dir)
    classes = APPEARANCE_CLASSES + MOTION_CLASSES
    manifest = {"config": asdict(cfg), "classes": classes,
                "appearance_classes": APPEARANCE_CLASSES, "motion_classes": MOTION_CLASSES}
    man_path = out / MANIFEST
    if man_path.exists():
        old = json.loads(man_path.read_text())
        if old == manifest:
            write_splits(out / "splits", cfg, classes)  # sets made before splits 2, 3 existed
            return ucf101_split(out / "splits", 1)
        raise UserError(f"{man_path}: a synthetic set with another config exists; "
                        "choose another folder or delete it")
    if cfg.test_groups >= cfg.num_groups:
        raise UserError("test_groups must leave at least one training group")
    jobs = [(c, g, k) for c in range(len(classes)) for g in range(1, cfg.num_groups + 1)
            for k in range(1, cfg.clips_per_group + 1)]
    for label, g, k in progress(jobs, desc="synthetic videos", quiet=quiet):
        cls = classes[label]
        # the group fixes background and object size; the clip its own motion and noise
        group_rng = np.random.default_rng([cfg.seed, label, g])
        background = _background(group_rng, cfg.height, cfg.width)
        size = group_rng.uniform(0.16, 0.24) * cfg.height
        rng = np.random.default_rng([cfg.seed, label, g, k])
        video_id = f"{cls}/v_{cls}_g{g:02d}_c{k:02d}"
        path = out / "videos" / f"{video_id}.avi"
        if not path.exists():  # a killed run resumes: finished clips stay
            write_video(path, render_clip(cls, background, size, rng, cfg), cfg.fps)
    write_splits(out / "splits", cfg, classes)
    atomic_write_text(man_path, json.dumps(manifest, indent=2))
    return ucf101_split(out / "splits", 1)


def num_splits(cfg: SyntheticConfig) -> int:
    """Group-disjoint splits the groups allow (at most 3, as UCF101 and HMDB51)."""
    return max(1, min(3, cfg.num_groups // cfg.test_groups))


def write_splits(out_dir: Path, cfg: SyntheticConfig, classes: list[str]) -> None:
    """UCF101-format lists of every split: split N holds out the N-th block of groups."""
    for n in range(1, num_splits(cfg) + 1):
        if (out_dir / f"testlist0{n}.txt").exists() and (out_dir / f"trainlist0{n}.txt").exists():
            continue
        held = range((n - 1) * cfg.test_groups + 1, n * cfg.test_groups + 1)
        train, test = [], []
        for label, cls in enumerate(classes):
            for g in range(1, cfg.num_groups + 1):
                for k in range(1, cfg.clips_per_group + 1):
                    rec = VideoRecord(f"{cls}/v_{cls}_g{g:02d}_c{k:02d}", label)
                    (test if g in held else train).append(rec)
        write_ucf_lists(out_dir, Split(train, test, classes), number=n)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out_dir", help="output folder (videos/, splits/, synthetic.json)")
    d = SyntheticConfig()
    for name, value in asdict(d).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        cfg = SyntheticConfig(**{k: getattr(args, k) for k in asdict(SyntheticConfig())})
        split = generate(args.out_dir, cfg, quiet=args.quiet)
        print(f"{args.out_dir}: {len(split.classes)} classes, {len(split.train)} train / "
              f"{len(split.test)} test videos")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
