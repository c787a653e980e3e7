"""Imports Hugging Face BERT checkpoints (safetensors or HF Flax msgpack) into `EncoderModel`.

Every foreign key is mapped explicitly. The whole checkpoint is checked first — missing keys,
unexpected keys and wrong shapes are gathered into one `CheckpointError` — and only then is
anything assigned, so a bad checkpoint never yields a half-loaded model.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from samp_jax.models.config import ConfigError, EncoderConfig
from samp_jax.models.model import (
    HEAD_KINDS,
    EncoderModel,
    SequenceClassifier,
    TokenClassifier,
    check_labels,
    make_head,
)
from samp_jax.models.tokenizer import TOKENIZER_FILES

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
FLAX_MSGPACK = "flax_model.msgpack"
TORCH_PICKLE = "pytorch_model.bin"

# Keys a BERT checkpoint may carry that no samp-jax module uses.
_IGNORED_PREFIXES = ("cls.",)  # pre-training heads (MLM / NSP)
_IGNORED_KEYS = ("embeddings.position_ids",)  # a buffer, not a weight
_POOLER_PREFIX = "pooler."


class CheckpointError(ValueError):
    """A checkpoint cannot be read (`problem`), or does not fit the model: lists every missing,
    unexpected or mis-shaped key."""

    def __init__(self, path, *, missing=(), unexpected=(), mismatched=(), problem: str | None = None):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        if problem is not None:
            super().__init__(f"checkpoint {path} {problem}")
            return
        lines = [f"checkpoint {path} does not match the model:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {self.missing}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {self.unexpected}")
        for key, got, want in self.mismatched:
            lines.append(f"  wrong shape: {key} has {got}, expected {want}")
        super().__init__("\n".join(lines))


# ----------------------------------------------------------------------------- reading
def read_state_dict(folder: str | Path, *, allow_torch_pickle: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """Reads a checkpoint's weights as numpy arrays under HF PyTorch key names.

    Looks for `model.safetensors` (or a sharded index), then `flax_model.msgpack`. Flax names
    and layouts are converted (`kernel` → transposed `weight`, `scale`/`embedding` → `weight`).
    LayerNorm `gamma`/`beta` in old checkpoints become `weight`/`bias`. Returns
    `(state, filename)`.

    Raises:
      FileNotFoundError: the folder holds no weights file samp-jax can read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if (folder / SAFETENSORS).is_file():
        state, source = _read_safetensors([folder / SAFETENSORS]), SAFETENSORS
    elif (folder / SAFETENSORS_INDEX).is_file():
        index = json.loads((folder / SAFETENSORS_INDEX).read_text())
        shards = sorted({folder / name for name in index["weight_map"].values()})
        state, source = _read_safetensors(shards), SAFETENSORS_INDEX
    elif (folder / FLAX_MSGPACK).is_file():
        state, source = _read_flax_msgpack(folder / FLAX_MSGPACK), FLAX_MSGPACK
    elif (folder / TORCH_PICKLE).is_file():
        if not allow_torch_pickle:
            raise FileNotFoundError(
                f"{folder} has only {TORCH_PICKLE}, a pickle that can run code when loaded; convert "
                f"it to {SAFETENSORS} or pass allow_torch_pickle=True (needs torch)")
        state, source = _read_torch_pickle(folder / TORCH_PICKLE), TORCH_PICKLE
    else:
        raise FileNotFoundError(
            f"{folder} has no weights: looked for {SAFETENSORS}, {SAFETENSORS_INDEX}, {FLAX_MSGPACK}")
    return {_canonical_key(k): v for k, v in state.items()}, source


def _read_safetensors(files: Sequence[Path]) -> dict[str, np.ndarray]:

    state = {}
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"safetensors shard {file} is missing")
        # framework="flax" reads bfloat16 too, which numpy alone cannot.
        try:
            with safe_open(str(file), framework="flax") as f:
                for key in f.keys():
                    state[key] = np.asarray(f.get_tensor(key))
        except SafetensorError as e:  # truncated or not safetensors at all
            raise CheckpointError(file, problem=f"is not a readable safetensors file ({e})") from None
    return state


