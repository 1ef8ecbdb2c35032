"""Official split lists (UCF101, HMDB51), folder data sets and group-disjoint validation.

A split gives `VideoRecord`s whose `video_id` keeps the class folder
(`ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01`), the key every later file (rawframes, score files)
is joined on. Labels are 0-based indices into the class list.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from flow_tools.rawframes import FRAME_INDEX_FILE, VIDEO_EXTENSIONS
from flow_tools.rawframes import video_id as video_id_from_path

from ..atomic import atomic_write_text
from ..errors import UserError


class SplitError(UserError):
    """A split or class-index file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a split. Frame and flow counts are 0 until resolved against a frame root."""

    video_id: str
    label: int
    num_frames: int = 0
    num_flows: int = 0

    @property
    def class_name(self) -> str:
        return self.video_id.split("/", 1)[0] if "/" in self.video_id else ""


@dataclass(frozen=True)
class Split:
    """Train and test records of one split, with the class names (index = label)."""

    train: list[VideoRecord]
    test: list[VideoRecord]
    classes: list[str]


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers; accepts LF and CRLF endings."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SplitError(f"{path}: split file not found") from None
    except UnicodeDecodeError:
        raise SplitError(f"{path}: not a text file (a split list has one video per line)"
                         ) from None
    except OSError as e:
        raise SplitError(f"{path}: cannot read ({e.strerror})") from None
    return [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]


def read_class_index(path: str | os.PathLike) -> list[str]:
    """Read `classInd.txt` (`<1-based index> <ClassName>` per line) into a 0-based list."""
    path = Path(path)
    entries: dict[int, str] = {}
    for n, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitError(f"{path}:{n}: expected '<index> <class>', got {line!r}")
        if int(parts[0]) in entries:
            raise SplitError(f"{path}:{n}: class index {parts[0]} appears twice")
        entries[int(parts[0])] = parts[1]
    if not entries:
        raise SplitError(f"{path}: empty class index")
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise SplitError(f"{path}: class indices must run 1..{len(entries)} without gaps")
    return [entries[i] for i in range(1, len(entries) + 1)]


def read_ucf_list(path: str | os.PathLike, classes: list[str]) -> list[VideoRecord]:
    """Read a UCF101-style list (`Class/v_Class_gGG_cCC.avi [LABEL]`).

    The label is taken from the class folder (not the file name: UCF101's `HandstandPushups`
    folder holds `v_HandStandPushups_*` files); a 1-based label column, when present, must agree.
    """
    path = Path(path)
    index = {c: i for i, c in enumerate(classes)}
    records = []
    for n, line in _lines(path):
        parts = line.split()
        rel = parts[0]
        folder = rel.replace("\\", "/").split("/")[0] if "/" in rel.replace("\\", "/") else None
        if folder is None:
            raise SplitError(f"{path}:{n}: {rel!r} has no class folder (expected Class/video.avi)")
        if folder not in index:
            raise SplitError(
                f"{path}:{n}: class {folder!r} is not in the class index "
                f"({len(classes)} classes); is the right classInd.txt used?")
        label = index[folder]
        if len(parts) > 1:
            if not parts[1].lstrip("-").isdigit() or int(parts[1]) - 1 != label:
                raise SplitError(
                    f"{path}:{n}: label {parts[1]} disagrees with class {folder!r} "
                    f"(index {label + 1} in classInd)")
        records.append(VideoRecord(video_id_from_path(rel), label))
    return records


def ucf101_split(split_dir: str | os.PathLike, split: int = 1) -> Split:
    """UCF101 split N (1..3) from `classInd.txt`, `trainlist0N.txt`, `testlist0N.txt`."""
    split_dir = Path(split_dir)
    if not 1 <= split <= 9:  # official 1..3; subsets (e.g. a 15-class list 04) use more
        raise SplitError(f"{split_dir}: split must be 1..9 (UCF101 has 1..3), got {split}")
    classes = read_class_index(split_dir / "classInd.txt")
    train = read_ucf_list(split_dir / f"trainlist0{split}.txt", classes)
    test = read_ucf_list(split_dir / f"testlist0{split}.txt", classes)
    return Split(train, test, classes)


_HMDB_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d)\.txt$")


def hmdb51_split(split_dir: str | os.PathLike, split: int = 1) -> Split:
    """HMDB51 split N from the official `<class>_test_split<N>.txt` files (mark 1 train, 2 test).

    Classes are sorted by name (the order every HMDB51 code base uses); mark 0 is unused.
    """
    split_dir = Path(split_dir)
    files = sorted(p for p in split_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise SplitError(f"{split_dir}: no '<class>_test_split{split}.txt' files found")
    classes = sorted(_HMDB_FILE.match(p.name)["cls"] for p in files)
    train, test = [], []
    for label, cls in enumerate(classes):
        path = split_dir / f"{cls}_test_split{split}.txt"
        for n, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise SplitError(f"{path}:{n}: expected 'video.avi 0|1|2', got {line!r}")
            rec = VideoRecord(f"{cls}/{video_id_from_path(parts[0])}", label)
            if parts[1] == "1":
                train.append(rec)
            elif parts[1] == "2":
                test.append(rec)
    return Split(train, test, classes)


_MMA_LIST = re.compile(r"(?:^|_)(?P<part>train|val|test)_split_?(?P<n>\d+)_"
                       r"(?P<kind>rawframes|videos)\.txt$")


def read_mmaction_list(path: str | os.PathLike) -> tuple[list[tuple[str, int]], str]:
    """An MMAction2 annotation list -> ([(video_id, label)], kind). Rawframes lines are
    `frame_dir total_frames label`, video lines `filename label` (0-based labels); the kind
    is read from the first line and must hold for every line."""
    path = Path(path)
    out, kind = [], None
    for n, line in _lines(path):
        parts = line.split()
        this = {2: "videos", 3: "rawframes"}.get(len(parts))
        if this is None:
            raise SplitError(f"{path}:{n}: expected 'frame_dir total_frames label' or "
                             f"'filename label', got {line!r} (multi-label lists are not "
                             "supported)")
        if kind is not None and this != kind:
            raise SplitError(f"{path}:{n}: a {this} line in a {kind} list: {line!r}")
        kind = this
        if not all(v.isdigit() for v in parts[1:]):
            raise SplitError(f"{path}:{n}: frame count and label must be integers >= 0, got "
                             f"{line!r}")
        rel = parts[0].replace("\\", "/").rstrip("/")
        out.append((rel if kind == "rawframes" else video_id_from_path(rel), int(parts[-1])))
    if not out:
        raise SplitError(f"{path}: empty annotation list")
    return out, kind


def _mmaction_classes(split_dir: Path, labels: list[tuple[str, int]]) -> list[str]:
    """Class names: classInd.txt, else a one-name-per-line label map, else the class folder of
    each label's videos (when every label has one), else class000, class001, ..."""
    n = max(label for _, label in labels) + 1
    if (split_dir / "classInd.txt").exists():
        names = read_class_index(split_dir / "classInd.txt")
        source = split_dir / "classInd.txt"
    elif maps := sorted(split_dir.glob("label_map*.txt")):
        names, source = [line for _, line in _lines(maps[0])], maps[0]
    else:
        folders: dict[int, set[str]] = {}
        for vid, label in labels:
            folders.setdefault(label, set()).add(vid.split("/", 1)[0] if "/" in vid else "")
        if all(len(folders.get(k, ())) == 1 and "" not in folders[k] for k in range(n)):
            names = [folders[k].pop() for k in range(n)]
            if len(set(names)) == n:
                return names
        return [f"class{k:03d}" for k in range(n)]
    if len(names) < n:
        raise SplitError(f"{source}: {len(names)} classes, but the lists use label {n - 1}")
    return names


