"""A sentence-transformers `CrossEncoder`'s activation: what `CrossEncoder.predict` applies to a
sequence head's logits, read from the folder as sentence-transformers 5 reads it.

A folder is a CrossEncoder when it says so: `config_sentence_transformers.json` with
`model_type` "CrossEncoder" (sentence-transformers 5), or `config.json` with a
`sentence_transformers` object (4) or an `sbert_ce_default_activation_function` (earlier). Its
activation is the first stated of (`read_activation`, as `CrossEncoder.__init__` and
`get_default_activation_fn` pick it):

1. `config_sentence_transformers.json` `activation_fn`, when the folder also has
   `modules.json` (sentence-transformers reads that file only then);
2. `config.json` `sentence_transformers.activation_fn` (when the object has that key, the
   older key is not read);
3. `config.json` `sbert_ce_default_activation_function`;
4. the default: `Sigmoid` for a head of one output, else `Identity`.

An activation is stated as the dotted path of a torch class that `CrossEncoder` instantiates
without arguments. samp-jax runs those it mirrors exactly (`ACTIVATIONS`; `Softmax()` without
a dim takes the last axis of `[rows, labels]` logits, as torch's implicit dim does for 2-D
input); any other path is refused, naming the file and the key, before any weights are read
(sentence-transformers itself would import a path outside `torch.` only with
`trust_remote_code`, and otherwise falls back to the default with a warning).

samp-jax keeps the activation with the head (`SequenceClassifier`'s `cross_encoder_activation`,
by `ACTIVATIONS` name), so a quantized folder keeps it in its sidecar, and `save_pretrained`
writes it back as `config.json` `sentence_transformers.activation_fn` (`hf_config_keys`), which
sentence-transformers 4 and 5 read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from samp_jax.core.input_files import check_regular
from samp_jax.models.config import ConfigError, read_json
from samp_jax.models.head_kinds import sigmoid

ST_CONFIG_FILE = "config_sentence_transformers.json"
MODULES_FILE = "modules.json"
HF_CONFIG_FILE = "config.json"
ST_KEY = "sentence_transformers"  # config.json, sentence-transformers 4
OLD_KEY = "sbert_ce_default_activation_function"  # config.json, before 4
ACTIVATION_KEY = "activation_fn"


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "Identity": ("torch.nn.modules.linear.Identity", lambda x: x),
    "Sigmoid": ("torch.nn.modules.activation.Sigmoid", sigmoid),
    "Tanh": ("torch.nn.modules.activation.Tanh", np.tanh),
    "Softmax": ("torch.nn.modules.activation.Softmax", _softmax),
}
"""The activations samp-jax mirrors: name -> (the path sentence-transformers writes,
`fullname` of the torch class; the function on float64 `[..., labels]` logits). Each is also
accepted as `torch.nn.<name>`, the path torch exports it under."""

_PATHS = {path: name for name, (full, _) in ACTIVATIONS.items()
          for path in (full, f"torch.nn.{name}")}


def activation_name(path: Any, where: str) -> str:
    """The `ACTIVATIONS` name of a stated torch path.

    Raises:
      ConfigError: `path` is not one of the paths samp-jax mirrors; the message names `where`
        (the file and the key).
    """
    if isinstance(path, str) and path in _PATHS:
        return _PATHS[path]
    raise ConfigError(f"{where}={path!r} is not an activation samp-jax runs; expected one of "
                      f"{sorted(_PATHS)} (sentence-transformers' CrossEncoder.predict applies it "
                      "to the logits)")


def read_activation(folder: str | Path, hf: dict, num_labels: int) -> str | None:
    """The `ACTIVATIONS` name of the activation `CrossEncoder.predict` applies to the logits
    of the sequence head in `folder` (whose `config.json` is `hf`, `num_labels` outputs), or
    None when the folder is not a CrossEncoder (see the module).

    Raises:
      ConfigError: a stated activation is not one samp-jax mirrors (`activation_name`), or
        `config_sentence_transformers.json` / `sentence_transformers` is not a JSON object.
    """
    folder = Path(folder)
    st_file, config_file = folder / ST_CONFIG_FILE, folder / HF_CONFIG_FILE
    st = read_json(st_file) if check_regular(st_file) else {}
    if not isinstance(st, dict):
        raise ConfigError(f"{st_file} must hold a JSON object")
    stated = hf.get(ST_KEY)
    if stated is not None and not isinstance(stated, dict):
        raise ConfigError(f"{config_file}: {ST_KEY}={stated!r} must be a JSON object")
    if st.get("model_type") != "CrossEncoder" and stated is None and hf.get(OLD_KEY) is None:
        return None
    if (folder / MODULES_FILE).is_file() and st.get(ACTIVATION_KEY) is not None:
        return activation_name(st[ACTIVATION_KEY], f"{st_file}: {ACTIVATION_KEY}")
    if stated is not None and ACTIVATION_KEY in stated:
        if stated[ACTIVATION_KEY] is not None:
            return activation_name(stated[ACTIVATION_KEY],
                                   f"{config_file}: {ST_KEY}.{ACTIVATION_KEY}")
    elif hf.get(OLD_KEY) is not None:
        return activation_name(hf[OLD_KEY], f"{config_file}: {OLD_KEY}")
    return "Sigmoid" if num_labels == 1 else "Identity"


def apply_activation(name: str, logits: np.ndarray) -> np.ndarray:
    """`CrossEncoder.predict`'s scores from `[rows, labels]` logits: the activation `name`
    (float64), the last axis dropped for a head of one output."""
    scores = ACTIVATIONS[name][1](np.asarray(logits, np.float64))
    return scores[..., 0] if scores.shape[-1] == 1 else scores


def hf_config_keys(name: str | None) -> dict:
    """The `config.json` keys that state activation `name` to sentence-transformers ({} for
    None: not a CrossEncoder)."""
    return {} if name is None else {ST_KEY: {ACTIVATION_KEY: ACTIVATIONS[name][0]}}
