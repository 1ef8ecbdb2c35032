"""Per-video score files: the `.npz` contract between evaluation and fusion, and importers.

A score file holds `scores` float32 [N, C] (video-level raw logits), `labels` int64 [N] (-1 when
unknown), `video_ids` str [N], `classes` str [C], optional `snippet_scores` float16 [N, K, C]
and `meta` (a JSON string). Fusion joins files by `video_id`, never by position.

    python -m two_stream.scores convert IN --class-index F [--ann-file F] OUT.npz
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .data.splits import video_id_from_path


class ScoreFileError(ValueError):
    """A score file that is malformed, or several that cannot be fused together."""


@dataclass
class ScoreFile:
    scores: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64 [N], -1 = unknown
    video_ids: list[str]
    classes: list[str]
    snippet_scores: np.ndarray | None = None  # float16 [N, K, C]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.video_ids)

    def subset(self, index: np.ndarray) -> "ScoreFile":
        """Rows at `index` (in that order)."""
        return replace(self, scores=self.scores[index], labels=self.labels[index],
                       video_ids=[self.video_ids[i] for i in index],
                       snippet_scores=None if self.snippet_scores is None
                       else self.snippet_scores[index])


def validate(sf: ScoreFile, source: str | os.PathLike = "<scores>") -> ScoreFile:
    """Check shapes, finiteness, unique ids and label range; errors name `source`."""
    s = sf.scores
    if s.ndim != 2:
        raise ScoreFileError(f"{source}: scores must be [N, C], got shape {s.shape}")
    n, c = s.shape
    if len(sf.video_ids) != n or sf.labels.shape != (n,):
        raise ScoreFileError(f"{source}: {n} score rows but {len(sf.video_ids)} video ids and "
                             f"{sf.labels.shape[0]} labels")
    if len(sf.classes) != c:
        raise ScoreFileError(f"{source}: {c} score columns but {len(sf.classes)} class names")
    bad = ~np.isfinite(s).all(axis=1)
    if bad.any():
        raise ScoreFileError(f"{source}: {int(bad.sum())} videos have NaN or infinite scores, "
                             f"e.g. {sf.video_ids[int(np.argmax(bad))]!r}")
    if len(set(sf.video_ids)) != n:
        dup = next(v for v in sf.video_ids if sf.video_ids.count(v) > 1)
        raise ScoreFileError(f"{source}: video id {dup!r} appears more than once")
    if ((sf.labels < -1) | (sf.labels >= c)).any():
        raise ScoreFileError(f"{source}: labels must be -1 (unknown) or in [0, {c})")
    if sf.snippet_scores is not None and (sf.snippet_scores.ndim != 3
                                          or sf.snippet_scores.shape[0] != n
                                          or sf.snippet_scores.shape[2] != c):
        raise ScoreFileError(f"{source}: snippet_scores must be [N, K, C] = [{n}, K, {c}], "
                             f"got {sf.snippet_scores.shape}")
    return sf


def save_scores(path: str | os.PathLike, sf: ScoreFile) -> None:
    """Write atomically (temporary file, then rename)."""
    validate(sf, path)
    path = Path(path)
    arrays = dict(scores=sf.scores.astype(np.float32), labels=sf.labels.astype(np.int64),
                  video_ids=np.array(sf.video_ids, dtype=str),
                  classes=np.array(sf.classes, dtype=str), meta=np.array(json.dumps(sf.meta)))
    if sf.snippet_scores is not None:
        arrays["snippet_scores"] = sf.snippet_scores.astype(np.float16)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def load_scores(path: str | os.PathLike) -> ScoreFile:
    """Read and validate a `.npz` score file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"scores", "labels", "video_ids", "classes"} - set(z.files)
            if missing:
                raise ScoreFileError(f"{path}: not a score file, missing {sorted(missing)}")
            sf = ScoreFile(
                scores=z["scores"].astype(np.float32), labels=z["labels"].astype(np.int64),
                video_ids=[str(v) for v in z["video_ids"]],
                classes=[str(c) for c in z["classes"]],
                snippet_scores=z["snippet_scores"] if "snippet_scores" in z.files else None,
                meta=json.loads(str(z["meta"])) if "meta" in z.files else {})
    except FileNotFoundError:
        raise ScoreFileError(f"{path}: score file not found") from None
    except (OSError, ValueError) as e:
        if isinstance(e, ScoreFileError):
            raise
        raise ScoreFileError(f"{path}: cannot read as .npz ({e})") from None
    return validate(sf, path)


# --- importers ---------------------------------------------------------------------------

