"""One Dataset for both streams: the modality decides what a snippet is.

Item (train): (uint8 [K, C, H, W], label, video_id) with C = 3 (RGB, one frame per segment)
or C = 2L (flow: x_0, y_0, x_1, y_1, ... of L consecutive fields). Item (test): the same for
all test segments and crops, uint8 [crops, S, C, H, W]. Items stay uint8 (4x less to copy
between processes and to the GPU); the model converts and normalises the batch on its device.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..errors import UserError
from .frames import FrameReadError, Jpeg, RawframeSource, VideoFileSource, jpeg_size
from .jpeg_batch import JpegSample, check_jpeg, collate_jpeg, shared_empty
from .sampling import test_indices, train_indices
from .splits import VideoRecord
from .transforms import (
    TSN_SCALES,
    Plane,
    eval_sample,
    flow_snippets,
    multiscale_crop_box,
    train_sample,
)

MODALITIES = ("rgb", "flow")
_TUNED_PID: int | None = None


def keep_freed_memory() -> None:
    """Once per process: let glibc keep freed heap memory instead of handing it back.

    A flow sample decodes 30 planes (~2.6 MB at 340x256) and frees them together; by default
    glibc returns the top of the heap to the OS past 128 KiB and maps any block over 128 KiB
    afresh, so every sample page-faults its planes in again. Profiled on the 2-core machine:
    the same 6000 `cv2.imread` calls took twice as long inside the loader as in a bare loop;
    keeping 64 MiB of freed heap (blocks up to 16 MiB served from it) removes most of the gap.
    Only the allocator's thresholds change; elsewhere than glibc this does nothing."""
    global _TUNED_PID
    if _TUNED_PID == os.getpid():
        return
    _TUNED_PID = os.getpid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 16 << 20)
    mallopt(m_trim_threshold, 64 << 20)


@dataclass(frozen=True)
class ClipConfig:
    """How a video becomes a tensor (saved with every run)."""

    modality: str = "rgb"
    num_segments: int = 3
    new_length: int = 1  # snippet length L: 1 for RGB, 5 (TSN) or 10 (two-stream) for flow
    input_size: int = 224
    scale_size: int = 256  # short side before test crops
    test_segments: int = 25
    test_crops: int = 1
    average_views: str = "score"  # score | prob: how test crops are averaged
    flip: bool = True
    scales: tuple[float, ...] = TSN_SCALES


