"""Reading a quantized model folder (`QuantizedModel.save`'s format) so that what is checked is
what is used.

- One read of each file: `saved.py` reads the sidecar (at most `SIDECAR_LIMIT`), every file the manifest lists and the
  tokenizer files into memory through one open handle on the folder, and the manifest check
  hashes those same bytes, which are then parsed. A save that replaces the folder meanwhile (a
  rename, `samp_jax.core.atomic`) cannot mix files of two saves: every file comes from the
  folder as it was opened; if that folder is deleted before its files are read, the load
  stops with "replaced while it was read", as it does when a listed file is gone from a folder
  that no longer has the name it was opened by (a save removing it file by file).
- Only the authenticated format: the sidecar lists every file with its sha256 and size
  (format version 2 and 3). Version 1 had no such list (an edited scale loaded silently) and is
  refused.
- The sidecar itself is sealed (version 3): `model.safetensors`' header holds a copy of it
  (metadata key `SEAL_KEY`; everything but the weights' own manifest entry), so the manifest's
  hash of the weights covers the sidecar too. `check_seal` refuses a sidecar that differs from
  its copy, naming each field that differs (a config, head, label, map or tokenizer manifest
  edited after saving). Version 2 folders (no seal) are still read: their
  weights and tokenizer are hashed, but an edit to their sidecar cannot be detected, which
  `load` says in a `SidecarNotSealedWarning`. A version-3 sidecar set back to 2 differs from
  its copy and is refused like any other edit.
- Every sidecar field the loader uses is checked for its JSON type, the GEMM implementation it
  names must be registered, and every tensor's dtype, width and values (`checked_tensor`).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import jax.numpy as jnp
import numpy as np

from pallas_kernels.numerics import INT8_MAX, SCALE_EPS
from samp_jax.core import strict_json
from samp_jax.core.digests import bytes_digest
from samp_jax.core.errors import SampJaxError
from samp_jax.core.input_files import (BrokenLinkError, NotRegularFileError, not_regular,
                                      open_regular, read_fd)
from samp_jax.core.precision import FINGERPRINT
from samp_jax.models.checkpoint import CheckpointError
from samp_jax.ops.dispatch import check_implementation

FORMAT = "samp-jax-quantized"
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)  # 1 had no file manifest: refused; 2 is not sealed (module docstring)
SEALED_VERSION = 3  # the first version whose weights' header holds a copy of the sidecar
SEAL_KEY = "samp_jax.quantization_json"  # the safetensors metadata key of that copy
WEIGHTS_FILE = "model.safetensors"
SIDECAR_FILE = "quantization.json"
# The most of a sidecar read: `save` writes a few KB per layer (about 2.4 MB at MAX_LAYERS).
SIDECAR_LIMIT = 64 << 20
COMPUTE_DTYPES = ("float16", "bfloat16", "float32")
# How `save` stores dtypes safetensors' numpy API lacks: their bits, as unsigned integers.
STORED_AS = {"bfloat16": "uint16", "float8_e4m3fn": "uint8"}
# Sidecar fields `load` uses, and their JSON types.
SIDECAR_FIELDS = {"format": str, "format_version": int, "config": dict, "head": dict, "dtype": str,
                  "precision_map": dict, "info": dict, "dtypes": dict, "files": dict}

# The smallest scale as stored: scales are float32, and float32(1e-12) is 9.99999996e-13.
STORED_SCALE_EPS = np.float32(SCALE_EPS)


class SidecarNotSealedWarning(UserWarning):
    """A quantized folder of format version 2, whose sidecar no hash covers, was loaded."""


class FolderChanged(SampJaxError, FileNotFoundError):
    """The folder was replaced (or deleted) while it was being read."""


@contextlib.contextmanager
def open_folder(directory: Path) -> Iterator[int]:
    """A file descriptor on `directory`, for `read_file`; closed after the block."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except NotADirectoryError:
        raise FileNotFoundError(f"{directory} is not a folder") from None
    try:
        yield fd
    finally:
        os.close(fd)