def _read_flax_msgpack(file: Path) -> dict[str, np.ndarray]:

    tree = serialization.msgpack_restore(file.read_bytes())
    if set(tree) == {"params"}:
        tree = tree["params"]
    state = {}
    for path, value in _flatten(tree):
        value = np.asarray(value)
        *parents, leaf = path
        if leaf == "kernel":
            leaf, value = "weight", value.T  # flax Dense is [in, out], torch Linear is [out, in]
        elif leaf in ("embedding", "scale"):
            leaf = "weight"
        state[".".join([*parents, leaf])] = value
    return state


def _read_torch_pickle(file: Path) -> dict[str, np.ndarray]:
    import torch  # optional; only for explicitly allowed pickles

    raw = torch.load(file, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in raw.items()}


def _flatten(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), value


def _canonical_key(key: str) -> str:
    if key.startswith("bert."):
        key = key[len("bert."):]
    if ".LayerNorm." in key or key.startswith("LayerNorm."):
        key = key.replace(".gamma", ".weight").replace(".beta", ".bias")
    return key


# ------------------------------------------------------------------------- key mapping
@dataclasses.dataclass(frozen=True)
class _Assignment:
    """One model parameter filled from one or more checkpoint tensors."""

    target: nnx.Param
    sources: tuple[str, ...]
    source_shapes: tuple[tuple[int, ...], ...]
    combine: Callable[..., np.ndarray]
    is_head: bool = False
    split: Callable[[np.ndarray], tuple[np.ndarray, ...]] = lambda value: (value,)  # inverse


def _assignments(model: EncoderModel) -> list[_Assignment]:
    c = model.config
    out: list[_Assignment] = []

    def linear(prefix, site, is_head=False):
        n_in, n_out = site.shape
        out.append(_Assignment(site.kernel, (f"{prefix}.weight",), ((n_out, n_in),),
                               lambda w: w.T, is_head, lambda k: (k.T,)))
        out.append(_Assignment(site.bias, (f"{prefix}.bias",), ((n_out,),), lambda b: b, is_head))

    def norm(prefix, module):
        shape = ((c.hidden_size,),)
        out.append(_Assignment(module.scale, (f"{prefix}.weight",), shape, lambda w: w))
        out.append(_Assignment(module.bias, (f"{prefix}.bias",), shape, lambda b: b))

    def table(key, param, rows):
        out.append(_Assignment(param, (key,), ((rows, c.hidden_size),), lambda w: w))

    emb = model.embeddings
    table("embeddings.word_embeddings.weight", emb.word, c.vocab_size)
    table("embeddings.position_embeddings.weight", emb.position, c.max_position_embeddings)
    table("embeddings.token_type_embeddings.weight", emb.token_type, c.type_vocab_size)
    norm("embeddings.LayerNorm", emb.norm)
    hidden = c.hidden_size
    for i, layer in enumerate(model.encoder.layers):
        p = f"encoder.layer.{i}"
        qkv = tuple(f"{p}.attention.self.{n}" for n in ("query", "key", "value"))
        out.append(_Assignment(layer.qkv.kernel, tuple(f"{q}.weight" for q in qkv),
                               ((hidden, hidden),) * 3,
                               lambda q, k, v: np.concatenate([q.T, k.T, v.T], axis=1),
                               split=lambda w: tuple(part.T for part in np.split(w, 3, axis=1))))
        out.append(_Assignment(layer.qkv.bias, tuple(f"{q}.bias" for q in qkv), ((hidden,),) * 3,
                               lambda q, k, v: np.concatenate([q, k, v]),
                               split=lambda b: tuple(np.split(b, 3))))
        linear(f"{p}.attention.output.dense", layer.attn_out)
        norm(f"{p}.attention.output.LayerNorm", layer.attn_norm)
        linear(f"{p}.intermediate.dense", layer.ffn_in)
        linear(f"{p}.output.dense", layer.ffn_out)
        norm(f"{p}.output.LayerNorm", layer.ffn_norm)
    if isinstance(model.head, SequenceClassifier):
        linear("pooler.dense", model.head.pooler, is_head=True)
        linear("classifier", model.head.classifier, is_head=True)
    elif isinstance(model.head, TokenClassifier):
        linear("classifier", model.head.classifier, is_head=True)
    return out


def _is_ignorable(key: str, uses_pooler: bool) -> bool:
    if key in _IGNORED_KEYS or key.startswith(_IGNORED_PREFIXES):
        return True
    return key.startswith(_POOLER_PREFIX) and not uses_pooler


