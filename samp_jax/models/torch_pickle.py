"""Reads PyTorch weight files (`pytorch_model.bin`) without torch and without running them.

A `torch.save` file is a pickle, and a pickle can name any Python callable to run while it
loads. This reader runs none: its unpickler resolves only what a state dict of tensors needs
(`collections.OrderedDict`, torch's tensor-rebuild functions and its storage types, each
replaced here by a numpy stand-in) and refuses any other name with a `CheckpointError`,
before calling anything. Its stand-ins cannot be rewritten by the pickle (BUILD is refused on
them). Tensor data is read as raw bytes and viewed through its size, stride and offset, each
checked against its storage; a tensor may not hold more elements than its storage, and all
tensors together may not copy more than `MAX_COPIES` times the bytes of the storages, so a
small file cannot claim unbounded memory.

Both layouts `torch.save` writes are read:
- the zip archive (torch >= 1.6; a file that starts with a zip entry, as torch decides):
  `ARCHIVE/data.pkl`, `ARCHIVE/version` and one `ARCHIVE/data/KEY` entry of raw bytes per
  storage, little-endian unless `ARCHIVE/byteorder` says otherwise. torch writes every entry
  stored (uncompressed); a compressed or encrypted entry, a name given twice (which zip
  readers resolve differently) and a `data.pkl` over `MAX_PICKLE_BYTES` are refused before
  anything is inflated or unpickled;
- the legacy stream (`_use_new_zipfile_serialization=False`, old checkpoints): pickles of a
  magic number, the protocol version, system information and the object, then the storage
  keys, then each storage as an int64 element count and its bytes (a count the rest of the
  file cannot hold is refused before reading).

Tensors keep their dtype (bfloat16 as `ml_dtypes.bfloat16`, as the safetensors reader gives
it). Any failure is a `CheckpointError` naming the file.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
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
ZIP_MAGIC = b"PK\x03\x04"  # torch reads a file as an archive when it starts with an entry
MAX_PICKLE_BYTES = 1 << 30  # a data.pkl names tensors: about 100 bytes each
MAX_COPIES = 4  # all tensors together copy at most this many times their storages' bytes
# Errors a damaged file can raise while being parsed; each becomes a CheckpointError.
PARSE_ERRORS = (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, ValueError,
                TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError,
                OverflowError, RuntimeError, NotImplementedError, MemoryError, RecursionError)


class _NoState:
    """Refuses the pickle's BUILD opcode: a stand-in's fields are set only by this reader."""

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"sets the state of a {type(self).__name__.lstrip('_')}, "
                                     "which a weight file never does")


@dataclasses.dataclass(frozen=True)
class _StorageType(_NoState):
    """What the unpickler gives for `torch.FloatStorage` and its kin."""
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclasses.dataclass(eq=False)
class _Storage(_NoState):
    """One storage: its dtype and element count, its bytes once read (`data`), or, for a
    legacy view, the storage it views and where in it (`base`, `offset`)."""
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None
    base: "_Storage | None" = None
    offset: int = 0

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def elements(self) -> np.ndarray:
        if self.base is not None:  # a view of a root storage (never itself a view)
            return self.base.elements()[self.offset:self.offset + self.numel]
        if self.data is None:
            raise ValueError(f"storage {self.key} is used by a tensor but holds no data")
        return self.data


@dataclasses.dataclass(eq=False)
class _TensorRef(_NoState):
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
        names to tensors (a training checkpoint, its state dict under a key such as
        PyTorch Lightning's 'state_dict', is named as such).
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            if file.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
                return _materialize(path, *_read_zip(path))
            file.seek(0)
            return _materialize(path, *_read_legacy(path, file))
    except CheckpointError:
        raise
    except PARSE_ERRORS as e:
        problem = str(e)[:300] or type(e).__name__
        raise CheckpointError(path, problem=f"is not a readable PyTorch weight file "
                                            f"({type(e).__name__}: {problem})") from None


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
        if module.startswith("torch") and (name.endswith("Storage") or name.startswith("_rebuild")):
            raise CheckpointError(self._path, problem=(
                f"holds tensors that need {module}.{name}: a dtype or layout samp-jax does not "
                f"read (it reads {', '.join(sorted(STORAGE_DTYPES))} dense tensors)"))
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
        if not (_is_count(offset) and _is_count(view_numel) and offset + view_numel <= numel
                and str(view_key) not in self._storages):
            raise CheckpointError(self._path, problem=f"has a storage view {view!r} outside "
                                                      f"storage {key} of {numel} elements")
        return _Storage(str(view_key), storage.dtype, int(view_numel), base=storage, offset=int(offset))


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest) -> _TensorRef:
    """Stands in for `torch._utils._rebuild_tensor(_v2)`; checked when materialized."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"rebuilds a tensor from a {type(storage).__name__}, not a "
                                     "storage")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, _requires_grad, _backward_hooks, *_rest):
    """Stands in for `torch._utils._rebuild_parameter`: a parameter is its tensor."""
    return data


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_zip(path: Path) -> tuple[Any, dict[str, _Storage]]:
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        names = [e.filename for e in entries]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise CheckpointError(path, problem=f"names {twice[:3]} twice in its archive; zip "
                                                "readers disagree on which copy counts")
        by_name = {e.filename: e for e in entries}
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1 or f"{pickles[0][:-len('data.pkl')]}version" not in by_name:
            raise CheckpointError(path, problem="is a zip archive but not a torch.save file "
                                                "(no ARCHIVE/data.pkl and ARCHIVE/version)")
        prefix = pickles[0][:-len("data.pkl")]

        def read(name: str, size: int | None = None) -> bytes:
            entry = by_name[name]
            if entry.compress_type != zipfile.ZIP_STORED or entry.flag_bits & 0x1:
                raise CheckpointError(path, problem=f"has {name} compressed or encrypted; "
                                                    "torch.save stores every entry as it is")
            if size is not None and entry.file_size != size:
                raise CheckpointError(path, problem=f"has {name} of {entry.file_size} bytes, "
                                                    f"expected {size}; the file is damaged")
            return archive.read(entry)
        if f"{prefix}byteorder" in by_name and read(f"{prefix}byteorder").strip() != b"little":
            raise CheckpointError(path, problem="holds big-endian tensors, which are not read")
        if by_name[pickles[0]].file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(path, problem=f"has a data.pkl of {by_name[pickles[0]].file_size} "
                                                f"bytes, more than a state dict's {MAX_PICKLE_BYTES}")
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(read(pickles[0])), path, storages).load()
        for key, storage in storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in by_name:
                raise CheckpointError(path, problem=f"has no data for storage {key} ({entry})")
            expected = storage.nbytes
            if by_name[entry].file_size != expected:
                raise CheckpointError(path, problem=_short_storage(key, by_name[entry].file_size,
                                                                   storage))
            storage.data = np.frombuffer(read(entry, expected), storage.dtype)
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
    if sorted(map(str, keys)) != sorted(storages):
        raise CheckpointError(path, problem=f"lists storages {sorted(map(str, keys))[:5]} after its "
                                            f"object, but its tensors use {sorted(storages)[:5]}")
    size = os.fstat(file.fileno()).st_size
    for key in keys:
        storage = storages[str(key)]
        head = file.read(8)
        if len(head) < 8:
            raise CheckpointError(path, problem=f"ends before storage {key}; the file is truncated")
        (count,) = struct.unpack("<q", head)
        if count != storage.numel:
            raise CheckpointError(path, problem=f"storage {key} has {count} elements, "
                                                f"its record says {storage.numel}")
        expected = count * storage.dtype.itemsize
        if expected > size - file.tell():
            raise CheckpointError(path, problem=_short_storage(key, size - file.tell(), storage))
        storage.data = np.frombuffer(file.read(expected), storage.dtype)
    return obj, storages


