"""Tensors inside untrusted pickles, rebuilt as numpy arrays without importing torch.

MMAction2 1.x `tools/test.py --dump` writes `pickle.dump(list of dicts)` whose `pred_score` and
`gt_label` are torch tensors. Plain pickling of a CPU tensor names two torch functions:

    torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta])
    torch.storage._load_from_bytes(b)   # b: the storage in torch's legacy `torch.save` format

`torch.storage._load_from_bytes` is `torch.load` of bytes the file chose, which can run any
code; so neither function is called. The legacy format is read here instead: three small
pickles (magic number, protocol version, machine info), the storage's header pickle (whose
only global is the storage type, e.g. `torch.FloatStorage`, mapped to a numpy dtype), the list
of storage keys, then per storage an int64 element count and the raw little-endian bytes.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

from .errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
           "BFloat16Storage": "bfloat16"}


class TensorPickleError(UserError):
    """A tensor inside a pickle that is not what plain pickling of a CPU tensor writes."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _HeaderUnpickler(pickle.Unpickler):
    """The legacy format's small pickles: built-in values, and storage types by name."""

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise TensorPickleError(f"refused to load {module}.{name} inside a tensor's storage")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or pid[3] != "cpu"):
            raise TensorPickleError(f"unexpected storage reference {pid!r:.80}")
        return pid  # ('storage', type, key, location, numel[, view])


def load_storage(data: bytes) -> np.ndarray:
    """`torch.storage._load_from_bytes(data)`, as a 1-D numpy array of the storage's dtype."""
    if not isinstance(data, (bytes, bytearray)):
        raise TensorPickleError(f"a tensor storage must be bytes, got {type(data).__name__}")
    f = io.BytesIO(data)
    try:
        if _HeaderUnpickler(f).load() != LEGACY_MAGIC:
            raise TensorPickleError("a tensor storage that is not in torch's legacy format")
        _HeaderUnpickler(f).load()  # protocol version
        info = _HeaderUnpickler(f).load()
        if not isinstance(info, dict) or not info.get("little_endian", False):
            raise TensorPickleError("a big-endian tensor storage")
        ref = _HeaderUnpickler(f).load()
        keys = _HeaderUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise TensorPickleError(f"a truncated or malformed tensor storage ({e})") from None
    if not (isinstance(ref, tuple) and isinstance(keys, list) and len(keys) == 1
            and keys[0] == ref[2]):
        raise TensorPickleError("a tensor storage with more than one storage record")
    dtype = _DTYPES[ref[1].name]
    count = int.from_bytes(f.read(8), "little", signed=True)
    width = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    raw = f.read(count * width)
    if count < 0 or len(raw) != count * width or count != ref[4]:
        raise TensorPickleError(f"a tensor storage that should hold {ref[4]} values is cut short")
    if dtype == "bfloat16":  # the top half of a float32
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(dtype)


def rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None,
                   metadata=None) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2`, as a numpy array (a copy; gradients dropped)."""
    if not isinstance(storage, np.ndarray):
        raise TensorPickleError("a tensor whose storage is not a plain CPU storage")
    try:
        offset, size, stride = int(offset), tuple(map(int, size)), tuple(map(int, stride))
    except (TypeError, ValueError):
        raise TensorPickleError("a tensor with a malformed shape or stride") from None
    if len(size) != len(stride) or min((*size, *stride, offset, 0)) < 0:
        raise TensorPickleError(f"a tensor with shape {size} and stride {stride}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(storage):
        raise TensorPickleError(f"a tensor of shape {size} reaching past its storage of "
                                f"{len(storage)} values")
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * item for s in stride]).copy()


# what `find_class` may resolve these two names to: our readers, never torch's functions
GLOBALS = {("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
           ("torch.storage", "_load_from_bytes"): load_storage}
