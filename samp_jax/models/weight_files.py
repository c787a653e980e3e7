"""What the checkpoint and sentence-transformers readers share about weight files: their names,
reading and writing safetensors files, and the checks every float tensor passes before it is
used."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open

from samp_jax.core.input_files import check_regular
from samp_jax.models.errors import CheckpointError

SAFETENSORS = "model.safetensors"
TORCH_PICKLE = "pytorch_model.bin"
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how safetensors (Rust's io::Error) ends one


@contextlib.contextmanager
def writing_safetensors(path: str | os.PathLike) -> Iterator[None]:
    """Turns the `SafetensorError` of a safetensors write into the `OSError` it stands for.

    safetensors raises its own error, which is no `OSError` and names no file, for a full disk
    ("Error while serializing: I/O error: No space left on device (os error 28)"), a file-size
    limit ("File too large (os error 27)") and the like. Here it becomes
    `OSError(errno, strerror, path)`, so `str(e)` names `path` (the file as the caller calls it:
    where it ends up, not the temporary copy being written) and `e.errno` says what failed.

    Raises:
      OSError: the write failed with an OS error (errno set), or another I/O error (none).
      ValueError: safetensors refused the tensors themselves.
    """
    try:
        yield
    except SafetensorError as e:
        message = str(e)
        match = _OS_ERROR.search(message)
        if match:
            code = int(match.group(1))
            raise OSError(code, os.strerror(code) if code in errno.errorcode else message,
                          str(path)) from None
        if "I/O error" in message:
            raise OSError(f"could not write {path}: {message}") from None
        raise ValueError(f"could not write {path}: {message}") from None


_TF_FORMAT = ("is a TensorFlow-format safetensors file (its metadata says format='tf'; keys "
              "such as {keys}), as HF's TF classes write it; samp-jax reads the PyTorch format "
              "(PyTorch key names). HF transformers 4.x converts it as it loads it: save a "
              "PyTorch-format copy with the class config.json's architectures names (e.g. "
              "BertForSequenceClassification).from_pretrained(folder).save_pretrained(new_folder)"
              " and load that")


def read_safetensors(files: Sequence[Path]) -> dict[str, np.ndarray]:
    """Every tensor of the safetensors `files` (shards of one checkpoint), by name.

    Raises:
      FileNotFoundError: a file is missing.
      CheckpointError: a file is truncated, not safetensors at all, or TensorFlow-format
        (metadata `format: tf`, TF's key names).
    """
    state = {}
    for file in files:
        if not check_regular(file):  # a FIFO or a device is refused, named
            raise FileNotFoundError(f"safetensors shard {file} is missing")
        check_not_lfs_pointer(file)
        # framework="flax" reads bfloat16 too, which numpy alone cannot.
        try:
            with safe_open(str(file), framework="flax") as f:
                if (f.metadata() or {}).get("format") == "tf":  # HF's TF classes wrote it
                    raise CheckpointError(file, problem=_TF_FORMAT.format(keys=sorted(f.keys())[:2]))
                float8 = {}
                for key in f.keys():
                    dtype = f.get_slice(key).get_dtype()
                    if dtype in FLOAT8_DTYPES:
                        float8[key] = state[key] = None  # its place, filled below
                    else:
                        state[key] = np.asarray(f.get_tensor(key))
        except SafetensorError as e:
            raise CheckpointError(file, problem=f"is not a readable safetensors file ({e})") from None
        if float8:
            state |= _float8_tensors(file, float8)
    return state


LFS_POINTER = b"version https://git-lfs.github.com/spec/"
"""How a Git LFS pointer file begins: what a clone without git-lfs holds for each large file."""


def check_not_lfs_pointer(file: Path) -> None:
    """Refuses a weights file that is a Git LFS pointer, not the weights.

    Raises:
      CheckpointError: naming `file` and how to fetch the weights.
    """
    with open(file, "rb") as stream:
        if stream.read(len(LFS_POINTER)) == LFS_POINTER:
            raise CheckpointError(file, problem="is a Git LFS pointer file, not the weights (the "
                                  "repository was cloned without git-lfs): run `git lfs pull` "
                                  "in its folder, or download the file itself")


FLOAT8_DTYPES = {"F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2}
"""safetensors' float8 dtypes, which its flax and numpy readers cannot give (numpy has none)."""


def _float8_tensors(file: Path, keys: dict) -> dict[str, np.ndarray]:
    """The float8 tensors `keys` of a safetensors `file` (one header read for all), from its
    bytes, upcast to float32 as HF's `from_pretrained` upcasts them to the model's dtype."""
    tensors = {}
    with open(file, "rb") as stream:
        header_bytes = int.from_bytes(stream.read(8), "little")
        header = json.loads(stream.read(header_bytes))
        for key in keys:
            entry = header[key]
            start, end = entry["data_offsets"]
            stream.seek(8 + header_bytes + start)
            raw = np.frombuffer(stream.read(end - start), dtype=FLOAT8_DTYPES[entry["dtype"]])
            tensors[key] = raw.reshape(entry["shape"]).astype(np.float32)
    return tensors


def check_float_weight(path: Path, key: str, value: np.ndarray) -> None:
    """Refuses a weight that is not a float tensor of finite values.

    Raises:
      CheckpointError: naming `path` and the tensor `key`.
    """
    # jnp.issubdtype, not np's: bfloat16 / float8 (ml_dtypes) are floats too
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise CheckpointError(path, problem=f"tensor {key} has dtype {value.dtype}, expected a float "
                              "dtype (float32, float16 or bfloat16)")
    if not np.all(np.isfinite(value)):
        raise CheckpointError(path, problem=f"tensor {key} has non-finite values (NaN or Inf), "
                              "expected finite")
