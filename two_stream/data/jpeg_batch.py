"""Decode and augment on the device (`--decode gpu`): loader workers only read JPEG bytes and
draw the crop and flip; the main process decodes the whole batch with nvJPEG
(`torchvision.io.decode_jpeg(..., device="cuda")`) and crops, resizes and flips there.

Why torchvision's decoder: it ships with the torchvision we already depend on, decodes a list
of images in one batched call on CUDA, and on a CPU gives the same pixels as OpenCV (both are
libjpeg-turbo), so one code path is testable everywhere; torchcodec targets video streams.

The crop box, the flip and the sampled frames are the ones the CPU path (`transforms`) would
use for the same (seed, epoch, index); resizing is bilinear with the same pixel mapping in
both (OpenCV rounds its fixed-point weights), so the two paths agree to one grey level
(tests/data/test_jpeg_batch.py), not bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info
from torchvision.io import ImageReadMode, decode_jpeg

from .frames import FrameReadError
from .transforms import crop_boxes, short_side_size


@dataclass
class JpegSample:
    """One video's snippets as JPEG bytes, and what to do with them once decoded."""

    data: list[np.ndarray] | None  # uint8 [bytes] per image: K snippets x (1 RGB | 2L grey)
    # planes; None once `collate_jpeg` has moved the bytes into the batch's one buffer
    names: tuple[str, ...]  # per image, the file (or pack entry) named in errors
    num_segments: int
    modality: str
    size: int  # output side S
    box: tuple[int, int, int, int] | None = None  # training crop (top, left, h, w)
    flip: bool = False
    scale_size: int = 0  # test: short side before the crops
    num_crops: int = 1


class JpegBatch(list):
    """A loader batch for `--decode gpu`: the `JpegSample`s (without bytes) and every image's
    bytes in one flat buffer, image j at `data[offsets[j]:offsets[j + 1]]`.

    Why one buffer: a batch crosses from a loader worker to the trainer as shared memory, and
    under torch's `file_descriptor` sharing every tensor holds an open descriptor while it is
    alive. One tensor per JPEG was 960 descriptors per flow batch (32 x 3 x 10), times the
    batches in flight: past `ulimit -n 1024`. One buffer is one descriptor per batch; the
    offsets are a numpy array, pickled by value. A list subclass, so code that tells a
    bytes batch from a tensor by `isinstance(x, list)` keeps working."""

    data: torch.Tensor  # uint8 [total bytes]
    offsets: np.ndarray  # int64 [images + 1]

    def images(self) -> list[torch.Tensor]:
        """uint8 [bytes] per image: views of the one buffer (no copy)."""
        o = self.offsets
        return [self.data[int(o[j]):int(o[j + 1])] for j in range(len(o) - 1)]

    def names(self) -> list[str]:
        return [n for s in self for n in s.names]

    def pin_memory(self) -> JpegBatch:
        """What the DataLoader's pin_memory thread calls: one pinned copy of the buffer."""
        out = JpegBatch(self)
        out.data, out.offsets = self.data.pin_memory(), self.offsets
        return out