def mmaction_split(split_dir: str | os.PathLike, split: int = 1) -> Split:
    """Split N from MMAction2 annotation lists in `split_dir`: `*_train_split_N_rawframes.txt`
    (or `_videos.txt`) for training and `*_val_split_N_*` (MMAction2's name for the test list)
    or `*_test_split_N_*` for testing, e.g. `ucf101_train_split_1_rawframes.txt`."""
    split_dir = Path(split_dir)
    found: dict[str, list[Path]] = {}
    for f in sorted(split_dir.glob("*.txt")):
        m = _MMA_LIST.search(f.name)
        if m and int(m["n"]) == split:
            found.setdefault("train" if m["part"] == "train" else "test", []).append(f)
    for part in ("train", "test"):
        if not found.get(part):
            raise SplitError(f"{split_dir}: no MMAction2 {part} list of split {split} "
                             f"(expected e.g. ucf101_{'train' if part == 'train' else 'val'}"
                             f"_split_{split}_rawframes.txt)")
        if len(found[part]) > 1:
            names = ", ".join(p.name for p in found[part])
            raise SplitError(f"{split_dir}: several {part} lists of split {split} ({names}): "
                             "keep one")
    train, kind = read_mmaction_list(found["train"][0])
    test, kind_test = read_mmaction_list(found["test"][0])
    if kind != kind_test:
        raise SplitError(f"{found['test'][0]}: a {kind_test} list beside the {kind} training "
                         f"list {found['train'][0].name}")
    classes = _mmaction_classes(split_dir, train + test)
    return Split([VideoRecord(v, label) for v, label in train],
                 [VideoRecord(v, label) for v, label in test], classes)