def read_file(directory: Path, folder_fd: int, name: str, limit: int | None = None) -> bytes | None:
    """The bytes of file `name` of the folder opened as `folder_fd` (None when it has none):
    all of them, or at most `limit + 1` (`limit`: the size the manifest records; one byte more
    says the file is longer, a mismatch found without reading a file of any length).

    Raises:
      FolderChanged: the folder was deleted (a save replaced it) before the file was read.
      NotRegularFileError: `name` is not a regular file (a FIFO, a device such as /dev/zero,
        a folder), named; nothing is read from it (a FIFO's open does not wait).
      BrokenLinkError: `name` is a symbolic link whose target does not exist, named.
    """
    try:
        fd = open_regular(name, dir_fd=folder_fd)
    except BrokenLinkError as e:
        raise BrokenLinkError(f"{directory}/{e}") from None
    except NotRegularFileError as e:
        try:
            mode = os.stat(name, dir_fd=folder_fd).st_mode
        except OSError:  # a link that loops
            raise NotRegularFileError(f"{directory}/{e}") from None
        raise not_regular(directory / name, mode, "the file QuantizedModel.save wrote") from None
    except FileNotFoundError:
        if _replaced(directory, folder_fd):
            raise FolderChanged(f"{directory} was replaced while it was being read (a save into "
                                "it at the same time?); load it again") from None
        return None
    return read_fd(fd, limit)


def recorded_size(files: dict, name: str) -> int | None:
    """The size the manifest (`files`) records for `name`; None when it records none that is a
    non-negative integer (`verify_files` refuses the entry; the file, regular, is read whole
    to say what it holds)."""
    want = files.get(name)
    size = want.get("bytes") if isinstance(want, dict) else None
    return size if type(size) is int and size >= 0 else None


def _replaced(directory: Path, folder_fd: int) -> bool:
    """Whether the folder opened as `folder_fd` is no longer the one `directory` names: it was
    removed, or is being removed file by file after a save renamed a new folder into place."""
    held = os.fstat(folder_fd)
    if held.st_nlink == 0:
        return True
    try:
        now = os.stat(directory)
    except FileNotFoundError:
        return True
    return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)


