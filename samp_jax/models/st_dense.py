"""sentence-transformers' `Dense` module: a folder `N_Dense/` with `config.json` (`in_features`,
`out_features`, `bias`, `activation_function` as a torch class path) and the weights
`linear.weight` `[out, in]` and `linear.bias` in `model.safetensors` or `pytorch_model.bin`
(read without torch, `samp_jax.models.torch_pickle`).

samp-jax runs the activations torch's Identity, Tanh, ReLU, GELU and Sigmoid compute exactly
(`DENSE_ACTIVATIONS`); any other, a path outside `torch.` (which sentence-transformers
replaces by tanh unless code is trusted), or a Dense that reads or writes anything but the
sentence embedding is refused, naming the file. The layers run in `SentenceEmbedder` as
float32 `GemmSite`s; `write_dense` writes a folder sentence-transformers loads back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from samp_jax.core.input_files import check_regular
from samp_jax.models.config import ConfigError, read_json
from samp_jax.models.errors import CheckpointError
from samp_jax.models.heads import DenseLayer, SentenceEmbedder
from samp_jax.models.torch_pickle import read_torch_pickle
from samp_jax.models.weight_files import (SAFETENSORS, TORCH_PICKLE, check_float_weight,
                                         read_safetensors, writing_safetensors)

DENSE = "sentence_transformers.models.Dense"
CONFIG_FILE = "config.json"
# torch's activation classes by the path sentence-transformers writes (`fullname`), and the
# `DenseLayer.activation` each is. `torch.nn.<Name>` names the same class.
TORCH_ACTIVATIONS = {"torch.nn.modules.linear.Identity": "identity",
                     "torch.nn.modules.activation.Tanh": "tanh",
                     "torch.nn.modules.activation.ReLU": "relu",
                     "torch.nn.modules.activation.GELU": "gelu",
                     "torch.nn.modules.activation.Sigmoid": "sigmoid"}
_SHORT_PATHS = {"torch.nn." + path.rsplit(".", 1)[-1]: name for path, name in TORCH_ACTIVATIONS.items()}
_TORCH_PATH = {name: path for path, name in TORCH_ACTIVATIONS.items()}
# The 5.x keys that say what the module reads and writes; samp-jax runs it on the sentence
# embedding only (after pooling), their default.
_IO_KEYS = ("module_input_name", "module_output_name")
_SENTENCE_EMBEDDING = "sentence_embedding"
_KEYS = ("in_features", "out_features", "bias", "activation_function", *_IO_KEYS)


@dataclasses.dataclass(frozen=True)
class DeclaredDense:
    """A Dense module a sentence-transformers folder declares: its layer and its folder."""

    layer: DenseLayer
    folder: Path


def read_dense_config(folder: Path) -> DeclaredDense:
    """The Dense module in `folder` (its `config.json`), checked.

    Raises:
      ConfigError: the config is missing or not a JSON object, has keys sentence-transformers'
        Dense does not take, a width that is not a positive integer, an activation samp-jax
        does not run, or a module input or output other than the sentence embedding.
    """
    file = folder / CONFIG_FILE
    if not check_regular(file):
        raise ConfigError(f"Dense config {file} is missing")
    config = read_json(file)
    if not isinstance(config, dict):
        raise ConfigError(f"{file} must hold a JSON object")
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{file}: keys {unknown} are not Dense settings samp-jax knows "
                          f"(it reads {list(_KEYS)})")
    for key in _IO_KEYS:
        if config.get(key, _SENTENCE_EMBEDDING) not in (_SENTENCE_EMBEDDING, None):
            raise ConfigError(f"{file}: {key}={config[key]!r}; samp-jax runs a Dense module on "
                              f"the pooled {_SENTENCE_EMBEDDING!r} only")
    missing = [key for key in ("in_features", "out_features") if key not in config]
    if missing:
        raise ConfigError(f"{file} states no {missing}")
    activation = _activation(file, config.get("activation_function", _TORCH_PATH["tanh"]))
    try:
        layer = DenseLayer(config["in_features"], config["out_features"], config.get("bias", True),
                           activation)
    except ValueError as e:
        raise ConfigError(f"{file}: {e}") from None
    return DeclaredDense(layer, folder)


def _activation(file: Path, path) -> str:
    """The `DenseLayer.activation` of a torch class path."""
    name = TORCH_ACTIVATIONS.get(path) or _SHORT_PATHS.get(path)
    if name is not None:
        return name
    why = ("" if isinstance(path, str) and path.startswith("torch.") else
           " (sentence-transformers runs tanh in its place unless the model's code is trusted)")
    raise ConfigError(f"{file}: activation_function={path!r} is not one samp-jax runs{why}; "
                      f"it runs {sorted(TORCH_ACTIVATIONS)}")


def check_widths(dense: Sequence[DeclaredDense], pooled_width: int, pooling: str) -> None:
    """Raises ConfigError, naming the Dense config, unless each module reads the width before
    it: the pooled width (described by `pooling`) for the first, the previous module's
    `out_features` after it."""
    width, source = pooled_width, pooling
    for module in dense:
        if module.layer.in_features != width:
            raise ConfigError(f"{module.folder / CONFIG_FILE}: in_features={module.layer.in_features}, "
                              f"expected {width} (the width of {source})")
        width, source = module.layer.out_features, f"{module.folder.name}'s out_features"


def read_dense_weights(module: DeclaredDense) -> tuple[np.ndarray, np.ndarray | None]:
    """`(weight [out, in], bias [out] or None)` in float32 from the module's folder:
    `model.safetensors`, else `pytorch_model.bin`.

    Raises:
      FileNotFoundError: the folder has neither weights file.
      CheckpointError: the file is damaged, or a key is missing, unexpected or of another
        shape, or a tensor is not floating point or not finite (naming the file).
    """
    layer = module.layer
    if check_regular(module.folder / SAFETENSORS):
        file = module.folder / SAFETENSORS
        state = read_safetensors([file])
    elif check_regular(module.folder / TORCH_PICKLE):
        file = module.folder / TORCH_PICKLE
        state = read_torch_pickle(file)
    else:
        raise FileNotFoundError(f"Dense module {module.folder} has no weights: looked for "
                                f"{SAFETENSORS} and {TORCH_PICKLE}")
    shapes = {"linear.weight": (layer.out_features, layer.in_features)}
    if layer.bias:
        shapes["linear.bias"] = (layer.out_features,)
    missing, unexpected = sorted(shapes.keys() - state.keys()), sorted(state.keys() - shapes.keys())
    mismatched = [(key, tuple(state[key].shape), want) for key, want in shapes.items()
                  if key in state and tuple(state[key].shape) != want]
    if missing or unexpected or mismatched:
        raise CheckpointError(file, missing=missing, unexpected=unexpected, mismatched=mismatched)
    for key in shapes:
        check_float_weight(file, key, state[key])
    bias = state.get("linear.bias")
    return (np.asarray(state["linear.weight"], np.float32),
            None if bias is None else np.asarray(bias, np.float32))


def load_dense(head: SentenceEmbedder, dense: Sequence[DeclaredDense]) -> None:
    """Fills the head's Dense layers from the folders' weights, all read and checked before
    the first is assigned.

    Raises:
      ValueError: the head's Dense layers are not the declared ones.
      FileNotFoundError, CheckpointError: as `read_dense_weights`.
    """
    if head.dense_layers != tuple(module.layer for module in dense):
        raise ValueError(f"the head's Dense layers {head.dense_layers} are not the folder's "
                         f"{[module.layer for module in dense]}")
    weights = [read_dense_weights(module) for module in dense]
    for site, (weight, bias) in zip(head.dense, weights):
        site.kernel.set_value(jnp.asarray(weight.T))  # torch Linear is [out, in]; kernels [in, out]
        if bias is not None:
            site.bias.set_value(jnp.asarray(bias))


def dense_weights(head: SentenceEmbedder) -> list[tuple[DenseLayer, np.ndarray, np.ndarray | None]]:
    """`(layer, weight [out, in], bias or None)` of each of the head's Dense layers, in float32
    (what `write_dense` takes)."""
    out = []
    for layer, site in zip(head.dense_layers, head.dense):
        bias = None if site.bias is None else np.asarray(site.bias[...], np.float32)
        out.append((layer, np.ascontiguousarray(np.asarray(site.kernel[...], np.float32).T), bias))
    return out


def write_dense(folder: Path, layer: DenseLayer, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """Writes one Dense module (`config.json`, `model.safetensors`) as sentence-transformers
    saves it, in the keys every version reads."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"in_features": layer.in_features, "out_features": layer.out_features,
              "bias": layer.bias, "activation_function": _TORCH_PATH[layer.activation]}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=4))
    state = {"linear.weight": np.ascontiguousarray(weight, np.float32)}
    if bias is not None:
        state["linear.bias"] = np.ascontiguousarray(bias, np.float32)
    with writing_safetensors(folder / SAFETENSORS):
        save_file(state, str(folder / SAFETENSORS))
