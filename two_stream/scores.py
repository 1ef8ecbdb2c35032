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
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import tensor_pickle
from .atomic import atomic_path
from .data.splits import video_id_from_path
from .errors import EXIT_CODES_HELP, UserError, run_cli


class ScoreFileError(UserError):
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
    if n == 0 or c == 0:
        raise ScoreFileError(f"{source}: empty score file ({n} videos x {c} classes)")
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
    tmp = atomic_path(path)
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
    except ScoreFileError:
        raise
    except (OSError, ValueError, TypeError, EOFError, KeyError, zipfile.BadZipFile) as e:
        # np.load raises these for a truncated zip, a non-npz file, pickled or non-numeric
        # arrays, and bad meta JSON
        raise ScoreFileError(f"{path}: cannot read as a .npz score file "
                             f"({type(e).__name__}: {e})") from None
    return validate(sf, path)


# --- untrusted pickles ---------------------------------------------------------------------

# What score pickles hold: containers, numbers, strings and numpy arrays. `pickle.load` would
# call any function a file names; this unpickler resolves only these names.
_SAFE_GLOBALS = {
    *(("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float",
                                "complex", "str", "bytes", "bytearray", "bool")),
    ("collections", "OrderedDict"), ("_codecs", "encode"),
    *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
      for n in ("_reconstruct", "scalar")),
    *((m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _ScoreUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in tensor_pickle.GLOBALS:  # MMAction2 1.x dumps: tensors, as numpy
            return tensor_pickle.GLOBALS[(module, name)]
        if (module, name) not in _SAFE_GLOBALS and not (
                module == "numpy.dtypes" and name.endswith("DType")):
            raise ScoreFileError(f"refused to load {module}.{name}: a score pickle holds only "
                                 "dicts, lists, numbers, strings, numpy arrays and tensors")
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike):
    """Unpickle an untrusted score file (Python 2 pickles too): only the types above are
    built, so a file cannot run code. Errors name the file."""
    try:
        with open(path, "rb") as f:
            return _ScoreUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise ScoreFileError(f"{path}: score file not found") from None
    except (ScoreFileError, tensor_pickle.TensorPickleError) as e:
        raise ScoreFileError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, ImportError, OSError) as e:
        # what unpickling truncated or non-pickle bytes raises
        raise ScoreFileError(f"{path}: cannot read as a pickle ({type(e).__name__}: "
                             f"{e or 'empty or truncated'})") from None


def _score_row(path, what: str, value, num_classes: int) -> np.ndarray:
    """One video's scores as float32 [C], or an error naming the file and the video."""
    try:
        row = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise ScoreFileError(f"{path}: {what}: scores are not numbers "
                             f"({type(value).__name__})") from None
    if row.shape[0] != num_classes:
        raise ScoreFileError(f"{path}: {what} has {row.shape[0]} scores but the class index "
                             f"has {num_classes} classes")
    return row


# --- importers ---------------------------------------------------------------------------