def parse_sidecar(path: Path, data: bytes) -> dict[str, Any]:
    """The parsed sidecar, after checking that it is this format and version and that every
    field `load` uses is there with the right JSON type (`data` over `SIDECAR_LIMIT` bytes is
    refused: a reader passes the limit to `read_file`, which reads one byte past it, no more)."""
    if len(data) > SIDECAR_LIMIT:
        raise ValueError(f"{path} is over {SIDECAR_LIMIT >> 20} MiB, expected a sidecar of "
                         "QuantizedModel.save (a few KB per layer); not read further")
    try:
        sidecar = strict_json.loads(data.decode("utf-8"))
    except strict_json.BeyondReader as e:
        raise ValueError(f"{path}: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    repeated = strict_json.repeated_key(sidecar)
    if repeated is not None:
        where, key = repeated
        raise ValueError(f"{path}: key {key!r} appears more than once in "
                         f"{where or 'the top-level object'}; expected each key once (JSON keeps "
                         "only the last value, silently)")
    if isinstance(sidecar, dict) and sidecar.get("format") == FORMAT and \
            sidecar.get("format_version") == 1:
        raise ValueError(f"{path}: format_version 1 is the format without a file manifest, whose "
                         "weights and scales cannot be verified; it is not read. Expected "
                         f"format_version {FORMAT_VERSION}: quantize the float model again and "
                         "save it")
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT \
            or type(sidecar.get("format_version")) is not int \
            or sidecar["format_version"] not in READABLE_VERSIONS:
        found = type(sidecar).__name__ if not isinstance(sidecar, dict) else \
            f"format {sidecar.get('format')!r} version {sidecar.get('format_version')!r}"
        raise ValueError(f"{path} is not a {FORMAT} sidecar of version {READABLE_VERSIONS}: found "
                         f"{found}, expected a JSON object with format {FORMAT!r}")
    for key, kind in SIDECAR_FIELDS.items():
        if not isinstance(sidecar.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is {_json_type(sidecar.get(key))}, expected "
                             f"{_json_type(kind())}")
    _check_fields(path, sidecar)
    return sidecar


def _check_fields(path: Path, sidecar: dict[str, Any]) -> None:
    if sidecar["dtype"] not in COMPUTE_DTYPES:
        raise ValueError(f"{path}: field 'dtype' is {sidecar['dtype']!r}, expected one of {COMPUTE_DTYPES}")
    bad = [k for k, v in sidecar["dtypes"].items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{path}: field 'dtypes' has a non-string entry for {bad[0]!r}, expected a "
                         "dtype name")
    if sidecar.get("tokenizer") is not None and not isinstance(sidecar["tokenizer"], str):
        raise ValueError(f"{path}: field 'tokenizer' is {_json_type(sidecar['tokenizer'])}, expected "
                         "a file name or null")
    if not isinstance(sidecar["head"].get("kind"), str):
        raise ValueError(f"{path}: field 'head' has no 'kind' string")
    implementation = sidecar["info"].get("implementation")
    if implementation is not None and not isinstance(implementation, str):
        raise ValueError(f"{path}: field 'info.implementation' is {_json_type(implementation)}, "
                         "expected a string or null")
    check_implementation(implementation, where=f"{path}: field 'info.implementation'")
    source = sidecar["info"].get("source_fingerprint")
    if source is not None and not (isinstance(source, str) and FINGERPRINT.fullmatch(source)):
        shown = repr(source) if isinstance(source, str) and len(source) <= 80 else _json_type(source)
        raise ValueError(f"{path}: field 'info.source_fingerprint' is {shown}, expected a "
                         "sha256 (64 lowercase hex digits, as samp_jax.model_fingerprint writes it)")
    for name in sidecar["files"]:
        if name in ("", ".", "..") or Path(name).name != name:
            raise CheckpointError(path, problem=f"lists {name!r} in its file manifest, expected "
                                  "a plain file name in the folder")


def _json_type(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             float: "a number", bool: "a boolean", type(None): "missing or null"}
    return names.get(type(value), type(value).__name__)


def verify_files(directory: Path, files: dict, contents: dict[str, bytes | None],
                 tokenizer: str | None) -> None:
    """Every file the manifest (`files`) lists was read (`contents`) with its size and sha256;
    the weights (and the tokenizer, when the sidecar names one) are listed."""
    for name in (WEIGHTS_FILE, tokenizer):
        if name is not None and name not in files:
            raise CheckpointError(directory / SIDECAR_FILE, problem=f"has no file manifest entry for "
                                  f"{name}, expected one for every file save wrote")
    for name, want in files.items():
        path = directory / name
        if contents.get(name) is None:
            raise CheckpointError(path, problem="is listed in the manifest but missing")
        got = bytes_digest(contents[name])
        if not isinstance(want, dict) or got != {"sha256": want.get("sha256"), "bytes": want.get("bytes")}:
            expected = f"{want.get('bytes')} bytes, sha256 {str(want.get('sha256'))[:16]}..." \
                if isinstance(want, dict) else f"{want!r:.60}"
            size = recorded_size(files, name)
            found = (f"more than {size} bytes (read no further)" if size is not None
                     and got["bytes"] > size else f"{got['bytes']} bytes, sha256 {got['sha256'][:16]}...")
            raise CheckpointError(path, problem=f"does not match the manifest: found {found}, "
                                  f"expected {expected} (the file was "
                                  "changed or damaged after saving, or is being written)")


def seal_text(sidecar: dict[str, Any]) -> str:
    """The copy of `sidecar` that `save` puts in the weights' header: every field, the manifest
    without the weights' own entry (a file cannot hold its own hash)."""
    files = {name: digest for name, digest in sidecar.get("files", {}).items() if name != WEIGHTS_FILE}
    return json.dumps({**sidecar, "files": files}, sort_keys=True)


def check_seal(directory: Path, sidecar: dict[str, Any], weights: bytes) -> None:
    """Refuses a sidecar that differs from the copy in the weights' header (`seal_text`),
    naming the fields that differ; warns for a version-2 folder, which has no copy.

    Run after `verify_files`, so `weights` are the bytes the manifest hashed.
    """
    path = directory / SIDECAR_FILE
    saved = _header_copy(directory / WEIGHTS_FILE, weights)
    if saved is None:
        if sidecar["format_version"] >= SEALED_VERSION:
            raise CheckpointError(directory / WEIGHTS_FILE, problem=f"has no copy of {SIDECAR_FILE} "
                                  f"in its header (metadata {SEAL_KEY!r}), expected one for "
                                  f"format_version {sidecar['format_version']}")
        warnings.warn(f"{path} is format_version 2, whose fields (config, head, labels, precision "
                      "map) no hash covers: an edit to them cannot be detected. Save the model "
                      f"again to write format_version {FORMAT_VERSION}, which seals them",
                      SidecarNotSealedWarning, stacklevel=2)
        return
    differences = list(_differences(saved, json.loads(seal_text(sidecar)), ""))
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more"
                                              if len(differences) > 5 else "")
        raise CheckpointError(path, problem=f"was edited after saving: {shown} (the sidecar as "
                              f"saved is kept in {WEIGHTS_FILE}'s header, which the manifest "
                              "hashes). A folder is not edited by hand: quantize and save the "
                              "model again")


