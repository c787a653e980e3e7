"""A quantized model's folder, model side: the state written by `QuantizedModel.save` and
read back by `QuantizedModel.load` (their docstrings describe the folder and its checks).

- `write_folder`: the model's state as `model.safetensors` (bfloat16 and float8 tensors as
  their bits, a copy of the sidecar in its header), the tokenizer's files and the sidecar
  `quantization.json` with its manifest, all written atomically (`samp_jax.core.atomic`).
- `read_saved`: every file read once and checked against the manifest, the sidecar against
  its copy, and what the sidecar's fields build (config, precision map, compute dtype), as a `SavedFolder`.
- `restore_weights` fills a model built from that description (`QuantizedModel.load` builds
  it, its sites at their precisions) with the checked tensors; `saved_tokenizer` gives the
  folder's own tokenizer, or the caller's, checked against the config.

The format itself (its files, the sidecar's fields, one handle per read, the tensor checks) is
`samp_jax.ptq.folder`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save_file

from samp_jax.core.atomic import atomic_folder, check_not_interrupted, is_quantized_folder
from samp_jax.core.digests import file_digest, folder_digests
from samp_jax.core.input_files import check_regular
from samp_jax.core.precision import PrecisionMap, PrecisionMapError
from samp_jax.core.version import versions
from samp_jax.models.checkpoint import CheckpointError
from samp_jax.models.config import EncoderConfig
from samp_jax.models.head_kinds import SENTENCE_EMBEDDING
from samp_jax.models.model import EncoderModel
from samp_jax.models.st_folder import PROMPTS_FILE
from samp_jax.models.tokenizer import TOKENIZER_FILE, TOKENIZER_FILES, Tokenizer, check_fits
from samp_jax.models.weight_files import writing_safetensors
from samp_jax.ptq.folder import (FORMAT, FORMAT_VERSION, SEAL_KEY, SIDECAR_FILE, SIDECAR_LIMIT,
                                 STORED_AS, WEIGHTS_FILE, check_seal, checked_tensor,
                                 open_folder, parse_sidecar, read_file, recorded_size, seal_text,
                                 verify_files)


# ------------------------------------------------------------------------------- writing
def write_folder(directory: Path, model: EncoderModel, *, head: dict[str, Any],
                 precision_map: PrecisionMap, info: dict[str, Any],
                 executed: dict[str, Any]) -> Path:
    """Writes `model`'s state, its tokenizer's files and the sidecar into `directory`, as one
    atomic replacement of the folder; returns `directory`.

    `head` is the head's `head_spec`, `executed` what ran each GEMM site in this process
    (`QuantizedModel.executed_implementations`); both go into the sidecar as they are.
    """
    arrays, dtypes = {}, {}
    for key, value in _flat_state(model).items():
        value = np.asarray(value)
        dtypes[key] = value.dtype.name
        # safetensors' numpy API lacks bfloat16/float8: store their bits, keep the dtype.
        if value.dtype.name in STORED_AS:
            value = value.view(STORED_AS[value.dtype.name])
        arrays[key] = np.array(value, order="C")  # ascontiguousarray would make scalars 1-D
    # replaces an earlier quantized model only, never a float checkpoint (its source, maybe)
    with atomic_folder(directory, replaceable=is_quantized_folder) as tmp:
        if model.tokenizer is not None:
            model.tokenizer.save(tmp)
        sidecar = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "config": model.config.to_hf_dict(),
            "head": head,
            "tokenizer": None if model.tokenizer is None else TOKENIZER_FILE,
            "dtype": jnp.dtype(model.dtype).name,
            "precision_map": precision_map.to_dict(),
            "info": info, "dtypes": dtypes, "versions": versions(),
            "executed": executed,
            "files": folder_digests(tmp),
        }
        # the weights' header seals the sidecar: the manifest's hash of them covers it too
        with writing_safetensors(Path(directory) / WEIGHTS_FILE):  # a full disk: OSError
            save_file(arrays, str(tmp / WEIGHTS_FILE), metadata={SEAL_KEY: seal_text(sidecar)})
        sidecar["files"] = dict(sorted({**sidecar["files"],
                                        WEIGHTS_FILE: file_digest(tmp / WEIGHTS_FILE)}.items()))
        (tmp / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=1))
    return directory


# ------------------------------------------------------------------------------- reading
@dataclasses.dataclass(frozen=True)
class SavedFolder:
    """A quantized model folder as read and checked, before any weight is assigned.

    Attributes:
      directory: the folder.
      sidecar: the parsed `quantization.json`, every field `load` uses checked.
      contents: the bytes of the weights, of every file the manifest lists and (when the
        folder's own tokenizer is wanted) of the tokenizer files, as read and hashed.
      config: the model config the sidecar's `config` builds.
      precision_map: the sidecar's `precision_map`, with the config's number of layers.
      dtype: the compute dtype between GEMM sites.
    """

    directory: Path
    sidecar: dict[str, Any]
    contents: dict[str, bytes | None]
    config: EncoderConfig
    precision_map: PrecisionMap
    dtype: Any

    @property
    def smoothed(self) -> set[str]:
        """`"encoder.layers.<i>.<site>"` of every site stored with a SmoothQuant input scale."""
        return {key.split(".input_scale")[0] for key in self.sidecar["dtypes"]
                if key.endswith("input_scale")}

    @property
    def implementation(self) -> str | None:
        """The GEMM implementation the model was quantized for (None: try Pallas, then XLA)."""
        return self.sidecar["info"].get("implementation")


def read_saved(directory: Path, *, own_tokenizer: bool) -> SavedFolder:
    """Reads and checks the folder `QuantizedModel.save` wrote (`own_tokenizer`: its tokenizer
    files too).

    Raises:
      FileNotFoundError, ValueError, CheckpointError: as `QuantizedModel.load`.
    """
    check_not_interrupted(directory)
    sidecar, contents = _read_verified(directory, own_tokenizer=own_tokenizer)
    config, precision_map = _sidecar_model(directory / SIDECAR_FILE, sidecar)
    return SavedFolder(directory, sidecar, contents, config, precision_map,
                       jnp.dtype(sidecar["dtype"]))


def _read_verified(directory: Path, *, own_tokenizer: bool) -> tuple[dict, dict]:
    """The parsed sidecar and the bytes of the weights, of every file the manifest lists and
    (`own_tokenizer`) of the tokenizer files, read once through one handle on the folder
    (`samp_jax.ptq.folder`) and checked against the manifest."""
    for name in (WEIGHTS_FILE, SIDECAR_FILE):  # a FIFO or /dev/zero there is named, not absent
        if not check_regular(directory / name):
            hf = (" (it is an HF checkpoint folder: samp_jax.load or load_pretrained reads it)"
                  if (directory / "config.json").is_file() else "")
            raise FileNotFoundError(f"{directory} has no {name}{hf}")
    with open_folder(directory) as fd:
        data = read_file(directory, fd, SIDECAR_FILE, SIDECAR_LIMIT)
        if data is None:
            raise FileNotFoundError(f"{directory} has no {SIDECAR_FILE}")
        sidecar = parse_sidecar(directory / SIDECAR_FILE, data)
        names = {WEIGHTS_FILE, *sidecar["files"], *(TOKENIZER_FILES if own_tokenizer else ())}
        # a listed file is read up to its recorded size and one byte more (a longer one is a
        # mismatch); a file that is not regular is refused before any read
        contents = {name: read_file(directory, fd, name, recorded_size(sidecar["files"], name))
                    for name in sorted(names)}
    if contents[WEIGHTS_FILE] is None:
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_FILE}")
    verify_files(directory, sidecar["files"], contents, sidecar.get("tokenizer"))
    check_seal(directory, sidecar, contents[WEIGHTS_FILE])
    return sidecar, contents


def _sidecar_model(path: Path, sidecar: dict[str, Any]) -> tuple[EncoderConfig, PrecisionMap]:
    """`(config, precision_map)` from the sidecar; a field that does not build raises a
    ValueError naming the file and the field."""
    try:
        config = EncoderConfig.from_hf_config(sidecar["config"])
    except ValueError as e:  # ConfigError
        raise ValueError(f"{path}: field 'config': {e}") from None
    try:
        pmap = PrecisionMap.from_dict(sidecar["precision_map"])
    except (PrecisionMapError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: field 'precision_map': {e}") from None
    if pmap.num_layers != config.num_layers:
        raise ValueError(f"{path}: field 'precision_map' has num_layers={pmap.num_layers}, expected "
                         f"{config.num_layers} (the config's)")
    return config, pmap


def head_from_sidecar(info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`(kind, spec)` for `make_head`, from this format's `{"kind", "spec"}` or the earlier
    `{"kind", "num_labels", "labels", "pooling"}`."""
    if "spec" in info:
        return info["kind"], dict(info["spec"])
    spec = {"num_labels": info.get("num_labels"), "labels": info.get("labels")}
    pooling = info.get("pooling") or {}
    if info["kind"] == SENTENCE_EMBEDDING.name:
        spec = {"pooling": pooling.get("mode", "mean"), "normalize": pooling.get("normalize", True)}
    return info["kind"], spec


def restore_weights(model: EncoderModel, saved: SavedFolder) -> None:
    """Assigns the folder's tensors to `model` (built from `saved`'s description), after
    checking every tensor's name, shape, dtype and values: nothing is assigned unless all pass.

    Raises:
      CheckpointError: the weights are not safetensors, or a tensor is missing, unexpected,
        of another shape, or fails `checked_tensor`.
    """
    weights = saved.directory / WEIGHTS_FILE
    try:
        arrays = load_safetensors(saved.contents[WEIGHTS_FILE])
    except SafetensorError as e:  # truncated or not safetensors at all
        raise CheckpointError(weights, problem=f"is not a readable safetensors file ({e})") from None
    expected = _flat_state(model)
    missing, unexpected = sorted(expected.keys() - arrays.keys()), sorted(arrays.keys() - expected.keys())
    mismatched = [(k, arrays[k].shape, tuple(expected[k].shape)) for k in expected.keys() & arrays.keys()
                  if tuple(arrays[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        raise CheckpointError(weights, missing=missing, unexpected=unexpected, mismatched=mismatched)
    restored = {k: checked_tensor(weights, k, arrays[k], saved.sidecar["dtypes"].get(k),
                                  jnp.dtype(expected[k].dtype))
                for k in sorted(expected)}
    _assign_flat_state(model, restored)


def saved_tokenizer(saved: SavedFolder, tokenizer: Tokenizer | None,
                    prompt_name: str | None = None) -> Tokenizer | None:
    """`tokenizer`, else the folder's own (None when it has none) with the prompt `prompt_name`
    (`Tokenizer.from_files`), checked to fit the config."""
    if tokenizer is None and saved.contents.get(TOKENIZER_FILE) is not None:
        texts = _tokenizer_texts(saved.directory, saved.contents)
        if PROMPTS_FILE in texts and PROMPTS_FILE not in saved.sidecar["files"]:
            # a prompt changes every input: only the one the model was saved with counts
            warnings.warn(f"{saved.directory / PROMPTS_FILE} is not in the folder's manifest "
                          f"({SIDECAR_FILE}): it was added after saving, and its prompts are "
                          "not used", UserWarning, stacklevel=3)
            texts.pop(PROMPTS_FILE)
        tokenizer = Tokenizer.from_files(texts, where=saved.directory, prompt_name=prompt_name,
                                         model_config={"model_type": saved.config.model_type})
    if tokenizer is not None:
        check_fits(tokenizer, saved.config, str(saved.directory))
    return tokenizer


def _tokenizer_texts(directory: Path, contents: dict[str, bytes | None]) -> dict[str, str]:
    texts = {}
    for name in TOKENIZER_FILES:
        if contents.get(name) is not None:
            try:
                texts[name] = contents[name].decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{directory / name} is not UTF-8 text ({e.reason} at byte "
                                 f"{e.start}); expected a tokenizer file") from None
    return texts


# ----------------------------------------------------------------------- flat state
def _flat_state(module: nnx.Module) -> dict[str, jax.Array]:
    """`{"dotted.path": array}` of every variable of `module`: the safetensors keys."""
    flat = nnx.to_flat_state(nnx.state(module))
    return {".".join(str(p) for p in path): var.get_value() for path, var in flat}


def _assign_flat_state(module: nnx.Module, arrays: dict[str, np.ndarray]) -> None:
    flat = nnx.to_flat_state(nnx.state(module))
    updates = []
    for path, var in flat:
        updates.append((path, var.replace(jnp.asarray(arrays[".".join(str(p) for p in path)]))))
    nnx.update(module, nnx.from_flat_state(updates))