def read_text(path: str | os.PathLike, what: str) -> str:
    """A foreign text file, or a ScoreFileError naming it (missing, unreadable, binary)."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise ScoreFileError(f"{path}: {what} not found") from None
    except UnicodeDecodeError:
        raise ScoreFileError(f"{path}: {what} is not a text file") from None
    except OSError as e:
        raise ScoreFileError(f"{path}: cannot read {what} ({e.strerror})") from None


def read_class_names(path: str | os.PathLike) -> list[str]:
    """`classInd.txt` (`1 Archery` per line, 1-based) or a label map (one name per line)."""
    lines = [ln.strip() for ln in read_text(path, "class index").splitlines() if ln.strip()]
    if not lines:
        raise ScoreFileError(f"{path}: empty class index")
    if all(re.match(r"^\d+\s+\S+$", ln) for ln in lines):
        from .data.splits import read_class_index
        return read_class_index(path)
    if len(set(lines)) != len(lines):
        dup = next(c for c in lines if lines.count(c) > 1)
        raise ScoreFileError(f"{path}: class {dup!r} is listed more than once")
    return lines


_GROUP_SUFFIX = re.compile(r"_g\d+_c\d+$")


def from_two_stream_pickle(path: str | os.PathLike, classes: list[str], data=None
                           ) -> ScoreFile:
    """The jeffreyyihuang two-stream pickle: `{"Archery_g01_c01": logits [C]}` (`data`: its
    content when already unpickled).

    The label comes from the class part of the name, matched case-insensitively (UCF101
    names `HandStandPushups_*` files of class `HandstandPushups`); ids become
    `Class/v_Name` like the split lists'.
    """
    data = load_pickle(path) if data is None else data
    if not isinstance(data, dict):
        raise ScoreFileError(f"{path}: expected a dict {{video name: scores}}, "
                             f"got {type(data).__name__}")
    if not data:
        raise ScoreFileError(f"{path}: no videos in the score dict")
    lower = {c.lower(): i for i, c in enumerate(classes)}
    ids, labels, rows = [], [], []
    if not all(isinstance(k, str) for k in data):
        raise ScoreFileError(f"{path}: the dict's keys must be video names (strings)")
    for name in sorted(data):
        stem = name[2:] if name.startswith("v_") else name
        cls = _GROUP_SUFFIX.sub("", stem)
        if cls.lower() not in lower:
            raise ScoreFileError(f"{path}: video {name!r} has class {cls!r}, which is not in "
                                 f"the class index ({len(classes)} classes)")
        label = lower[cls.lower()]
        ids.append(f"{classes[label]}/v_{stem}")
        labels.append(label)
        rows.append(_score_row(path, f"video {name!r}", data[name], len(classes)))
    sf = ScoreFile(np.stack(rows), np.array(labels, np.int64), ids, list(classes),
                   meta={"source": str(path), "format": "two-stream pickle"})
    return validate(sf, path)


def read_ann_file(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """MMAction2 annotation list: `video_id [num_frames] label` per line -> ids, labels."""
    ids, labels = [], []
    for n, line in enumerate(read_text(path, "annotation list").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[-1].lstrip("-").isdigit():
            raise ScoreFileError(f"{path}:{n}: expected 'video [num_frames] label', got {line!r}")
        ids.append(video_id_from_path(parts[0]))
        labels.append(int(parts[-1]))
    if not ids:
        raise ScoreFileError(f"{path}: empty annotation list")
    return ids, labels


def from_mmaction_pkl(path: str | os.PathLike, ann_file: str | os.PathLike,
                      classes: list[str], data=None) -> ScoreFile:
    """MMAction2 test output in the order of `ann_file` (`data`: its content when already
    unpickled): 0.x's list of score arrays, or 1.x's `--dump` list of dicts whose
    `pred_score` is a tensor (read as numpy by `tensor_pickle`, torch never imported)."""
    data = load_pickle(path) if data is None else data
    if not isinstance(data, list):
        raise ScoreFileError(f"{path}: expected a list of score arrays, got {type(data).__name__}")
    ids, labels = read_ann_file(ann_file)
    if ((np.array(labels) < -1) | (np.array(labels) >= len(classes))).any():
        raise ScoreFileError(f"{ann_file}: labels must be in [0, {len(classes)}) for the "
                             f"{len(classes)} classes of the class index")
    if len(ids) != len(data):
        raise ScoreFileError(f"{path}: {len(data)} results but {ann_file} lists {len(ids)} videos")
    rows = []
    for i, item in enumerate(data):
        if isinstance(item, dict):
            if "pred_score" not in item:
                raise ScoreFileError(f"{path}: result dict without 'pred_score': "
                                     f"{sorted(map(str, item))}")
            item = item["pred_score"]
        rows.append(_score_row(path, f"result {i} ({ids[i]})", item, len(classes)))
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
    head = load_pickle(path)
    if not isinstance(head, (dict, list)):
        raise ScoreFileError(f"{path}: expected a dict {{video name: scores}} (two-stream) or "
                             f"a list of score arrays (MMAction2), got {type(head).__name__}")
    if isinstance(head, dict):  # unpickled once, here
        return from_two_stream_pickle(path, classes, head)
    if ann_file is None:
        raise ScoreFileError(f"{path}: an MMAction2 result list needs --ann-file (the test "
                             "annotation list, in the same order)")
    return from_mmaction_pkl(path, ann_file, classes, head)


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
                                description="Convert foreign score files to the .npz format.",
                                epilog=EXIT_CODES_HELP)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="two-stream pickle or MMAction2 pkl -> .npz")
    c.add_argument("input")
    c.add_argument("--class-index", required=True, help="classInd.txt or a label map")
    c.add_argument("--ann-file", help="MMAction2 annotation list (for a result list)")
    c.add_argument("output")
    args = p.parse_args(argv)

    def body() -> None:
        sf = load_any(args.input, args.class_index, args.ann_file)
        save_scores(args.output, sf)
        print(f"{args.output}: {len(sf)} videos x {len(sf.classes)} classes")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