def _header_copy(file: Path, weights: bytes) -> Any:
    """The sidecar copy in the safetensors header of `weights`, or None when it has none."""
    try:
        length = int.from_bytes(weights[:8], "little")
        if len(weights) < 8 or not 0 < length <= len(weights) - 8:
            raise ValueError(f"a header of {length} bytes in a file of {len(weights)}")
        header = strict_json.parse(weights[8:8 + length].decode("utf-8"))
        text = header.get("__metadata__", {}).get(SEAL_KEY) if isinstance(header, dict) else None
        return None if text is None else strict_json.parse(text)
    except (ValueError, AttributeError, TypeError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(file, problem=f"has no readable safetensors header ({e})") from None


HEADER_LIMIT = 100 << 20  # the largest safetensors header the format allows


def has_sidecar_copy(file: Path) -> bool:
    """Whether the safetensors `file` holds samp-jax quantized weights: its header keeps a copy
    of the sidecar (`SEAL_KEY`, format 3), which an HF checkpoint's never does. Only the header
    is read; a file that is no readable safetensors file is False (its reader names it)."""
    try:
        with os.fdopen(open_regular(file), "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length <= HEADER_LIMIT:
                return False
            header = json.loads(f.read(length).decode("utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError, JSONDecodeError; NotRegularFileError
        return False
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(metadata, dict) and SEAL_KEY in metadata


def _differences(saved: Any, found: Any, where: str) -> Iterator[str]:
    """`"<where>: found X, saved Y"` for every leaf in which `found` differs from `saved`."""
    if isinstance(saved, dict) and isinstance(found, dict):
        for key in sorted(saved.keys() | found.keys(), key=str):
            name = f"{where}.{key}" if where else key
            if key not in found:
                yield f"{name} is missing, saved as {_shown(saved[key])}"
            elif key not in saved:
                yield f"{name} {_shown(found[key])} was added"
            else:
                yield from _differences(saved[key], found[key], name)
    elif isinstance(saved, list) and isinstance(found, list) and len(saved) == len(found):
        for i, (a, b) in enumerate(zip(saved, found)):
            yield from _differences(a, b, f"{where}[{i}]")
    elif saved != found or type(saved) is not type(found):
        yield f"{where} is {_shown(found)}, saved as {_shown(saved)}"


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_tensor(file: Path, key: str, stored: np.ndarray, claimed: str | None, want) -> np.ndarray:
    """The stored array as `want` (the dtype the precision map implies), after checking the
    sidecar's dtype claim and the value range."""
    if claimed != want.name:
        raise CheckpointError(file, problem=f"tensor {key}: the sidecar ({SIDECAR_FILE}) says dtype "
                              f"{claimed!r}, expected {want.name!r} for this precision map")
    storage = STORED_AS.get(want.name, want.name)
    if stored.dtype.name != storage:
        raise CheckpointError(file, problem=f"tensor {key}: stored as {stored.dtype}, expected {storage}"
                              + (f" (the bits of {want.name})" if storage != want.name else ""))
    value = restore_dtype(stored, want.name)
    if want == jnp.int8:
        low = int(value.min()) if value.size else 0
        if low < -INT8_MAX:
            raise CheckpointError(file, problem=f"tensor {key}: INT8 value {low} found, expected "
                                  f"[-{int(INT8_MAX)}, {int(INT8_MAX)}] (symmetric quantization)")
        return value
    as_float = np.asarray(value, np.float32)
    if not np.all(np.isfinite(as_float)):
        raise CheckpointError(file, problem=f"tensor {key}: non-finite values found, expected finite")
    if key.endswith("_scale") and as_float.size and as_float.min() < STORED_SCALE_EPS:
        raise CheckpointError(file, problem=f"tensor {key}: scale {float(as_float.min())!r} found, "
                              f"expected a finite scale >= {SCALE_EPS} (as float32, "
                              f"{float(STORED_SCALE_EPS)!r})")
    return value


def restore_dtype(array: np.ndarray, name: str) -> np.ndarray:
    """Reinterprets the stored bits of bfloat16/float8 arrays (see `QuantizedModel.save`)."""
    dtype = jnp.dtype(name)
    return array if array.dtype == dtype else array.view(dtype)