def read_class_names(path: str | os.PathLike) -> list[str]:
    """`classInd.txt` (`1 Archery` per line, 1-based) or a label map (one name per line)."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if lines and all(re.match(r"^\d+\s+\S+$", ln) for ln in lines):
        from .data.splits import read_class_index
        return read_class_index(path)
    return lines


_GROUP_SUFFIX = re.compile(r"_g\d+_c\d+$")


def from_two_stream_pickle(path: str | os.PathLike, classes: list[str]) -> ScoreFile:
    """The jeffreyyihuang two-stream pickle: `{"Archery_g01_c01": logits [C]}`.

    The label comes from the class part of the name, matched case-insensitively (UCF101
    names `HandStandPushups_*` files of class `HandstandPushups`); ids become
    `Class/v_Name` like the split lists'.
    """
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    if not isinstance(data, dict):
        raise ScoreFileError(f"{path}: expected a dict {{video name: scores}}, "
                             f"got {type(data).__name__}")
    lower = {c.lower(): i for i, c in enumerate(classes)}
    ids, labels, rows = [], [], []
    for name in sorted(data):
        stem = name[2:] if name.startswith("v_") else name
        cls = _GROUP_SUFFIX.sub("", stem)
        if cls.lower() not in lower:
            raise ScoreFileError(f"{path}: video {name!r} has class {cls!r}, which is not in "
                                 f"the class index ({len(classes)} classes)")
        label = lower[cls.lower()]
        ids.append(f"{classes[label]}/v_{stem}")
        labels.append(label)
        rows.append(np.asarray(data[name], dtype=np.float32).reshape(-1))
    sf = ScoreFile(np.stack(rows), np.array(labels, np.int64), ids, list(classes),
                   meta={"source": str(path), "format": "two-stream pickle"})
    return validate(sf, path)


def read_ann_file(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """MMAction2 annotation list: `video_id [num_frames] label` per line -> ids, labels."""
    ids, labels = [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[-1].lstrip("-").isdigit():
            raise ScoreFileError(f"{path}:{n}: expected 'video [num_frames] label', got {line!r}")
        ids.append(video_id_from_path(parts[0]))
        labels.append(int(parts[-1]))
    return ids, labels


def from_mmaction_pkl(path: str | os.PathLike, ann_file: str | os.PathLike,
                      classes: list[str]) -> ScoreFile:
    """MMAction2 test output: a list of score arrays (or dicts with `pred_score`) in the order
    of `ann_file`."""
    with open(path, "rb") as f:
        data = pickle.load(f)
    if not isinstance(data, list):
        raise ScoreFileError(f"{path}: expected a list of score arrays, got {type(data).__name__}")
    ids, labels = read_ann_file(ann_file)
    if len(ids) != len(data):
        raise ScoreFileError(f"{path}: {len(data)} results but {ann_file} lists {len(ids)} videos")
    rows = []
    for item in data:
        if isinstance(item, dict):
            if "pred_score" not in item:
                raise ScoreFileError(f"{path}: result dict without 'pred_score': {sorted(item)}")
            item = item["pred_score"]
        rows.append(np.asarray(item, dtype=np.float32).reshape(-1))
    sf = ScoreFile(np.stack(rows), np.array(labels, np.int64), ids, list(classes),
                   meta={"source": str(path), "format": "mmaction2 pkl",
                         "ann_file": str(ann_file)})
    return validate(sf, path)


def load_any(path: str | os.PathLike, class_index: str | os.PathLike | None = None,
             ann_file: str | os.PathLike | None = None) -> ScoreFile:
    """`.npz`, or a foreign pickle (two-stream dict or MMAction2 list) with its class list."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_scores(path)
    if not path.exists():
        raise ScoreFileError(f"{path}: score file not found")
    if class_index is None:
        raise ScoreFileError(f"{path}: a pickle score file needs --class-index (classInd.txt "
                             "or a label map)")
    classes = read_class_names(class_index)
    with open(path, "rb") as f:
        head = pickle.load(f, encoding="latin1")
    if isinstance(head, dict):
        return from_two_stream_pickle(path, classes)
    if ann_file is None:
        raise ScoreFileError(f"{path}: an MMAction2 result list needs --ann-file (the test "
                             "annotation list, in the same order)")
    return from_mmaction_pkl(path, ann_file, classes)


def align(files: dict[str, ScoreFile], allow_missing: bool = False
          ) -> tuple[dict[str, ScoreFile], int]:
    """Put several streams' files in one video order; returns (aligned, number dropped).

    The class lists and each video's label must agree. Different video sets are an error
    unless `allow_missing`, which keeps the intersection.
    """
    names = list(files)
    first = files[names[0]]
    for n in names[1:]:
        if files[n].classes != first.classes:
            raise ScoreFileError(f"streams {names[0]!r} and {n!r} have different class lists "
                                 f"({len(first.classes)} vs {len(files[n].classes)} classes)")
    sets = [set(files[n].video_ids) for n in names]
    common = set.intersection(*sets)
    union = set.union(*sets)
    if len(common) != len(union) and not allow_missing:
        worst = max(names, key=lambda n: len(set(files[n].video_ids) - common))
        example = sorted(set(files[worst].video_ids) - common)[0]
        raise ScoreFileError(
            f"streams cover different videos: {len(union) - len(common)} are not in every "
            f"stream (e.g. {example!r} of {worst!r}); pass --allow-missing to fuse the "
            f"{len(common)} common videos")
    if not common:
        raise ScoreFileError("the streams have no video in common")
    order = sorted(common)
    out = {}
    for n in names:
        pos = {v: i for i, v in enumerate(files[n].video_ids)}
        out[n] = files[n].subset(np.array([pos[v] for v in order]))
    for n in names[1:]:
        diff = out[n].labels != out[names[0]].labels
        if diff.any():
            v = order[int(np.argmax(diff))]
            raise ScoreFileError(f"streams {names[0]!r} and {n!r} disagree on the label of {v!r}")
    return out, len(union) - len(common)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m two_stream.scores",
                                description="Convert foreign score files to the .npz format.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="two-stream pickle or MMAction2 pkl -> .npz")
    c.add_argument("input")
    c.add_argument("--class-index", required=True, help="classInd.txt or a label map")
    c.add_argument("--ann-file", help="MMAction2 annotation list (for a result list)")
    c.add_argument("output")
    args = p.parse_args(argv)
    try:
        sf = load_any(args.input, args.class_index, args.ann_file)
        save_scores(args.output, sf)
    except (ScoreFileError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.output}: {len(sf)} videos x {len(sf.classes)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
