"""Read a legacy PyTorch checkpoint (`torch.save` before 1.6) into NumPy, without torch.

The legacy file is five things one after another:

    pickle: the magic number 0x1950a86a20f9469cfc6c
    pickle: the protocol version (1001)
    pickle: a sys-info dict (little_endian, type_sizes)
    pickle: the state dict; each tensor is `_rebuild_tensor_v2(storage, offset, size, stride,
            ...)` and each storage a persistent id ("storage", type, key, location, numel, view)
    pickle: the list of storage keys, in the order their bytes follow
    then per key: an int64 element count and that many little-endian elements

Pickle runs whatever callable the file names, so every pickle here goes through an
unpickler whose `find_class` knows only `collections.OrderedDict` and the torch names a
state dict uses (mapped to the harmless stand-ins below); any other global is refused with
its name, before anything runs. The file's SHA-256 is checked against the expected value
first, so only a known file is parsed at all. The zip format of torch >= 1.6 is refused.
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

#: torch storage class -> element dtype (little-endian)
STORAGES = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8")}


class TorchFileError(ValueError):
    """The file cannot be read; the message is one line saying why."""


@dataclass(frozen=True, slots=True)
class _Storage:
    """A storage named by a persistent id; its bytes come after the state dict."""

    key: str
    dtype: np.dtype
    numel: int
    view: tuple[int, int] | None  # (offset, size): a view into the storage `key`


@dataclass(frozen=True, slots=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _ints(value, what: str) -> tuple[int, ...]:
    if not (isinstance(value, tuple) and all(type(v) is int and v >= 0 for v in value)):
        raise TorchFileError(f"tensor {what} {value!r} is not a tuple of counts")
    return value


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage) or type(storage_offset) is not int or storage_offset < 0:
        raise TorchFileError("a tensor does not point at a storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise TorchFileError(f"tensor size {size} and stride {stride} differ in length")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _Tensor):
        raise TorchFileError("a parameter does not hold a tensor")
    return data


class _StorageType:
    """Stands for torch.FloatStorage etc.; only ever compared, never called."""

    __slots__ = ("dtype",)

    def __init__(self, name: str):
        self.dtype = STORAGES[name]


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGES},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the allowed globals; storages by persistent id."""

    def __init__(self, file, allow_globals: bool):
        super().__init__(file)
        self.allow_globals = allow_globals
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        found = _ALLOWED.get((module, name)) if self.allow_globals else None
        if found is None:
            raise TorchFileError(f"refused to load global {module}.{name}: only tensors, "
                                 "storages and OrderedDict may appear in a weights file")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {str(pid)[:80]}")
        _, kind, key, _location, numel, view = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str) \
                or type(numel) is not int or numel < 0:
            raise TorchFileError(f"malformed storage reference {str(pid)[:80]}")
        if view is not None:  # (view key, offset, size) into the root storage `key`
            ok = (isinstance(view, tuple) and len(view) == 3
                  and all(type(v) is int and v >= 0 for v in view[1:]))
            if not ok:
                raise TorchFileError(f"malformed storage view {str(view)[:80]}")
            view = (view[1], view[2])
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(key, kind.dtype, numel, None)
        elif known.dtype != kind.dtype or known.numel != numel:
            raise TorchFileError(f"storage {key} is referenced with two types or sizes")
        return known if view is None else _Storage(key, kind.dtype, numel, view)


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(f, unpickler: _Unpickler | None = None):
    try:
        return (unpickler or _Unpickler(f, allow_globals=False)).load()
    except TorchFileError:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed pickle is one plain reason
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise TorchFileError(f"not a readable PyTorch checkpoint ({first[:200]})") from None


def _array(tensor: _Tensor, data: dict[str, np.ndarray]) -> np.ndarray:
    st = tensor.storage
    flat = data[st.key]
    if st.view is not None:
        start, length = st.view
        if start + length > flat.size:
            raise TorchFileError(f"storage view {st.view} overruns storage {st.key}")
        flat = flat[start:start + length]
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if all(tensor.size) and (last >= flat.size or math.prod(tensor.size) > flat.size):
        raise TorchFileError(f"a tensor of size {tensor.size} overruns storage {st.key}")
    if not all(tensor.size):
        return np.zeros(tensor.size, flat.dtype)
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset:], tensor.size, [s * flat.itemsize for s in tensor.stride],
        writeable=False)
    return np.array(view, dtype=np.float32 if flat.dtype.kind == "f" else flat.dtype)


def read_state_dict(path: Path | str, expected_sha256: str) -> dict[str, np.ndarray]:
    """name -> array (float32; integer counters such as BatchNorm's num_batches_tracked
    keep int64) from a legacy torch.save file whose SHA-256 is `expected_sha256`.
    Raises TorchFileError with a one-line reason, before parsing when the digest differs."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TorchFileError(f"{path} cannot be read ({e.strerror or e})") from None
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected_sha256.lower():
        raise TorchFileError(f"{path.name} has SHA-256 {actual[:16]}…, expected "
                             f"{expected_sha256[:16]}…: not the known weights file, not read")
    if raw[:4] == b"PK\x03\x04":
        raise TorchFileError(f"{path.name} is a torch >= 1.6 zip checkpoint; only the legacy "
                             "format is read")
    f = io.BytesIO(raw)
    if _load(f) != MAGIC:
        raise TorchFileError(f"{path.name} is not a legacy PyTorch checkpoint (wrong magic "
                             "number)")
    if _load(f) != PROTOCOL:
        raise TorchFileError(f"{path.name}: unsupported PyTorch protocol version")
    info = _load(f)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise TorchFileError(f"{path.name}: not a little-endian PyTorch checkpoint")
    unpickler = _Unpickler(f, allow_globals=True)
    state = _load(f, unpickler)
    keys = _load(f)
    if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
        raise TorchFileError(f"{path.name} does not hold a state dict of tensors")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise TorchFileError(f"{path.name}: malformed storage key list")
    data: dict[str, np.ndarray] = {}
    pos = f.tell()
    for key in keys:
        storage = unpickler.storages.get(key)
        if storage is None:
            raise TorchFileError(f"{path.name}: storage {key} is listed but never used")
        if pos + 8 > len(raw):
            raise TorchFileError(f"{path.name} is truncated (storage {key} missing)")
        (count,) = struct.unpack_from("<q", raw, pos)
        end = pos + 8 + count * storage.dtype.itemsize
        if count != storage.numel or end > len(raw):
            raise TorchFileError(f"{path.name} is truncated or corrupt at storage {key}")
        data[key] = np.frombuffer(raw, storage.dtype, count, pos + 8)
        pos = end
    missing = set(unpickler.storages) - set(data)
    if missing:
        raise TorchFileError(f"{path.name}: storage {sorted(missing)[0]} has no data")
    return {name: _array(t, data) for name, t in state.items()}