def write_ucf_lists(out_dir: str | os.PathLike, split: Split, ext: str = ".avi",
                    number: int = 1) -> None:
    """Write a split in the UCF101 format, so any data set reloads through `ucf101_split`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "classInd.txt",
                  "".join(f"{i + 1} {c}\n" for i, c in enumerate(split.classes)))
    atomic_write_text(out_dir / f"trainlist0{number}.txt",
                  "".join(f"{r.video_id}{ext} {r.label + 1}\n" for r in split.train))
    atomic_write_text(out_dir / f"testlist0{number}.txt",
                  "".join(f"{r.video_id}{ext}\n" for r in split.test))


def folder_split(video_root: str | os.PathLike, out_dir: str | os.PathLike,
                 test_ratio: float = 0.3, seed: int = 0) -> Split:
    """Split a folder data set (`<root>/<Class>/<video>`) and save it as UCF-style lists.

    Stratified by class and deterministic under `seed`; when the names carry UCF101-style
    groups (`_gNN_`), whole groups go to one side so test never shares a group with train.
    The lists are written to `out_dir` (reload with `ucf101_split(out_dir, 1)`).
    """
    video_root = Path(video_root)
    classes = sorted(d.name for d in video_root.iterdir() if d.is_dir())
    if not classes:
        raise SplitError(f"{video_root}: no class sub-folders found")
    records = []
    for label, cls in enumerate(classes):
        for f in sorted((video_root / cls).iterdir()):
            if f.suffix.lower() in VIDEO_EXTENSIONS:
                records.append(VideoRecord(f"{cls}/{f.stem}", label))
    if not records:
        raise SplitError(f"{video_root}: no video files ({', '.join(VIDEO_EXTENSIONS)}) found")
    train, test = holdout_split(records, test_ratio, seed)
    split = Split(train, test, classes)
    write_ucf_lists(out_dir, split)
    return split


_UCF_GROUP = re.compile(r"_g(\d+)_c\d+$")


def group_of(video_id: str) -> str:
    """The group a video shares actor/background with: UCF101 `Class/gNN`, HMDB51 the film.

    HMDB51 names are `<film>_<class>_<tags...>_<n>`; clips of one film can appear in several
    classes, so the film alone is the key. Anything else is its own group.
    """
    cls, _, name = video_id.rpartition("/")
    m = _UCF_GROUP.search(name)
    if m:
        return f"{cls}/g{int(m.group(1)):02d}"
    if cls and f"_{cls}_" in name:
        return name.split(f"_{cls}_", 1)[0]
    return video_id


def holdout_split(records: list[VideoRecord], ratio: float, seed: int = 0,
                  ) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split records into (keep, held_out) with about `ratio` of each class held out.

    Whole groups (`group_of`) move together, so the held-out part never shares an actor,
    background or source film with the rest. Deterministic under `seed`.
    """
    if not 0.0 < ratio < 1.0:
        raise UserError(f"hold-out ratio must be in (0, 1), got {ratio}")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(group_of(r.video_id), []).append(i)
    names = sorted(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    per_class = np.bincount([r.label for r in records])
    target = ratio * per_class
    taken = np.zeros_like(target)
    kept_per_class = per_class.astype(float)
    held: set[int] = set()
    for g in names:
        labels = np.bincount([records[i].label for i in groups[g]], minlength=len(per_class))
        main = int(labels.argmax())
        # Take a group if its main class still needs held-out videos and every class keeps
        # at least one training video.
        if taken[main] < target[main] and np.all(kept_per_class - labels >= 1):
            held.update(groups[g])
            taken += labels
            kept_per_class -= labels
    keep = [r for i, r in enumerate(records) if i not in held]
    out = [r for i, r in enumerate(records) if i in held]
    return keep, out


# --- frame counts -------------------------------------------------------------------------

INDEX_FILE = FRAME_INDEX_FILE


def resolve_records(records: list[VideoRecord], counts: dict[str, tuple[int, int]]
                    ) -> list[VideoRecord]:
    """Attach (num_frames, num_flows) to records; an id missing from `counts` is an error."""
    missing = [r.video_id for r in records if r.video_id not in counts]
    if missing:
        raise SplitError(
            f"{len(missing)} videos of the split have no frames, e.g. {missing[0]!r}; "
            "extract them first (python -m flow_tools.extract) or check --frames")
    return [replace(r, num_frames=counts[r.video_id][0], num_flows=counts[r.video_id][1])
            for r in records]


def load_index(path: Path) -> dict[str, tuple[int, int]]:
    with open(path) as f:
        return {k: (int(v[0]), int(v[1])) for k, v in json.load(f).items()}


def save_index(path: Path, counts: dict[str, tuple[int, int]]) -> None:
    atomic_write_text(path, json.dumps({k: list(v) for k, v in sorted(counts.items())}))
