"""The rawframe layout on disk: the contract between extraction and the data layer.

    <root>/<video_id>/img_00001.jpg ...     RGB frames (1-based)
    <root>/<video_id>/flow_x_00001.jpg ...  quantised flow, x (flow i: frame i -> i + step)
    <root>/<video_id>/flow_y_00001.jpg ...  and y
    <root>/<video_id>/meta.json             written last: its presence means "complete"
    <root>/<video_id>/frames.pack(.json)    optional packed copy (flow_tools.pack)
    <root>/frame_index.json                 frame counts cached by the data layer

The names are those of denseflow and MMAction2, so their outputs load unchanged. `video_id` is
the video's path under the video folder without its extension (class folder kept). A video is
built in a hidden temporary folder named after its writer (host, pid) and renamed into place
once meta.json is in it, so a kill leaves either nothing or a complete video. Every module that
reads or writes rawframes takes the names and these steps from here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .params import ExtractConfig
from .tmpfiles import TMP_MARK, tmp_name, tmp_owner_gone

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
META_FILE = "meta.json"
FRAME_INDEX_FILE = "frame_index.json"
PACK_FILE, PACK_INDEX_FILE = "frames.pack", "frames.pack.json"
KINDS = ("img", "flow_x", "flow_y")
NAME_TEMPLATES = {kind: kind + "_{index:05d}.jpg" for kind in KINDS}  # 1-based index
NAME_PATTERNS = {kind: re.compile(rf"^{kind}_(\d+)\.jpg$") for kind in KINDS}


class VideoError(Exception):
    """A video that cannot be extracted (the message goes to failures.csv)."""


class MetaError(UserError):
    """A meta.json that exists but cannot be read as a JSON object."""


def frame_name(kind: str, index: int) -> str:
    """The file name of RGB frame or flow image `index` (1-based): `img_00001.jpg`."""
    return NAME_TEMPLATES[kind].format(index=index)


def video_id(rel: str) -> str:
    """`Class/v_Class_g08_c01.avi` -> `Class/v_Class_g08_c01`: the key of every later file."""
    rel = rel.replace("\\", "/")
    stem, ext = os.path.splitext(rel)
    return stem if ext.lower() in VIDEO_EXTENSIONS else rel


def write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    """uint8 [H, W] grey or [H, W, 3] BGR as a JPEG; a failed write is the video's failure."""
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise VideoError(f"{path}: cannot write JPEG")


def read_meta(folder: Path) -> dict | None:
    """A video folder's meta.json as a dict, or None when there is none (not complete);
    MetaError when it exists but is not a JSON object."""
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MetaError(f"{path}: corrupt meta.json ({e}); delete the folder and "
                        "re-extract") from None
    if not isinstance(meta, dict):
        raise MetaError(f"{path}: meta.json must hold an object, got {type(meta).__name__}; "
                        "delete the folder and re-extract")
    return meta


def read_done(out_root: Path, rel: str) -> dict | None:
    """The meta.json of a complete video, or None: missing or unreadable means not done
    (the extractor redoes it)."""
    try:
        return read_meta(Path(out_root) / video_id(rel))
    except MetaError:
        return None


def video_meta(info: dict, n_frames: int, n_flows: int, cfg: ExtractConfig) -> dict:
    """meta.json's content: counts, what the decoder reported (`info`), the flow bound and
    the parameters a rerun must match. Nothing that varies between runs, so a re-extraction
    is byte-identical."""
    return {"num_frames": n_frames, "num_flows": n_flows, **info, "bound": cfg.bound,
            "params": cfg.record()}


def new_tmp_dir(final: Path) -> Path:
    """The folder a video is built in: its owner (host and pid) is in the name, so a
    concurrent shard can tell a folder being written from one left by a killed run."""
    tmp = tmp_name(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def finish_video(tmp: Path, final: Path, meta: dict, rel: str) -> dict:
    """meta.json written last into the temporary folder, then the folder renamed into
    place: a complete video appears at once or not at all."""
    meta["source"] = rel
    meta["video_id"] = video_id(rel)
    meta_tmp = tmp / f".{META_FILE}.tmp"
    meta_tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(meta_tmp, tmp / META_FILE)  # its presence = complete
    if final.exists():  # an incomplete folder (no meta.json) or --overwrite
        shutil.rmtree(final)
    os.replace(tmp, final)
    return meta


def clean_stale_tmp(out_root: Path) -> int:
    """Remove temporary folders left by killed runs on this host; never those of a live
    process (another shard writing into the same folder)."""
    n = 0
    if out_root.exists():
        for p in out_root.rglob(f".*{TMP_MARK}*"):
            if p.is_dir() and tmp_owner_gone(p):
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


def invalidate_frame_index(root: Path) -> None:
    """Drop the data layer's cached frame counts (they may be stale after an extraction)."""
    (Path(root) / FRAME_INDEX_FILE).unlink(missing_ok=True)