def shared_empty(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor; in a loader worker, in shared memory from the start (as
    torch's default collate allocates its output), so sending it to the trainer copies
    nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    numel = int(np.prod(shape))
    try:
        storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(numel)
        return torch.empty(0, dtype=torch.uint8).new(storage).view(shape)
    except AttributeError:  # a torch without the private helper: one extra copy
        return torch.empty(shape, dtype=torch.uint8).share_memory_()


def pack_samples(samples: list[JpegSample]) -> JpegBatch:
    """`JpegSample`s with their bytes -> one `JpegBatch` (bytes copied once, into the buffer
    that crosses the process boundary)."""
    arrays = [a for s in samples for a in s.data]
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([a.size for a in arrays], out=offsets[1:])
    data = shared_empty((int(offsets[-1]),))
    flat = data.numpy()
    for a, start in zip(arrays, offsets[:-1]):
        flat[start:start + a.size] = a
    batch = JpegBatch(replace(s, data=None) for s in samples)
    batch.data, batch.offsets = data, offsets
    return batch


def collate_jpeg(items: list) -> tuple[JpegBatch, torch.Tensor, list[str]]:
    """DataLoader collate for `JpegSample` items: the bytes go into one buffer, decoded
    later in the main process (`decode_samples`)."""
    samples, labels, ids = zip(*items)
    return pack_samples(list(samples)), torch.tensor(labels), list(ids)


def decode_jpegs(data: list[torch.Tensor], grey: bool, device: torch.device
                 ) -> list[torch.Tensor]:
    """uint8 [bytes] per image -> uint8 [C, H, W] per image on `device`, in one batched call.

    The one call of torchvision's `decode_jpeg` (nvJPEG on CUDA, libjpeg-turbo on a CPU):
    torchvision deprecates it in favour of TorchCodec, and the switch is an edit here."""
    mode = ImageReadMode.GRAY if grey else ImageReadMode.RGB
    return decode_jpeg(data, mode=mode, device=device)


def decode_named(data: list[torch.Tensor], names: list[str], grey: bool,
                 device: torch.device) -> list[torch.Tensor]:
    """`decode_jpegs`, and where the batch fails (torchvision then names no image, e.g.
    "Failed to decode batch: 3" from nvJPEG), a FrameReadError naming the first image that
    fails on its own."""
    try:
        return decode_jpegs(data, grey, device)
    except RuntimeError as batch_error:
        for d, name in zip(data, names):
            try:
                decode_jpegs([d], grey, device)
            except RuntimeError as e:
                why = str(e).strip().splitlines()[-1].split(", ")[-1]
                raise FrameReadError(f"{name}: frame unreadable ({why})") from None
        raise batch_error


def check_jpeg(data: np.ndarray, name: str) -> None:
    """FrameReadError naming the image unless its bytes start with the JPEG start-of-image
    marker (FF D8): caught in the loader worker, before the batch decode."""
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise FrameReadError(f"{name}: frame unreadable (not a JPEG)")


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, h, w], bilinear (OpenCV's INTER_LINEAR mapping),
    antialiased when shrinking by more than 1.5x (where the CPU path averages areas)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    strong = size[0] * 1.5 < x.shape[-2] and size[1] * 1.5 < x.shape[-1]  # as transforms
    y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False,
                      antialias=strong)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _flip(x: torch.Tensor, modality: str) -> torch.Tensor:
    x = x.flip(-1)
    if modality == "flow":
        x[..., 0::2, :, :] = 255 - x[..., 0::2, :, :]
    return x


def decode_samples(samples: JpegBatch | list[JpegSample], device: torch.device) -> torch.Tensor:
    """A batch of `JpegSample` -> uint8 [B, K, C, S, S] (training) or [B, crops, K, C, S, S]
    (test), decoded and transformed on `device`. A corrupt JPEG raises FrameReadError
    naming its file."""
    batch = samples if isinstance(samples, JpegBatch) else pack_samples(samples)
    modality = batch[0].modality
    images = decode_named(batch.images(), batch.names(), modality != "rgb", device)
    out, pos = [], 0
    for s in batch:
        n = len(s.names)
        planes = images[pos:pos + n]
        pos += n
        per = n // s.num_segments
        x = torch.stack([torch.cat(planes[k * per:(k + 1) * per]) for k in range(s.num_segments)])
        if s.box is not None:  # training: one crop for all snippets, then the flip
            top, left, h, w = s.box
            x = _resize(x[..., top:top + h, left:left + w], (s.size, s.size))
            out.append(_flip(x, modality) if s.flip else x)
            continue
        sh, sw = short_side_size(x.shape[-2], x.shape[-1], s.scale_size)
        x = _resize(x, (sh, sw))
        crops = [x[..., t:t + s.size, l:l + s.size]
                 for t, l in crop_boxes(sh, sw, s.size, s.num_crops)]
        if s.num_crops == 10:
            crops += [_flip(c.clone(), modality) for c in crops]
        out.append(torch.stack(crops))
    return torch.stack(out)


def to_device(x, device: torch.device) -> torch.Tensor:
    """A loader batch on `device`: a uint8 tensor is moved, JPEG samples are decoded there."""
    if isinstance(x, list):
        return decode_samples(x, device)
    return x.to(device, non_blocking=True)