def _short_storage(key: str, found: int, storage: _Storage) -> str:
    expected = storage.nbytes
    return (f"storage {key} has {found} bytes, expected {expected} ({storage.numel} × "
            f"{storage.dtype.name}); the file is truncated or damaged")


def _materialize(path: Path, obj: Any, storages: dict[str, _Storage]) -> dict[str, np.ndarray]:
    """The state dict's arrays, each checked against its storage and copied out of it."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(path, problem=f"holds a {type(obj).__name__}, not a state dict "
                                            "(a mapping of names to tensors)")
    nested = [key for key, value in obj.items() if isinstance(value, dict) and value
              and all(isinstance(v, _TensorRef) for v in value.values())]
    if nested and not all(isinstance(value, _TensorRef) for value in obj.values()):
        key = "state_dict" if "state_dict" in nested else nested[0]  # PyTorch Lightning's name
        raise CheckpointError(path, problem=(
            f"is a training checkpoint (a dict of {sorted(obj)[:8]}), not a state dict: its "
            f"weights are under {key!r}. Save the model's own weights: load them into the HF "
            "model (without the 'model.' prefix PyTorch Lightning puts before each name) and "
            f"save_pretrained it, or save checkpoint[{key!r}], that prefix removed, as "
            "pytorch_model.bin"))
    budget = MAX_COPIES * sum(s.nbytes for s in storages.values())
    state = {}
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise CheckpointError(path, problem=f"has {name!r} = a {type(value).__name__}, not a "
                                                "tensor; a state dict holds only tensors")
        state[name] = _array(path, name, value)
        budget -= state[name].nbytes
        if budget < 0:
            raise CheckpointError(path, problem=f"has tensors that together copy more than "
                                                f"{MAX_COPIES} times the bytes of its storages")
    return state


def _array(path: Path, name: str, ref: _TensorRef) -> np.ndarray:
    elements = ref.storage.elements()
    size, stride, offset = ref.size, ref.stride, ref.offset
    if not (_is_count(offset) and len(size) == len(stride)
            and all(_is_count(n) for n in size) and all(_is_count(s) for s in stride)):
        raise CheckpointError(path, problem=f"tensor {name!r} has size {size}, stride {stride} "
                                            f"and offset {offset!r}, which are not a tensor's")
    stride = tuple(0 if n == 1 else s for n, s in zip(size, stride))  # a lone index never moves
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(elements):
        raise CheckpointError(path, problem=f"tensor {name!r} (size {size}, stride {stride}, "
                                            f"offset {offset}) reaches past its storage of "
                                            f"{len(elements)} elements")
    count = int(np.prod(size, dtype=object))
    if count > len(elements):  # broadcast by a zero stride: a small file, a huge copy
        raise CheckpointError(path, problem=f"tensor {name!r} has {count} elements, more than its "
                                            f"storage's {len(elements)}")
    itemsize = elements.dtype.itemsize
    array = np.lib.stride_tricks.as_strided(elements[offset:] if all(size) else elements[:0],
                                            shape=size, strides=[s * itemsize for s in stride],
                                            writeable=False)
    return array.copy()  # contiguous, and no longer a view of the file's bytes