def assign_state_dict(model: EncoderModel, state: dict[str, np.ndarray], *, path="<state>",
                      allow_new_head: bool = False, strict: bool = True) -> list[str]:
    """Fills `model` from a state dict in HF PyTorch naming (see `read_state_dict`).

    All checks happen before the first assignment. Returns the head keys that were absent and
    left freshly initialised (only with `allow_new_head=True`).

    Raises:
      CheckpointError: listing every missing, unexpected (when `strict`) and mis-shaped key.
    """
    assignments = _assignments(model)
    expected = {key for a in assignments for key in a.sources}
    uses_pooler = isinstance(model.head, SequenceClassifier)
    missing = sorted(expected - state.keys())
    new_head = [k for k in missing if any(k in a.sources for a in assignments if a.is_head)]
    if allow_new_head and new_head:
        missing = [k for k in missing if k not in new_head]
        assignments = [a for a in assignments if not (a.is_head and set(a.sources) & set(new_head))]
    else:
        new_head = []
    unexpected = sorted(k for k in state.keys() - expected if not _is_ignorable(k, uses_pooler))
    mismatched = []
    for a in assignments:
        for key, want in zip(a.sources, a.source_shapes):
            if key in state and tuple(state[key].shape) != want:
                mismatched.append((key, tuple(state[key].shape), want))
    if missing or mismatched or (strict and unexpected):
        raise CheckpointError(path, missing=missing, unexpected=unexpected if strict else (),
                              mismatched=mismatched)
    for a in assignments:
        for key in a.sources:
            if not np.all(np.isfinite(state[key])):
                raise CheckpointError(path, mismatched=[(key, "non-finite values", "finite")])
    values = [a.combine(*(state[k] for k in a.sources)) for a in assignments]
    for a, value in zip(assignments, values):
        a.target.set_value(jnp.asarray(value, dtype=a.target.dtype))
    return new_head


# ------------------------------------------------------------------------------ loading
def detect_head(folder: str | Path) -> tuple[str, int | None]:
    """Guesses the head from `config.json` architectures and a sentence-transformers pooling
    config. Returns `(head_kind, num_labels)`."""
    folder = Path(folder)
    hf = json.loads((folder / "config.json").read_text())
    architectures = hf.get("architectures") or []
    num_labels = _num_labels(hf)
    if "BertForSequenceClassification" in architectures:
        return "sequence_classification", num_labels
    if "BertForTokenClassification" in architectures:
        return "token_classification", num_labels
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file() and json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"):
        return "sentence_embedding", None
    return "none", None


def _num_labels(hf: dict) -> int | None:
    if hf.get("id2label"):
        return len(hf["id2label"])
    return hf.get("num_labels")


def label_names(hf: dict, *, path: str | Path = "config.json") -> tuple[str, ...] | None:
    """Class names from an HF config's `id2label`, ordered by id (HF's default names
    `LABEL_0`, ... count as names too), or None when it has none.

    Raises:
      ConfigError: the ids are not 0 .. n-1, or a name is not a non-empty string.
    """
    id2label = hf.get("id2label")
    if not id2label:
        return None
    try:
        by_id = {int(key): name for key, name in id2label.items()}
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(f"{path}: id2label must map ids '0', '1', ... to names, "
                          f"got {id2label!r:.120}") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise ConfigError(f"{path}: id2label ids {sorted(by_id)} are not 0 .. {len(by_id) - 1}")
    names = tuple(by_id[i] for i in range(len(by_id)))
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigError(f"{path}: id2label names must be non-empty strings, got {names!r:.120}")
    return names


