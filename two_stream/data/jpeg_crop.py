"""Decode only the training crop of a grey (flow) JPEG, with libjpeg-turbo (optional).

A TSN training crop covers about half a flow image. libjpeg-turbo's TurboJPEG 3 API can
decompress a cropping region: it still reads every block's coded data but skips the inverse
DCT and output of the blocks outside it, and gives exactly the whole image's pixels there
(tested). On the loader benchmark's flow JPEGs that decodes a crop in about 0.8 of OpenCV's
whole-image time (`results/loader/table.md`, the `crop decode` rows), which is what takes the
flow loader past whole-image decoding's ceiling. OpenCV, Pillow and the maintained Python
bindings (PyTurboJPEG, simplejpeg) do not expose it, so this is a small ctypes binding to
libturbojpeg >= 3.0, used when one is found, in this order:

- `TWO_STREAM_TURBOJPEG=/path/to/libturbojpeg.so` (`off` disables it);
- the copy bundled in the `turbojpeg` wheel (`pip install -e '.[turbojpeg]'`; only the
  library is used, not that package's Python API);
- the system's (`libturbojpeg0` on Debian / Ubuntu, conda's `libjpeg-turbo`).

Without one the loader decodes whole images with OpenCV: the same samples, slower. TurboJPEG
reports errors through return codes (no longjmp), so a bad file is an error naming it, as with
OpenCV.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from .frames import FrameReadError, Jpeg, jpeg_bytes, jpeg_header, size_error

log = logging.getLogger(__name__)

_TJINIT_DECOMPRESS = 1
_TJPF_GRAY = 6
_TJERR_FATAL = 1
_IMCU = 8  # a grey JPEG's block width: a cropping region starts on a multiple of it


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int),
                ("h", ctypes.c_int)]


def library_candidates() -> list[str]:
    """Where libturbojpeg may be, in the order tried."""
    env = os.environ.get("TWO_STREAM_TURBOJPEG", "")
    if env:
        return [] if env.lower() == "off" else [env]
    out = []
    spec = importlib.util.find_spec("turbojpeg")
    if spec is not None and spec.origin:
        site = Path(spec.origin).parent
        out += sorted(glob.glob(str(site / "turbojpeg.libs" / "libturbojpeg*.so*")))
    found = ctypes.util.find_library("turbojpeg")
    if found:
        out.append(found)
    return out


class CropDecoder:
    """libturbojpeg's cropped decompression of grey JPEGs; one TurboJPEG handle per process
    (handles are not shared across threads or forks)."""

    def __init__(self, lib: ctypes.CDLL, path: str):
        self.path = path
        lib.tj3Init.restype = ctypes.c_void_p
        lib.tj3Init.argtypes = [ctypes.c_int]
        lib.tj3DecompressHeader.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.tj3Get.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.tj3SetCroppingRegion.argtypes = [ctypes.c_void_p, _Region]
        lib.tj3Decompress8.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.tj3GetErrorStr.restype = ctypes.c_char_p
        lib.tj3GetErrorStr.argtypes = [ctypes.c_void_p]
        lib.tj3GetErrorCode.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self._handle, self._pid = None, None
        self._region = _Region()

    def _tj(self) -> int:
        if self._pid != os.getpid():
            self._handle, self._pid = self.lib.tj3Init(_TJINIT_DECOMPRESS), os.getpid()
            if not self._handle:
                raise RuntimeError(f"{self.path}: tj3Init failed")
        return self._handle

    def _check(self, status: int, name: str) -> None:
        """Raise on a fatal error; warnings (a recoverable glitch in the data) pass, as OpenCV
        lets them pass."""
        if status != 0 and self.lib.tj3GetErrorCode(self._handle) == _TJERR_FATAL:
            msg = self.lib.tj3GetErrorStr(self._handle).decode(errors="replace")
            raise FrameReadError(f"{name}: frame unreadable ({msg})")

    def crop(self, jpeg: Jpeg, size: tuple[int, int], box: tuple[int, int, int, int]
             ) -> np.ndarray | None:
        """uint8 [h, w] of `box` (top, left, h, w) of a grey JPEG of `size` (H, W), decoded
        alone; None when the JPEG is not grey (the caller decodes it whole). A JPEG of
        another size is a FrameReadError naming it."""
        data = jpeg.data if isinstance(jpeg.data, np.ndarray) else jpeg_bytes(jpeg.data)
        # size and components from our own parser: after a header it cannot read, TurboJPEG
        # may only warn and keep the previous image's size
        h_, w_, components = jpeg_header(data, jpeg.name)
        if (h_, w_) != tuple(size):
            raise size_error(jpeg.name, size, (h_, w_))
        if components != 1:
            return None
        tj = self._tj()
        src = data.__array_interface__["data"][0]  # 5x cheaper than data.ctypes.data
        self._check(self.lib.tj3DecompressHeader(tj, src, data.size), jpeg.name)
        top, left, h, w = box
        x0 = left // _IMCU * _IMCU
        width = left + w - x0
        r = self._region
        r.x, r.y, r.w, r.h = x0, top, width, h
        self._check(self.lib.tj3SetCroppingRegion(tj, r), jpeg.name)
        out = np.empty((h, width), np.uint8)
        self._check(self.lib.tj3Decompress8(tj, src, data.size,
                                            out.__array_interface__["data"][0], width,
                                            _TJPF_GRAY), jpeg.name)
        return out[:, left - x0:left - x0 + w]


_DECODER: CropDecoder | None = None
_LOADED = False
_ENABLED = True


def crop_decoder() -> CropDecoder | None:
    """The process's CropDecoder, or None (no libturbojpeg >= 3.0 found, or switched off)."""
    return find_crop_decoder() if _ENABLED else None


def find_crop_decoder() -> CropDecoder | None:
    """The CropDecoder of the first usable libturbojpeg, whether switched on or not."""
    global _DECODER, _LOADED
    if not _LOADED:
        _LOADED = True
        for path in library_candidates():
            try:
                lib = ctypes.CDLL(path)
                lib.tj3SetCroppingRegion  # TurboJPEG 3 (libjpeg-turbo >= 3.0)
            except (OSError, AttributeError) as e:
                log.info("libturbojpeg at %s not usable (%s)", path, e)
                continue
            _DECODER = CropDecoder(lib, path)
            break
    return _DECODER


def set_crop_decoding(enabled: bool) -> bool:
    """Switch cropped decoding on or off in this process (benchmarks, tests); returns the
    previous setting. Loader workers forked afterwards inherit it."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, enabled
    return previous
