"""Reading frames and flow: rawframe folders (MMAction2/denseflow, feichtenhofer) and video files.

Indices passed in are 0-based (as sampling returns them); files on disk are 1-based.
Flow index i is the motion from frame i to frame i+1. Every reader raises `FrameReadError`
naming the file: a missing frame is never replaced by a black one.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from flow_tools.quantize import DEFAULT_BOUND, dequantize
from flow_tools.rawframes import META_FILE, NAME_TEMPLATES, PACK_FILE, MetaError
from flow_tools.rawframes import PACK_INDEX_FILE as PACK_INDEX
from flow_tools.rawframes import read_meta as read_meta_json

from ..errors import UserError
from .splits import INDEX_FILE, VIDEO_EXTENSIONS, load_index, save_index

log = logging.getLogger(__name__)
_REPACK = (f"delete {PACK_INDEX} and rerun python -m flow_tools.pack, or re-extract the video "
           "if its loose JPEGs were removed")


class FrameReadError(UserError):
    """A frame, flow image or video that is missing or cannot be decoded."""


@dataclass(frozen=True)
class FrameLayout:
    """Where the files of a video live, as templates of `video` (the id), `name` (its last
    path part) and the 1-based `index`."""

    rgb: str
    flow_x: str
    flow_y: str


LAYOUTS: dict[str, FrameLayout] = {
    # denseflow / MMAction2 / our extractor
    "rawframes": FrameLayout(*(f"{{video}}/{NAME_TEMPLATES[k]}"
                               for k in ("img", "flow_x", "flow_y"))),
    # MMAction2's test-data naming (x_/y_ prefixes)
    "rawframes_xy": FrameLayout(f"{{video}}/{NAME_TEMPLATES['img']}", "{video}/x_{index:05d}.jpg",
                                "{video}/y_{index:05d}.jpg"),
    # feichtenhofer/twostreamfusion and the jeffreyyihuang code: no class folder in the name
    "feichtenhofer": FrameLayout("jpegs_256/{name}/frame{index:06d}.jpg",
                                 "tvl1_flow/u/{name}/frame{index:06d}.jpg",
                                 "tvl1_flow/v/{name}/frame{index:06d}.jpg"),
}


def _path(root: Path, template: str, video_id: str, index0: int) -> str:
    """The file of a frame, as a string (a loader builds 30 per flow sample: pathlib's joins
    would cost a tenth of the JPEG decoding)."""
    return f"{root}/" + template.format(video=video_id, name=video_id.rsplit("/", 1)[-1],
                                        index=index0 + 1)


def read_image(path: Path | str, grey: bool = False, bgr: bool = False) -> np.ndarray:
    """uint8 [H, W, 3] RGB (BGR as decoded with `bgr`: the loader swaps channels after
    resizing, on fewer pixels), or [H, W] for `grey`; raises FrameReadError naming the file."""
    # the bytes are read here, not by cv2.imread: a missing or unreadable file then raises one
    # error naming it instead of printing OpenCV's `[ WARN ] imread_(...)` lines as well
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise FrameReadError(f"{path}: frame missing") from None
    except (IsADirectoryError, PermissionError):
        raise FrameReadError(f"{path}: frame unreadable (not an image?)") from None
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) \
        if data.size else None
    if img is None:
        raise FrameReadError(f"{path}: frame unreadable (not an image?)")
    return img if grey or bgr else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image(data: np.ndarray, name: str, grey: bool = False, bgr: bool = False
                 ) -> np.ndarray:
    """`read_image` for JPEG bytes already in memory (a packed video)."""
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None:
        raise FrameReadError(f"{name}: frame unreadable (not a JPEG?)")
    return img if grey or bgr else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def jpeg_bytes(path: Path) -> np.ndarray:
    """The bytes of one JPEG (decoded later, on the device), or a FrameReadError naming it."""
    try:
        data = np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise FrameReadError(f"{path}: frame missing") from None
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise FrameReadError(f"{path}: frame unreadable (not a JPEG)")
    return data


class Jpeg(NamedTuple):
    """One frame or flow image, decoded only when a transform places it into a sample, so a
    sample holds one decoded plane at a time, still in the CPU caches when it is resized (a
    flow sample's 30 planes, ~2.6 MB at 340x256, held together do not fit)."""

    data: np.ndarray | str  # the JPEG bytes, or the path of a file not read yet
    name: str  # the file (or pack entry) named in errors
    grey: bool

    def decode(self) -> np.ndarray:
        """uint8 [H, W] grey or [H, W, 3] BGR; FrameReadError naming the file."""
        if isinstance(self.data, str):
            return read_image(self.data, grey=self.grey, bgr=True)
        return decode_image(self.data, self.name, grey=self.grey, bgr=True)


def jpeg_size(data: np.ndarray, path: Path) -> tuple[int, int]:
    """(height, width) from a JPEG's frame header, without decoding it."""
    b = data.tobytes()
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            break
        marker = b[i + 1]
        length = int.from_bytes(b[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(b[i + 5:i + 7], "big"), int.from_bytes(b[i + 7:i + 9], "big")
        i += 2 + length
    raise FrameReadError(f"{path}: frame unreadable (no JPEG frame header)")


def _count_matching(directory: Path, basename_template: str) -> int:
    head, _, tail = basename_template.partition("{index")
    tail = tail.split("}", 1)[1]
    pattern = re.compile(re.escape(head) + r"\d+" + re.escape(tail) + "$")
    try:
        return sum(1 for e in os.scandir(directory) if pattern.match(e.name))
    except FileNotFoundError:
        return 0


def read_meta(frame_dir: Path) -> dict | None:
    """The extractor's `meta.json` of one video folder, or None when there is none."""
    path = Path(frame_dir) / META_FILE
    try:
        meta = read_meta_json(frame_dir)
    except MetaError as e:
        raise FrameReadError(str(e)) from None
    if meta is None:
        return None
    for key in ("num_frames", "num_flows"):
        v = meta.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise FrameReadError(f"{path}: meta.json has no valid {key!r} (got {v!r}); delete "
                                 "the folder and re-extract")
    bound = meta.get("bound", DEFAULT_BOUND)
    if not isinstance(bound, (int, float)) or not 0 < bound < float("inf"):
        raise FrameReadError(f"{path}: meta.json has an invalid flow bound {bound!r}")
    return meta


def cached_counts(index_dir: Path, video_ids: list[str], count) -> dict[str, tuple[int, int]]:
    """`count(video_id)` for each id, cached in `<index_dir>/frame_index.json` (written when the
    folder is writable) so a data set is scanned once, not per sample or per run."""
    index_path = index_dir / INDEX_FILE
    cached = load_index(index_path) if index_path.exists() else {}
    missing = [v for v in video_ids if v not in cached]
    for v in missing:
        cached[v] = count(v)
    if missing and os.access(index_dir, os.W_OK):
        save_index(index_path, cached)
    return {v: cached[v] for v in video_ids}


class RawframeSource:
    """Frames and flow images of pre-extracted videos under `root` in a given layout."""

    def __init__(self, root: str | os.PathLike, layout: str | FrameLayout = "rawframes"):
        self.root = Path(root)
        if isinstance(layout, str):
            if layout not in LAYOUTS:
                raise UserError(f"unknown frame layout {layout!r}; choose from {sorted(LAYOUTS)}")
            layout = LAYOUTS[layout]
        self.layout = layout
        self._packs: OrderedDict[str, dict | None] = OrderedDict()
        if not self.root.is_dir():
            raise FrameReadError(f"{self.root}: frame root not found")

    def count(self, video_id: str) -> tuple[int, int]:
        """(num_frames, num_flows) from meta.json, else by one scan of the folder."""
        if "{video}" in self.layout.rgb:
            if not (self.root / video_id).is_dir():
                raise FrameReadError(f"{self.root / video_id}: no frame folder (not extracted "
                                     "yet? run python -m flow_tools.extract)")
            meta = read_meta(self.root / video_id)
            if meta is not None:
                return int(meta["num_frames"]), int(meta["num_flows"])
        counts = []
        for template in (self.layout.rgb, self.layout.flow_x):
            p = Path(_path(self.root, template, video_id, 0))
            counts.append(_count_matching(p.parent, os.path.basename(template)))
        return counts[0], counts[1]

    def counts(self, video_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Counts for many videos, cached (delete frame_index.json after re-extracting)."""
        return cached_counts(self.root, video_ids, self.count)

    def bound(self, video_id: str) -> float:
        meta = read_meta(self.root / video_id) if "{video}" in self.layout.rgb else None
        return float(meta.get("bound", DEFAULT_BOUND)) if meta else DEFAULT_BOUND

    def _packed(self, video_id: str) -> dict | None:
        """The offset index of a packed video (`flow_tools.pack`), or None; a few are kept."""
        if video_id in self._packs:
            self._packs.move_to_end(video_id)
            return self._packs[video_id]
        index = None
        if "{video}" in self.layout.rgb:
            path = self.root / video_id / PACK_INDEX
            if path.exists():
                try:
                    index = json.loads(path.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise FrameReadError(f"{path}: corrupt pack index ({e}); delete it and "
                                         "rerun python -m flow_tools.pack") from None
        self._packs[video_id] = index
        if len(self._packs) > 64:
            self._packs.popitem(last=False)
        return index

    def _jpegs(self, video_id: str, kinds: tuple[str, ...], indices: np.ndarray,
               lazy: bool = False) -> list[Jpeg]:
        """Each index x kind, from the pack (one open, bytes read) or the loose files (bytes
        read unless `lazy`: the file is then read as it is decoded)."""
        grey = kinds[0] != "img"
        index = self._packed(video_id)
        if index is None:
            templates = {"img": self.layout.rgb, "flow_x": self.layout.flow_x,
                         "flow_y": self.layout.flow_y}
            out = []
            for i in np.ravel(indices):
                for k in kinds:
                    path = _path(self.root, templates[k], video_id, int(i))
                    out.append(Jpeg(path if lazy else jpeg_bytes(path), path, grey))
            return out
        pack = self.root / video_id / PACK_FILE
        out = []
        try:
            fd = os.open(pack, os.O_RDONLY)
        except FileNotFoundError:
            raise FrameReadError(f"{pack}: pack file missing (its index {PACK_INDEX} is "
                                 f"there); {_REPACK}") from None
        try:
            for i in np.ravel(indices):
                for k in kinds:
                    entries = index.get(k, [])
                    if not 0 <= int(i) < len(entries):
                        raise FrameReadError(f"{pack}: no {k} image {int(i) + 1} (the pack "
                                             f"holds {len(entries)})")
                    offset, length = entries[int(i)]
                    data = np.empty(length, np.uint8)
                    # one syscall into the array: half the cost of a buffered seek + read
                    if os.preadv(fd, [data], offset) != length:
                        raise FrameReadError(f"{pack}: truncated ({k} image {int(i) + 1} "
                                             f"ends past the end of the file); {_REPACK}")
                    out.append(Jpeg(data, f"{pack}[{k} {int(i) + 1}]", grey))
        finally:
            os.close(fd)
        return out

    def rgb_bytes(self, video_id: str, indices: np.ndarray) -> list[Jpeg]:
        """The JPEG bytes (`Jpeg.data`) of RGB frames at 0-based `indices`, either layout."""
        return self._jpegs(video_id, ("img",), indices)

    def flow_bytes(self, video_id: str, indices: np.ndarray) -> list[Jpeg]:
        """The JPEG bytes of x and y of each flow index, interleaved: x_0, y_0, x_1, ..."""
        return self._jpegs(video_id, ("flow_x", "flow_y"), indices)

    def rgb_planes(self, video_id: str, indices: np.ndarray) -> list[Jpeg]:
        """RGB frames at 0-based `indices`, to be decoded (BGR) as a transform places them."""
        return self._jpegs(video_id, ("img",), indices, lazy=True)

    def flow_planes(self, video_id: str, indices: np.ndarray) -> list[Jpeg]:
        """Flow images x_0, y_0, x_1, ... at 0-based flow `indices`, decoded when placed."""
        return self._jpegs(video_id, ("flow_x", "flow_y"), indices, lazy=True)

    def rgb_list(self, video_id: str, indices: np.ndarray, bgr: bool = False
                 ) -> list[np.ndarray]:
        """uint8 [H, W, 3] RGB (or BGR) frames at 0-based `indices` (no stacking copy)."""
        frames = [j.decode() for j in self.rgb_planes(video_id, indices)]
        return frames if bgr else [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]

    def rgb(self, video_id: str, indices: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB frames at 0-based `indices`."""
        return np.stack(self.rgb_list(video_id, indices))

    def flow_list(self, video_id: str, indices: np.ndarray
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(x, y) uint8 [H, W] quantised flow images at 0-based flow `indices`."""
        planes = self.flow_planes(video_id, indices)
        out = []
        for jx, jy in zip(planes[0::2], planes[1::2]):
            x, y = jx.decode(), jy.decode()
            if x.shape != y.shape:
                raise FrameReadError(f"{jy.name}: size {y.shape} differs from its x image "
                                     f"{x.shape}")
            out.append((x, y))
        return out

    def flow_images(self, video_id: str, indices: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 2] quantised flow (x, y) at 0-based flow `indices`."""
        return np.stack([np.stack(xy, axis=-1) for xy in self.flow_list(video_id, indices)])

    def flow(self, video_id: str, indices: np.ndarray) -> np.ndarray:
        """float32 [N, H, W, 2] flow in pixels, dequantised with the bound in meta.json."""
        return dequantize(self.flow_images(video_id, indices), self.bound(video_id))


def find_video(root: Path, video_id: str) -> Path:
    """The video file of `video_id` under `root`, whatever its container extension."""
    for ext in VIDEO_EXTENSIONS:
        p = root / f"{video_id}{ext}"
        if p.exists():
            return p
    raise FrameReadError(f"{root / video_id}.*: video file not found "
                         f"(looked for {', '.join(VIDEO_EXTENSIONS)})")


def count_video_frames(path: str | os.PathLike) -> int:
    """Decodable frames of a video, by grabbing every frame (container counts can lie)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FrameReadError(f"{path}: cannot open video")
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise FrameReadError(f"{path}: no decodable frames")
    return n


def read_video_frames(path: str | os.PathLike, indices: np.ndarray | None = None) -> np.ndarray:
    """uint8 [N, H, W, 3] RGB frames at 0-based `indices` (all frames when None).

    Decodes sequentially up to the last index and keeps only the requested frames (seeking is
    unreliable in many AVI/MP4 files); indices may repeat and come in any order.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FrameReadError(f"{path}: cannot open video")
    wanted = None if indices is None else np.ravel(indices).astype(int)
    last = None if wanted is None else int(wanted.max())
    wanted_set = None if wanted is None else frozenset(int(x) for x in wanted)
    keep: dict[int, np.ndarray] = {}
    frames: list[np.ndarray] = []
    i = 0
    try:
        while last is None or i <= last:
            if wanted_set is None or i in wanted_set:
                ok, frame = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if wanted is None:
                    frames.append(rgb)
                else:
                    keep[i] = rgb
            elif not cap.grab():
                break
            i += 1
    finally:
        cap.release()
    if wanted is None:
        if not frames:
            raise FrameReadError(f"{path}: no decodable frames")
        return np.stack(frames)
    if last >= i:
        raise FrameReadError(f"{path}: frame {last} requested but the video ends after {i} "
                             "frames")
    return np.stack([keep[int(j)] for j in wanted])


class VideoFileSource:
    """RGB frames decoded straight from video files (`<root>/<video_id>.<ext>`): the spatial
    stream can train and predict without extracting frames. Flow needs extraction first."""

    def __init__(self, root: str | os.PathLike, index_dir: str | os.PathLike | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FrameReadError(f"{self.root}: video root not found")
        self.index_dir = Path(index_dir) if index_dir else self.root

    def count(self, video_id: str) -> tuple[int, int]:
        n = count_video_frames(find_video(self.root, video_id))
        return n, n - 1

    def counts(self, video_ids: list[str]) -> dict[str, tuple[int, int]]:
        return cached_counts(self.index_dir, video_ids, self.count)

    def rgb(self, video_id: str, indices: np.ndarray) -> np.ndarray:
        return read_video_frames(find_video(self.root, video_id), indices)

    def rgb_list(self, video_id: str, indices: np.ndarray, bgr: bool = False
                 ) -> list[np.ndarray]:
        frames = self.rgb(video_id, indices)
        return [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames] if bgr else list(frames)

    def rgb_planes(self, video_id: str, indices: np.ndarray) -> list[np.ndarray]:
        """BGR frames, decoded already (a video decodes in order, not frame by frame)."""
        return self.rgb_list(video_id, indices, bgr=True)

    def flow_list(self, video_id: str, indices: np.ndarray) -> list:
        return self.flow_images(video_id, indices)

    def flow_planes(self, video_id: str, indices: np.ndarray) -> list:
        return self.flow_images(video_id, indices)

    def flow_images(self, video_id: str, indices: np.ndarray) -> np.ndarray:
        raise FrameReadError(
            f"{self.root / video_id}: the flow modality reads extracted flow images; run "
            "`python -m flow_tools.extract` on the videos and pass its output as --frames")