def load_pretrained(path: str | Path, *, head: str | None = None, num_labels: int | None = None,
                    dtype=jnp.float32, param_dtype=None, attention_impl=None,
                    allow_new_head: bool = False, strict: bool = True,
                    allow_torch_pickle: bool = False) -> EncoderModel:
    """Loads an HF BERT checkpoint folder into an `EncoderModel`.

    Args:
      path: folder with `config.json` and `model.safetensors` (keys with or without the `bert.`
        prefix) or `flax_model.msgpack`.
      head: one of `HEAD_KINDS`, or None to detect it from the checkpoint (`detect_head`).
      num_labels: classifier width; defaults to the checkpoint config's `id2label`. A
        classification head takes its class names (`labels`) from `id2label`, ordered by id,
        when it has `num_labels` entries.
      dtype: compute dtype (float32, float16 or bfloat16).
      param_dtype: storage dtype of the weights; defaults to `dtype`.
      attention_impl: 'xla', 'cudnn' or None (automatic).
      allow_new_head: initialise head weights the checkpoint lacks (e.g. a classifier to be
        fine-tuned on a base model) instead of raising.
      strict: raise on checkpoint keys that no module uses (pre-training heads, the pooler of a
        model without one, and buffers are always ignored).
      allow_torch_pickle: also read `pytorch_model.bin` (requires torch).

    Raises:
      FileNotFoundError: no config or no weights file.
      ConfigError: the config is not a supported BERT.
      CheckpointError: missing, unexpected or mis-shaped keys.
    """
    path = Path(path)
    config = EncoderConfig.from_hf_config(path)
    hf = json.loads((path / "config.json").read_text())
    if head is None:
        head, detected_labels = detect_head(path)
        num_labels = num_labels or detected_labels
    elif head not in HEAD_KINDS:
        raise ValueError(f"{head=} is not one of {HEAD_KINDS}")
    elif num_labels is None:
        num_labels = _num_labels(hf)
    labels = None
    if head in ("sequence_classification", "token_classification"):
        labels = label_names(hf, path=path / "config.json")
        if labels is not None and len(labels) != num_labels:
            labels = None  # the config names another head's classes (e.g. a new head)
    state, source = read_state_dict(path, allow_torch_pickle=allow_torch_pickle)
    rngs = nnx.Rngs(0)
    model = EncoderModel(config, make_head(head, config, num_labels=num_labels, labels=labels,
                                           rngs=rngs),
                         dtype=dtype, param_dtype=param_dtype or dtype,
                         attention_impl=attention_impl, rngs=rngs)
    assign_state_dict(model, state, path=path / source, allow_new_head=allow_new_head, strict=strict)
    return model


# ------------------------------------------------------------------------------ export
_ARCHITECTURES = {"sequence_classification": "BertForSequenceClassification",
                  "token_classification": "BertForTokenClassification", "none": "BertModel",
                  "sentence_embedding": "BertModel"}


def export_state_dict(model: EncoderModel) -> dict[str, np.ndarray]:
    """The model's float weights under HF PyTorch names (the inverse of `assign_state_dict`).

    Backbone keys carry the `bert.` prefix when the model has a classification head, as HF's
    `BertFor*` classes write them.
    """
    prefix = "bert." if isinstance(model.head, (SequenceClassifier, TokenClassifier)) else ""
    state = {}
    for a in _assignments(model):
        value = np.asarray(a.target[...], np.float32)
        for key, part in zip(a.sources, a.split(value)):
            name = key if key.startswith("classifier.") else prefix + key
            state[name] = np.ascontiguousarray(part)
    return state


def save_pretrained(model: EncoderModel, directory: str | Path, *, tokenizer_dir: str | Path | None = None,
                    labels: Sequence[str] | None = None, extra: dict | None = None) -> Path:
    """Writes an HF checkpoint folder (`config.json` + `model.safetensors`) that
    `load_pretrained` and HF transformers both read.

    Args:
      model: a float `EncoderModel`.
      directory: output folder (created).
      tokenizer_dir: a folder whose tokenizer files are copied alongside. Without it, the
        model's own tokenizer (`model.tokenizer`), if any, is written.
      labels: class names, written as `id2label` / `label2id`; defaults to the head's
        `labels`, else HF's `LABEL_0`, `LABEL_1`, ...
      extra: more keys for `config.json`.
    """

    directory = Path(directory)
    num_labels = getattr(model.head, "num_labels", None)
    if num_labels is not None:
        names = check_labels(labels if labels is not None else model.labels, num_labels)
        names = names or tuple(f"LABEL_{i}" for i in range(num_labels))
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_hf_dict() | {"architectures": [_ARCHITECTURES[model.head_kind]]}
    if num_labels is not None:
        config |= {"id2label": {str(i): n for i, n in enumerate(names)},
                   "label2id": {n: i for i, n in enumerate(names)}}
    config |= extra or {}
    save_file(export_state_dict(model), str(directory / SAFETENSORS))
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).is_file():
                shutil.copyfile(Path(tokenizer_dir) / name, directory / name)
    elif getattr(model, "tokenizer", None) is not None:
        model.tokenizer.save(directory)
    return directory