class VideoDataset(Dataset):
    """TSN samples of `records` read from `source` (rawframes or video files)."""

    def __init__(self, records: list[VideoRecord], source: RawframeSource | VideoFileSource,
                 clip: ClipConfig, train: bool, seed: int = 0, decode: str = "cpu",
                 feature_stride: int = 0):
        """`decode="gpu"`: items are `JpegSample`s (bytes, crop and flip) decoded on the
        device by `jpeg_batch.decode_samples`; it needs rawframes."""
        if clip.modality not in MODALITIES:
            raise UserError(f"unknown modality {clip.modality!r}; choose from {MODALITIES}")
        if clip.modality == "rgb" and clip.new_length != 1:
            raise UserError("the RGB stream samples one frame per segment (new_length=1)")
        self.records = records
        self.source = source
        self.clip = clip
        self.train = train
        self.seed = seed
        self.epoch = 0
        if decode not in ("cpu", "gpu"):
            raise UserError(f"--decode must be cpu or gpu, got {decode!r}")
        if decode == "gpu" and not isinstance(source, RawframeSource):
            raise UserError("--decode gpu reads JPEG rawframes (--frames); RGB read from video "
                            "files is decoded on the CPU: use --decode cpu")
        self.decode = decode
        self.feature_stride = feature_stride  # test: a snippet every S frames, not K segments

    def set_epoch(self, epoch: int) -> None:
        """New random draws each epoch, reproducible from (seed, epoch, index)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def indices(self, record: VideoRecord, rng: np.random.Generator | None) -> np.ndarray:
        """0-based frame (RGB) or flow-field (flow) indices, int64 [K, L]."""
        c = self.clip
        n = record.num_frames if c.modality == "rgb" else record.num_flows
        if n < 1:
            what = "frames" if c.modality == "rgb" else "flow fields"
            raise FrameReadError(f"{record.video_id}: no {what} found (was it extracted?)")
        if self.train:
            return train_indices(n, c.num_segments, c.new_length, rng)
        if self.feature_stride:
            return test_indices(n, max(1, n // self.feature_stride), c.new_length)
        return test_indices(n, c.test_segments, c.new_length)

    def snippets(self, record: VideoRecord, idx: np.ndarray) -> list[list[Plane]]:
        """The snippets at `idx` [K, L]: per snippet its planes in channel order (BGR images or
        grey flow planes), decoded as the transform places them."""
        if self.clip.modality == "rgb":
            return [[p] for p in self.source.rgb_planes(record.video_id, idx[:, 0])]
        planes = self.source.flow_planes(record.video_id, idx.reshape(-1))
        return flow_snippets(list(zip(planes[0::2], planes[1::2])), idx.shape[0])

    def jpegs(self, record: VideoRecord, idx: np.ndarray) -> list[Jpeg]:
        """The JPEG bytes of the images at `idx` [K, L], in the order `snippets` places them."""
        if self.clip.modality == "rgb":
            return self.source.rgb_bytes(record.video_id, idx[:, 0])
        return self.source.flow_bytes(record.video_id, idx.reshape(-1))

    def jpeg_sample(self, record: VideoRecord, epoch: int, i: int) -> JpegSample:
        """The bytes of the sample's images and the same crop / flip draws as the CPU path."""
        c = self.clip
        rng = np.random.default_rng([self.seed, epoch, i]) if self.train else None
        idx = self.indices(record, rng)
        jpegs = self.jpegs(record, idx)
        for j in jpegs:  # loose files and pack entries alike, named before the batch decode
            check_jpeg(j.data, j.name)
        data, names = [j.data for j in jpegs], tuple(j.name for j in jpegs)
        if not self.train:
            return JpegSample(data, names, idx.shape[0], c.modality, c.input_size,
                              scale_size=c.scale_size, num_crops=c.test_crops)
        h, w = jpeg_size(jpegs[0].data, jpegs[0].name)
        box = multiscale_crop_box(h, w, c.input_size, rng, c.scales)
        flip = bool(c.flip and rng.random() < 0.5)
        return JpegSample(data, names, idx.shape[0], c.modality, c.input_size, box=box,
                          flip=flip)

    def __getitem__(self, item: int | tuple[int, int], out: np.ndarray | None = None
                    ) -> tuple[torch.Tensor, int, str]:
        """`item`: an index, or (epoch, index) from a sampler that carries the epoch (so
        persistent loader workers need no `set_epoch`). `out`: where to write a training
        sample (a row of a batch)."""
        keep_freed_memory()
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        record, c = self.records[i], self.clip
        if self.decode == "gpu":
            return self.jpeg_sample(record, epoch, i), record.label, record.video_id
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, i])
            x = train_sample(self.snippets(record, self.indices(record, rng)), c.modality,
                             c.input_size, rng, c.scales, c.flip, record.video_id, bgr=True,
                             out=out)
        else:
            x = eval_sample(self.snippets(record, self.indices(record, None)), c.modality,
                            c.input_size, c.scale_size, c.test_crops, record.video_id,
                            bgr=True)
        return x, record.label, record.video_id

    def __getitems__(self, items: list) -> list:
        """The items of one DataLoader batch. Training samples (one shape) are written straight
        into the rows of one batch tensor, in shared memory inside a loader worker, so
        `collate_samples` hands that tensor on instead of stacking the samples: one copy of
        the batch less (12 MB for 8 flow samples at 224 px), and in a worker the tensor
        reaches the trainer without another."""
        if not self.train or self.decode == "gpu" or not items:
            return [self[i] for i in items]
        c = self.clip
        channels = 3 if c.modality == "rgb" else 2 * c.new_length
        x = shared_empty((len(items), c.num_segments, channels, c.input_size, c.input_size))
        batch = SampleBatch(self.__getitem__(i, out=x[b].numpy()) for b, i in enumerate(items))
        batch.x = x
        return batch


class SampleBatch(list):
    """(sample, label, video_id) items whose samples are the rows of `x`."""

    x: torch.Tensor


def collate_samples(items: list) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """DataLoader collate for `VideoDataset`: a `SampleBatch`'s tensor as it is, anything
    else by torch's default collate (which stacks); the same (x, labels, video ids) either
    way."""
    if isinstance(items, SampleBatch):
        return items.x, torch.tensor([it[1] for it in items]), tuple(it[2] for it in items)
    return default_collate(items)


def collate_for(decode: str):
    """The DataLoader collate for a `VideoDataset` decoding on `decode` ("cpu" | "gpu")."""
    return collate_jpeg if decode == "gpu" else collate_samples
