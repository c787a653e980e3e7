"""Reads PyTorch weight files (`pytorch_model.bin`) without torch and without running them.

A `torch.save` file is a pickle, and a pickle can name any Python callable to run while it
loads. This reader runs none: its unpickler resolves only what a state dict of tensors needs
(`collections.OrderedDict`, torch's tensor-rebuild functions and its storage types, each
replaced here by a numpy stand-in) and refuses any other name with a `CheckpointError`,
before calling anything. Tensor data is read as raw bytes and viewed through its size,
stride and offset, each checked against its storage.

Both layouts `torch.save` writes are read:
- the zip archive (torch >= 1.6): `ARCHIVE/data.pkl` and one `ARCHIVE/data/KEY` entry of raw
  bytes per storage, little-endian unless `ARCHIVE/byteorder` says otherwise;
- the legacy stream (`_use_new_zipfile_serialization=False`, old checkpoints): pickles of a
  magic number, the protocol version, system information and the object, then the storage
  keys, then each storage as an int64 element count and its bytes.

Tensors keep their dtype (bfloat16 as `ml_dtypes.bfloat16`, as the safetensors reader gives it).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from samp_jax.models.errors import CheckpointError

# torch's storage type names -> the numpy dtype of their elements.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32), "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16), "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64), "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16), "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8), "BoolStorage": np.dtype(np.bool_),
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """What the unpickler gives for `torch.FloatStorage` and its kin."""
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclasses.dataclass(eq=False)
class _Storage:
    """One storage: its dtype and element count, its bytes once read (`data`), or, for a
    legacy view, the storage it views and where in it (`base`, `offset`)."""
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None
    base: "_Storage | None" = None
    offset: int = 0

    def elements(self) -> np.ndarray:
        if self.base is not None:
            return self.base.elements()[self.offset:self.offset + self.numel]
        assert self.data is not None, f"storage {self.key} was never read"
        return self.data


@dataclasses.dataclass(eq=False)
class _TensorRef:
    """A tensor to build once every storage is read."""
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def read_torch_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict in a `torch.save` file, as numpy arrays, without torch and without
    running code from the file.

    Raises:
      CheckpointError: naming the file: not a PyTorch weight file, a truncated or damaged
        one, a name in its pickle other than those a state dict of tensors needs, a tensor
        outside its storage, big-endian data, or an object that is not a flat mapping of
        names to tensors.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _materialize(path, *_read_zip(path))
        with open(path, "rb") as file:
            return _materialize(path, *_read_legacy(path, file))
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, ValueError,
            TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError) as e:
        raise CheckpointError(path, problem=f"is not a readable PyTorch weight file ({e!r})") from None


class _Unpickler(pickle.Unpickler):
    """Resolves only the names a state dict of tensors needs; see the module docstring."""

    def __init__(self, file: BinaryIO, path: Path, storages: dict[str, _Storage]):
        super().__init__(file)
        self._path = path
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"),
                              ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(self._path, problem=(
            f"names {module}.{name} in its pickle; a weight file needs only tensors, so it is "
            "not loaded (nothing from it was run). If the file is trusted, convert it to "
            "model.safetensors with torch and transformers"))

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
            raise CheckpointError(self._path, problem=f"refers to {pid!r}, which is not a tensor storage")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType) or not _is_count(numel):
            raise CheckpointError(self._path, problem=f"has a storage record {pid!r} that is not "
                                                      "a storage type and an element count")
        key = str(key)
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, int(numel))
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise CheckpointError(self._path, problem=f"describes storage {key} twice, differently")
        if view is None:
            return storage
        view_key, offset, view_numel = view  # legacy files: a view into a root storage
        if not (_is_count(offset) and _is_count(view_numel) and offset + view_numel <= numel):
            raise CheckpointError(self._path, problem=f"has a storage view {view!r} outside "
                                                      f"storage {key} of {numel} elements")
        return _Storage(str(view_key), storage.dtype, int(view_numel), base=storage, offset=int(offset))


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest) -> _TensorRef:
    """Stands in for `torch._utils._rebuild_tensor(_v2)`; checked when materialized."""
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, _requires_grad, _backward_hooks, *_rest):
    """Stands in for `torch._utils._rebuild_parameter`: a parameter is its tensor."""
    return data


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_zip(path: Path) -> tuple[Any, dict[str, _Storage]]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(path, problem="is a zip archive but not a torch.save file "
                                                "(no ARCHIVE/data.pkl)")
        prefix = pickles[0][:-len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise CheckpointError(path, problem="holds big-endian tensors, which are not read")
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), path, storages).load()
        for key, storage in storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise CheckpointError(path, problem=f"has no data for storage {key} ({entry})")
            storage.data = _elements(path, key, archive.read(entry), storage)
    return obj, storages


def _read_legacy(path: Path, file: BinaryIO) -> tuple[Any, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}

    def load():
        return _Unpickler(file, path, storages).load()
    try:
        magic = load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError):
        magic = None  # not a pickle at all
    if magic != LEGACY_MAGIC:
        raise CheckpointError(path, problem="is neither a zip archive nor a legacy torch.save "
                                            "stream (no magic number)")
    if load() != LEGACY_PROTOCOL:
        raise CheckpointError(path, problem="is a legacy torch.save stream of an unknown protocol")
    info = load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise CheckpointError(path, problem="holds big-endian tensors, which are not read")
    obj = load()
    keys = load()
    if not isinstance(keys, list):
        raise CheckpointError(path, problem="has no list of storage keys after its object")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointError(path, problem=f"lists storage {key}, which no tensor uses")
        head = file.read(8)
        if len(head) < 8:
            raise CheckpointError(path, problem=f"ends before storage {key}; the file is truncated")
        (count,) = struct.unpack("<q", head)
        if count != storage.numel:
            raise CheckpointError(path, problem=f"storage {key} has {count} elements, "
                                                f"its record says {storage.numel}")
        storage.data = _elements(path, key, file.read(count * storage.dtype.itemsize), storage)
    return obj, storages


def _elements(path: Path, key: str, raw: bytes, storage: _Storage) -> np.ndarray:
    expected = storage.numel * storage.dtype.itemsize
    if len(raw) != expected:
        raise CheckpointError(path, problem=f"storage {key} has {len(raw)} bytes, expected "
                                            f"{expected} ({storage.numel} × {storage.dtype.name}); "
                                            "the file is truncated or damaged")
    return np.frombuffer(raw, storage.dtype)


def _materialize(path: Path, obj: Any, storages: dict[str, _Storage]) -> dict[str, np.ndarray]:
    """The state dict's arrays, each checked against its storage and copied out of it."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(path, problem=f"holds a {type(obj).__name__}, not a state dict "
                                            "(a mapping of names to tensors)")
    state = {}
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise CheckpointError(path, problem=f"has {name!r} = a {type(value).__name__}, not a "
                                                "tensor; a state dict holds only tensors")
        state[name] = _array(path, name, value)
    return state


def _array(path: Path, name: str, ref: _TensorRef) -> np.ndarray:
    elements = ref.storage.elements()
    size, stride, offset = ref.size, ref.stride, ref.offset
    if not (_is_count(offset) and len(size) == len(stride)
            and all(_is_count(n) for n in size) and all(_is_count(s) for s in stride)):
        raise CheckpointError(path, problem=f"tensor {name!r} has size {size}, stride {stride} "
                                            f"and offset {offset!r}, which are not a tensor's")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(elements):
        raise CheckpointError(path, problem=f"tensor {name!r} (size {size}, stride {stride}, "
                                            f"offset {offset}) reaches past its storage of "
                                            f"{len(elements)} elements")
    itemsize = elements.dtype.itemsize
    array = np.lib.stride_tricks.as_strided(elements[offset:] if all(size) else elements[:0],
                                            shape=size, strides=[s * itemsize for s in stride],
                                            writeable=False)
    return array.copy()  # contiguous, and no longer a view of the file's bytes
