"""Imports Hugging Face checkpoints of every registered family (safetensors, PyTorch
`pytorch_model.bin` or HF Flax msgpack) into `EncoderModel`, and exports them back.

Every foreign key is mapped explicitly, by the family's key tables (`samp_jax.models.families`):
this module is one generic loop over them. The whole checkpoint is checked first — missing keys,
unexpected keys and wrong shapes are gathered into one `CheckpointError` — and only then is
anything assigned, so a bad checkpoint never yields a half-loaded model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization
from safetensors.numpy import save_file

from samp_jax.core import strict_json
from samp_jax.core.atomic import atomic_folder, check_not_interrupted
from samp_jax.core.input_files import check_regular, read_text
from samp_jax.core.precision import MAX_LAYERS
from samp_jax.models.config import ConfigError, EncoderConfig, read_json
from samp_jax.models.errors import CheckpointError
from samp_jax.models.families import FAMILIES, TRANSFORMS, Family, HeadLayout, Transform, get_family
from samp_jax.models.families.base import unserved_head_hint
from samp_jax.models.cross_encoder import hf_config_keys, read_activation
from samp_jax.models.head_kinds import (
    NO_HEAD,
    SENTENCE_EMBEDDING,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    HeadKind,
)
from samp_jax.models.heads import POOLING_MODES, SentenceEmbedder, check_labels, get_head_kind, make_head
from samp_jax.models.similarity import DEFAULT_SIMILARITY, read_similarity, write_similarity
from samp_jax.models.head_keys import check_stated_head
from samp_jax.models.hf_labels import (HF_DEFAULT_NUM_LABELS, LABEL_THRESHOLD_KEY,
                                       RELEVANT_CLASS_KEY, check_problem_type, label_names,
                                       num_labels_origin, stated_label_threshold,
                                       stated_num_labels, stated_problem_type,
                                       stated_relevant_class)
from samp_jax.models.model import EncoderModel
from samp_jax.models.sentencepiece_tokenizer import SENTENCEPIECE_FILES
from samp_jax.models.st_dense import check_widths, dense_weights, load_dense
from samp_jax.models.st_folder import (PROMPTS_FILE, DeclaredPooling, read_pooling,
                                      transformer_folder, unlisted_pooling_warning,
                                      write_st_files)
from samp_jax.models.tokenizer import TOKENIZER_FILES, has_tokenizer
from samp_jax.models.torch_pickle import read_torch_pickle
from samp_jax.models.weight_files import (SAFETENSORS, TORCH_PICKLE, check_float_weight,
                                         check_not_lfs_pointer,
                                         read_safetensors, writing_safetensors)

SAFETENSORS_INDEX = "model.safetensors.index.json"
FLAX_MSGPACK = "flax_model.msgpack"
TORCH_PICKLE_INDEX = "pytorch_model.bin.index.json"


# ----------------------------------------------------------------------------- reading
# TensorFlow weights HF's TF classes write, which samp-jax does not read (nor do HF's PyTorch
# classes without `from_tf=True`).
TF_WEIGHTS = ("tf_model.h5", "tf_model.h5.index.json", "model.ckpt.index")
# The weights formats samp-jax reads, in the order HF transformers' PyTorch classes look for
# them (`from_pretrained`): safetensors, then the PyTorch pickle; Flax msgpack, which they
# read only with `from_flax=True`, last.
WEIGHTS_FORMATS = ((SAFETENSORS, SAFETENSORS_INDEX), (TORCH_PICKLE, TORCH_PICKLE_INDEX),
                   (FLAX_MSGPACK,))


def read_state_dict(folder: str | Path, *, allow_torch_pickle: bool = True) -> tuple[dict[str, np.ndarray], str]:
    """Reads a checkpoint's weights as numpy arrays under HF PyTorch key names.

    Looks for the files HF transformers' PyTorch classes read, in their order:
    `model.safetensors` (or a sharded index), then `pytorch_model.bin` (or a sharded index),
    read without torch and without running the pickle (`samp_jax.models.torch_pickle`: only
    tensors are rebuilt); then, last, `flax_model.msgpack` (HF reads it only with
    `from_flax=True`). A folder holding weights in more than one of these formats gets a
    warning when another file is newer than the one read (`_warn_other_formats`). Flax names and layouts
    are converted (`kernel` → transposed `weight`, `scale`/`embedding` → `weight`). LayerNorm
    `gamma`/`beta` in old checkpoints become `weight`/`bias`. Keys keep any base-model prefix
    (`bert.`, `roberta.`, ...). Returns `(state, filename)`.

    Raises:
      FileNotFoundError: the folder holds no weights file samp-jax can read (TensorFlow
        weights alone are named as such), or only a PyTorch pickle with
        `allow_torch_pickle=False`.
      CheckpointError: a weights file is damaged, a PyTorch pickle names anything but
        tensors, or a safetensors file holds TensorFlow's names.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    # a weights name that is a FIFO or a device (/dev/zero) is refused, named, not skipped
    if check_regular(folder / SAFETENSORS):
        state, source = read_safetensors([folder / SAFETENSORS]), SAFETENSORS
    elif check_regular(folder / SAFETENSORS_INDEX):
        index = _read_index(folder / SAFETENSORS_INDEX)
        shards = sorted({folder / name for name in index.values()})
        state, source = read_safetensors(shards), SAFETENSORS_INDEX
    elif (check_regular(folder / TORCH_PICKLE) or check_regular(folder / TORCH_PICKLE_INDEX)) \
            and (allow_torch_pickle or not check_regular(folder / FLAX_MSGPACK)):
        if not allow_torch_pickle:
            raise FileNotFoundError(
                f"{folder} has only PyTorch weights ({TORCH_PICKLE}) and allow_torch_pickle=False")
        if check_regular(folder / TORCH_PICKLE):
            state, source = _read_torch_pickles([folder / TORCH_PICKLE]), TORCH_PICKLE
        else:
            index = _read_index(folder / TORCH_PICKLE_INDEX)
            state = _read_torch_pickles(sorted({folder / name for name in index.values()}))
            source = TORCH_PICKLE_INDEX
    elif check_regular(folder / FLAX_MSGPACK):
        state, source = _read_flax_msgpack(folder / FLAX_MSGPACK), FLAX_MSGPACK
    else:
        tf = [name for name in TF_WEIGHTS if (folder / name).is_file()]
        if tf:
            raise FileNotFoundError(
                f"{folder} has TensorFlow weights ({', '.join(tf)}) and no weights samp-jax "
                f"reads ({SAFETENSORS} or {TORCH_PICKLE}, each possibly sharded, or "
                f"{FLAX_MSGPACK}); HF's PyTorch classes read them only with from_tf=True. "
                "Convert them with transformers 4.x and TensorFlow installed: "
                f"transformers.{_hf_class(folder)}.from_pretrained('{folder}', from_tf=True)"
                ".save_pretrained('converted'), then load 'converted'")
        raise FileNotFoundError(
            f"{folder} has no weights: looked for {SAFETENSORS}, {SAFETENSORS_INDEX}, "
            f"{TORCH_PICKLE}, {TORCH_PICKLE_INDEX}, {FLAX_MSGPACK}")
    _warn_other_formats(folder, source, allow_torch_pickle)
    return {_layer_norm_names(k): v for k, v in state.items()}, source


def _hf_class(folder: Path) -> str:
    """The HF class `config.json`'s architectures names, for a conversion to suggest;
    AutoModel when it names none (or cannot be read: the load reports that)."""
    try:
        architectures = read_json(folder / "config.json").get("architectures")
    except (ValueError, OSError, AttributeError):  # not JSON, a FIFO, not an object
        return "AutoModel"
    named = architectures[0] if isinstance(architectures, list) and architectures else None
    return named if isinstance(named, str) and named.isidentifier() else "AutoModel"


# An ignored weights file this much newer than the one read was likely written after it (a
# fine-tune saved into a copy of a snapshot), not downloaded beside it.
NEWER_BY_S = 60.0


def _warn_other_formats(folder: Path, source: str, allow_torch_pickle: bool) -> None:
    """Warns when `folder` holds weights in another format than the file `source` read and
    either samp-jax reads another file than HF transformers would (`allow_torch_pickle=False`
    beside a PyTorch pickle), or an ignored file is newer than the one read by `NEWER_BY_S`:
    a fine-tune saved into a copy of a hub snapshot keeps the snapshot's stale files, and HF
    reads the stale safetensors too. Files of one snapshot (the same weights in several
    formats, as many hub repositories ship) get no warning."""
    others = [name for names in WEIGHTS_FORMATS if source not in names
              for name in names if (folder / name).is_file()]
    pickles = [name for name in others if name in (TORCH_PICKLE, TORCH_PICKLE_INDEX)]
    if source == FLAX_MSGPACK and pickles and not allow_torch_pickle:
        warnings.warn(f"{folder} holds weights in more than one format: samp-jax reads {source} "
                      f"(since allow_torch_pickle=False refuses {', '.join(pickles)}, which HF "
                      "transformers reads); if they hold other weights, the logits differ from "
                      "HF's", stacklevel=3)
        return
    read_at = (folder / source).stat().st_mtime
    newer = [name for name in others if (folder / name).stat().st_mtime > read_at + NEWER_BY_S]
    if newer:
        warnings.warn(f"{folder} holds weights in more than one format, and {', '.join(newer)} "
                      f"{'is' if len(newer) == 1 else 'are'} newer than {source}, which samp-jax "
                      "reads (as HF transformers' PyTorch classes do): if the newer file holds "
                      f"the weights you mean (a fine-tune saved into a copy of a snapshot), "
                      f"remove {source}", stacklevel=3)


def _read_index(file: Path) -> dict[str, str]:
    try:
        weight_map = strict_json.parse(read_text(file))["weight_map"]
    except strict_json.BeyondReader as e:
        raise CheckpointError(file, problem=f"is not a sharded-checkpoint index: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(file, problem=f"is not a sharded-checkpoint index with a weight_map ({e!r})") from None
    if not isinstance(weight_map, dict):
        raise CheckpointError(file, problem="has a weight_map that is not a JSON object")
    for name in set(weight_map.values()):  # shards are files beside the index, nowhere else
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise CheckpointError(file, problem=f"names shard {name!r}; a shard is a file name in "
                                                "the index's own folder")
    return weight_map


def _read_flax_msgpack(file: Path) -> dict[str, np.ndarray]:
    check_not_lfs_pointer(file)
    try:
        tree = serialization.msgpack_restore(file.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on damaged input
        raise CheckpointError(file, problem=f"is not a readable Flax msgpack file ({type(e).__name__}: {e})") from None
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


def _read_torch_pickles(files: Sequence[Path]) -> dict[str, np.ndarray]:
    state = {}
    for file in files:
        if not check_regular(file):
            raise FileNotFoundError(f"PyTorch shard {file} is missing")
        check_not_lfs_pointer(file)
        state |= read_torch_pickle(file)
    return state


def _flatten(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), value


def _layer_norm_names(key: str) -> str:
    """Old TF-converted checkpoints name LayerNorm parameters gamma/beta."""
    if ".LayerNorm." in key or key.startswith("LayerNorm."):
        key = key.replace(".gamma", ".weight").replace(".beta", ".bias")
    return key


def strip_prefix(state: dict[str, np.ndarray], family: Family) -> dict[str, np.ndarray]:
    """The state with the family's base-model prefix (`bert.`, `roberta.`, ...) removed, the
    naming the key tables use.

    Raises:
      CheckpointError: two keys collide once the prefix is removed.
    """
    prefix = family.prefix + "."
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if name in out:
            raise CheckpointError("<state>", problem=f"holds {name!r} both with and without the "
                                  f"{prefix!r} prefix")
        out[name] = value
    return out


# ------------------------------------------------------------------------- key mapping
@dataclasses.dataclass(frozen=True)
class _Assignment:
    """One model parameter filled from one or more checkpoint tensors (a `KeyRule`, expanded)."""

    target: nnx.Variable
    sources: tuple[str, ...]
    source_shapes: tuple[tuple[int, ...], ...]
    transform: Transform
    is_head: bool = False
    outside_base: bool = False


def _variable(model: EncoderModel, path: str) -> nnx.Variable:
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    if not isinstance(node, nnx.Variable):
        raise TypeError(f"{path} is a {type(node).__name__}, not a parameter")
    return node


def head_layout(model: EncoderModel, family: Family) -> HeadLayout:
    """The family's layout for the model's head.

    Raises:
      ConfigError: the family has no key map for that head kind (a custom head), or a
        sequence head's activation is not the one the family's HF class applies.
    """
    kind = model.head_kind
    if kind not in family.heads:
        raise ConfigError(f"{family.model_type} checkpoints have no layout for a {kind!r} head; "
                          f"HF heads are {sorted(k for k in family.heads if k != NO_HEAD.name)}")
    layout = family.heads[kind]
    activation = getattr(model.head, "activation", None)
    if layout.activation is not None and activation != layout.activation:
        raise ConfigError(
            f"{family.class_prefix}{layout.architecture} applies {layout.activation!r} in its "
            f"classification head; this head applies {activation!r}")
    spec = model.head.spec() if kind in _TASK_HEADS else {}
    expressible = {"num_labels", "labels", *(("activation", "problem_type", "cross_encoder_activation",
                                              "label_threshold", "relevant_class")
                                             if kind == SEQUENCE_CLASSIFICATION.name else ())}
    beyond = sorted(set(spec) - expressible - set(layout.options({}) if layout.options else ()))
    if beyond:  # e.g. mean pooling or a head norm: the family's HF class has no such option
        raise ConfigError(f"{family.class_prefix}{layout.architecture} cannot express this head's "
                          f"{beyond} ({ {k: spec[k] for k in beyond} })")
    if layout.options is not None:  # a structural option the HF class always has (a norm)
        norm = layout.options({}).get("norm")
        if norm is not None and (getattr(model.head, "norm", None) is not None) != norm:
            raise ConfigError(f"{family.class_prefix}{layout.architecture} has "
                              f"{'a' if norm else 'no'} LayerNorm in its head; this head has "
                              f"{'none' if norm else 'one'} (build it with norm={norm})")
    return layout


def _assignments(model: EncoderModel) -> list[_Assignment]:
    family = get_family(model.config.model_type)
    rules = [(rule, False) for rule in family.backbone(model.config)]
    rules += [(rule, True) for rule in head_layout(model, family).key_rules(model.config)]
    out = []
    for rule, is_head in rules:
        indices = range(rule.first_layer, model.config.num_layers) if "{i}" in rule.ours else (None,)
        transform = TRANSFORMS[rule.transform]
        for i in indices:
            target = _variable(model, rule.ours.format(i=i))
            shapes = transform.source_shapes(target.shape)  # no array: the model may be abstract
            out.append(_Assignment(target, tuple(key.format(i=i) for key in rule.theirs), shapes,
                                   transform, is_head, rule.outside_base))
    return out


# A config that asks for more layers than `MAX_LAYERS` (more than any encoder has), beside
# weights that name no layer the family's way, is refused before any layer is built (a family
# mismatch with fewer layers is left to the key check, which names the family the weights
# look like).

# `EncoderConfig` sizes that set parameter shapes, checked against the checkpoint's own
# shapes before anything is built (`check_sizes`).
_SIZE_FIELDS = ("vocab_size", "hidden_size", "embedding_size", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "relative_attention_num_buckets",
                "position_buckets", "max_relative_positions")


def _layer_templates(family: Family, config: EncoderConfig) -> list[tuple[str, str]]:
    """`(before, after)` around `{i}` of each per-layer key of the family's backbone table."""
    return sorted({tuple(key.split("{i}", 1)) for rule in family.backbone(config)
                   for key in rule.theirs if "{i}" in key})


def check_layers(config_file: Path, weights_file: Path, config: EncoderConfig, family: Family,
                 keys) -> None:
    """Refuses a config that asks for more layers than the checkpoint holds, from the key
    names alone (`keys`, without the base-model prefix), before any layer is built.

    A checkpoint of more layers than the config states is left to the key check (unexpected
    keys; `strict=False` reads the first ones). Weights that name no layer the family's way
    are left to it too (it names the family they look like), unless the config asks for more
    than `MAX_LAYERS`.

    Raises:
      ConfigError: naming `config_file`, its layer-count key and value, and the layers the
        checkpoint `weights_file` holds.
    """
    templates = _layer_templates(family, config)
    if not templates:
        return
    held = 0
    for key in keys:
        for before, after in templates:
            if key.startswith(before) and key.endswith(after) and len(key) > len(before) + len(after):
                index = key[len(before):len(key) - len(after)]
                if index.isdigit() and index.isascii():
                    held = max(held, int(index) + 1)
    if held >= config.num_layers or (not held and config.num_layers <= MAX_LAYERS):
        return
    name = family.config_keys.get("num_layers", "num_layers")
    layer = templates[0][0]  # `encoder.layer.`
    holds = (f"holds {held} layer{'s' if held > 1 else ''} ({layer}0 to {layer}{held - 1})" if held
             else f"names no layer as {family.model_type} checkpoints do ({layer}{{i}}.*)")
    raise ConfigError(f"{config_file}: {name}={config.num_layers}, but the checkpoint "
                      f"{weights_file} {holds}")


def _source_shapes(model: EncoderModel) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Each checkpoint key `model` reads -> (the shape it expects, whether the head reads it)."""
    return {key: (shape, a.is_head) for a in _assignments(model)
            for key, shape in zip(a.sources, a.source_shapes)}


def check_sizes(config_file: Path, weights_file: Path, model: EncoderModel, state, build) -> None:
    """Refuses a config whose sizes (`hidden_size`, `vocab_size`, ...) do not fit the
    checkpoint's own tensor shapes, naming the config key, before any array is made.

    `model` is the model the config describes, built abstract (`nnx.eval_shape`: shapes only,
    so a config asking for a table of 10^12 rows allocates nothing); `state` the checkpoint's
    tensors (anything with `.shape`; the base-model prefix stripped); `build(config)` builds
    a model of another config, abstract. When backbone tensors differ from what the config
    implies, each size field is doubled in turn (in an abstract build) to see which tensor
    dimensions it sets: a field all of whose dimensions differ is the config's error. When no
    field is, the tensors are the checkpoint's error, and the key check names them.

    Raises:
      ConfigError: `config_file: KEY=VALUE does not fit the checkpoint WEIGHTS_FILE, which
        holds KEY=N (TENSOR is SHAPE there, SHAPE by config.json)`.
    """
    config = model.config
    found = {key: tuple(value.shape) for key, value in state.items()}
    expected = _source_shapes(model)
    wrong: set[tuple[str, int]] = set()  # (key, dimension)
    backbone_wrong = False
    for key, (want, is_head) in expected.items():
        got = found.get(key)
        if got is None or got == want:
            continue
        wrong |= {(key, d) for d in range(len(want)) if len(got) != len(want) or got[d] != want[d]}
        backbone_wrong = backbone_wrong or not is_head
    if not backbone_wrong:
        return
    family = get_family(config.model_type)
    problems = []
    for field in _SIZE_FIELDS:
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            continue
        try:
            other = _source_shapes(build(config.replace(**{field: 2 * value})))
        except (ConfigError, ValueError, TypeError):  # a field that cannot double alone
            continue
        depends = [(key, d) for key, (want, _) in expected.items() if key in found  # table order
                   and key in other and len(other[key][0]) == len(want)
                   for d in range(len(want)) if other[key][0][d] != want[d]]
        if not depends or not set(depends) <= wrong:
            continue
        implied = {found[key][d] * value / expected[key][0][d] for key, d in depends
                   if len(found[key]) == len(expected[key][0])}
        name = family.config_keys.get(field, field)
        key = depends[0][0]
        shapes = f"{key} is {found[key]} there, {expected[key][0]} by config.json"
        if len(implied) == 1 and float(next(iter(implied))).is_integer():
            problems.append(f"{name}={value} does not fit the checkpoint {weights_file}, which "
                            f"holds {name}={int(next(iter(implied)))} ({shapes})")
        else:
            problems.append(f"{name}={value} does not fit the checkpoint {weights_file} ({shapes})")
    if problems:
        raise ConfigError(f"{config_file}: " + "; ".join(problems))


def assign_state_dict(model: EncoderModel, state: dict[str, np.ndarray], *, path="<state>",
                      allow_new_head: bool = False, strict: bool = True,
                      hint: str | None = None, head_hint: str | None = None) -> list[str]:
    """Fills `model` from a state dict in HF PyTorch naming (see `read_state_dict`), through
    its family's key tables. The base-model prefix is optional.

    All checks happen before the first assignment. Returns the head keys that were absent, or
    held at another shape (a classifier of another number of labels), and left freshly
    initialised (only with `allow_new_head=True`, as HF's `ignore_mismatched_sizes`; a warning
    names the reshaped ones). `hint` is added to the error when keys are unexpected (what the
    caller knows of the checkpoint's own head); `head_hint` when head keys have another shape
    (where the head's width came from).

    Keys the family's HF class does not build for this config (`Family.unused_keys`: ERNIE's
    task-type table without `use_task_id`) are left out with a warning, as HF leaves them.

    Raises:
      CheckpointError: listing every missing, unexpected (when `strict`) and mis-shaped key,
        or the first tensor that is not floating point (int, bool) or has NaN/Inf.
    """
    family = get_family(model.config.model_type)
    state = strip_prefix(state, family)
    assignments = _assignments(model)
    expected = {key for a in assignments for key in a.sources}
    missing = sorted(expected - state.keys())
    new_head = [k for k in missing if any(k in a.sources for a in assignments if a.is_head)]
    reshaped = [(key, tuple(state[key].shape), want) for a in assignments if a.is_head
                for key, want in zip(a.sources, a.source_shapes)
                if key in state and tuple(state[key].shape) != want]
    if allow_new_head and (new_head or reshaped):
        new_head += [key for key, _, _ in reshaped]
        missing = [k for k in missing if k not in new_head]
        assignments = [a for a in assignments if not (a.is_head and set(a.sources) & set(new_head))]
        if reshaped:
            warnings.warn(f"{path}: the checkpoint's head has another shape than the one built "
                          f"({', '.join(f'{k} {found} for {want}' for k, found, want in reshaped)});"
                          " those weights are initialised anew, to be trained", stacklevel=2)
    else:
        new_head = []
    ignored = family.ignored_prefixes
    unused = {k: why for k, why in family.unused_keys(model.config).items()
              if k in state and k not in expected}
    unexpected = sorted(k for k in state.keys() - expected - unused.keys()
                        if k not in family.ignored_keys and not k.startswith(ignored))
    mismatched = []
    for a in assignments:
        for key, want in zip(a.sources, a.source_shapes):
            if key in state and tuple(state[key].shape) != want:
                mismatched.append((key, tuple(state[key].shape), want))
    if missing or mismatched or (strict and unexpected):
        head_keys = {key for a in assignments if a.is_head for key in a.sources}
        raise CheckpointError(path, missing=missing, unexpected=unexpected if strict else (),
                              mismatched=mismatched,
                              hint=_wrapper_hint(unexpected, expected, family)
                              or _family_hint(unexpected, family) or (hint if unexpected else None)
                              or (head_hint if any(key in head_keys for key, _, _ in mismatched)
                                  else None)
                              or (_NO_HEAD_WEIGHTS if missing and set(missing) <= head_keys
                                  and not mismatched else None))
    for a in assignments:
        for key in a.sources:
            check_float_weight(path, key, state[key])
    for key, why in unused.items():  # as HF's from_pretrained notes weights not used
        warnings.warn(f"{path}: the checkpoint's {key} is not used: {why}", stacklevel=2)
    values = [a.transform.combine(*(state[k] for k in a.sources)) for a in assignments]
    for a, value in zip(assignments, values):
        a.target.set_value(jnp.asarray(value, dtype=a.target.dtype))
    return new_head


_NO_HEAD_WEIGHTS = (
    "hint: the weights hold the encoder but not the head config.json names (a base or "
    "pre-training checkpoint under a task class's name, say): fine-tune a head (samp-jax "
    "finetune, or allow_new_head=True to start one in Python), or load the encoder alone with "
    "head='none' (CLI: --head none)")
"""The hint of a load whose only missing keys are the head's."""


# Prefixes a training wrapper puts before every name of the model it wraps: a PyTorch
# Lightning module's attribute (`self.model`) and torch's DistributedDataParallel / DataParallel.
WRAPPER_PREFIXES = {"model.": ("a PyTorch Lightning module's state dict", "lightning_module.model"),
                    "module.": ("a DistributedDataParallel or DataParallel wrapper's state dict",
                                "wrapper.module")}


def _wrapper_hint(unexpected: list[str], expected: set[str], family: Family) -> str | None:
    """When most unexpected keys are expected ones behind a training wrapper's prefix
    (`WRAPPER_PREFIXES`), say so and how to save the model's own weights."""
    base = family.prefix + "."
    for prefix, (what, wrapped) in WRAPPER_PREFIXES.items():
        inner = [key[len(prefix):] for key in unexpected if key.startswith(prefix)]
        inner = [key[len(base):] if key.startswith(base) else key for key in inner]
        if unexpected and sum(key in expected for key in inner) > len(unexpected) / 2:
            return (f"hint: the names carry a {prefix!r} prefix ({unexpected[0]!r}), as in "
                    f"{what}; save the wrapped HF model itself ({wrapped}.save_pretrained("
                    f"folder)), or its state dict with the {prefix!r} prefix removed")
    return None


def _family_hint(unexpected: list[str], family: Family) -> str | None:
    """When most unexpected keys carry another family's base-model prefix, say so: the config's
    `model_type` is likely wrong."""
    for other in FAMILIES.values():
        if other.prefix != family.prefix and unexpected:
            share = sum(key.startswith(other.prefix + ".") for key in unexpected) / len(unexpected)
            if share > 0.5:
                return (f"hint: the weights are named like a {other.model_type} checkpoint "
                        f"('{other.prefix}.*') but config.json says model_type="
                        f"{family.model_type!r}")
    return None


# ------------------------------------------------------------------------------ loading
def detect_head(folder: str | Path, *, files: str | Path | None = None) -> tuple[str, int | None]:
    """Guesses the head from `config.json`'s architectures (any family's
    `*ForSequenceClassification` / `*ForTokenClassification`) and a sentence-transformers
    pooling config (in `files`, the folder whose sentence-transformers files are read:
    `folder` by default, whose config is then its `transformer_folder`'s). Returns
    `(head_kind, num_labels)`. Reads no weights: 'none' means the config states no head, and
    `load_pretrained` then checks that the weights hold none."""
    files = Path(folder) if files is None else Path(files)
    folder = transformer_folder(folder) if files == Path(folder) else Path(folder)
    config = EncoderConfig.from_hf_config(folder)
    hf = _read_hf(folder)
    kind = get_family(config.model_type).head_kind_of(hf.get("architectures"))
    if kind is not None:
        return kind, stated_num_labels(hf)
    if read_pooling(files) is not None:
        return SENTENCE_EMBEDDING.name, None
    return NO_HEAD.name, None


def _read_hf(folder: Path) -> dict:
    return read_json(folder / "config.json")  # from_hf_config has validated it


def _state_raised_length(folder: Path, max_length: int, default: int) -> None:
    """Writes `max_length` as the copied `tokenizer_config.json`'s `model_max_length` when the
    model's tokenizer takes longer rows than the copy states (`--max-length` above it), so the
    saved folder serves at that length; a shorter one is the copy's to keep."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    stated = config.get("model_max_length")
    stated = stated if isinstance(stated, int) and 0 < stated < 1_000_000 else default
    if max_length > stated:
        path.write_text(json.dumps(config | {"model_max_length": max_length}, indent=2),
                        encoding="utf-8")


def load_pretrained(path: str | Path, *, head: str | HeadKind | None = None,
                    num_labels: int | None = None, pooling: str | Sequence[str] | None = None, normalize: bool | None = None,
                    dtype=jnp.float32, param_dtype=None, attention_impl=None,
                    allow_new_head: bool = False, strict: bool = True,
                    allow_torch_pickle: bool = True) -> EncoderModel:
    """Loads an HF checkpoint folder of any registered family into an `EncoderModel`.

    Args:
      path: folder with `config.json` and `model.safetensors` (keys with or without the
        base-model prefix such as `roberta.`), `pytorch_model.bin` or `flax_model.msgpack`;
        or a sentence-transformers folder whose `modules.json` puts them in a subfolder
        (`0_Transformer/`, `st_folder.transformer_folder`), its other modules at its root.
      head: a head kind or its name ('none', 'sequence_classification',
        'token_classification', 'sentence_embedding'; e.g. a task's `Task.head`), overriding
        what `config.json`'s `architectures` states; or None to detect it from the checkpoint
        (`detect_head`). When the config states no head (no `architectures`, as in older or
        converted checkpoints) and the weights hold one, the load is refused, naming the head
        kinds that fit (`samp_jax.models.head_keys`): pass one of them here.
      num_labels: classifier width; defaults to the checkpoint config's `id2label` (two, as in
        HF, for a classifier whose config states none). A classification head takes
        its class names (`labels`) from `id2label`, ordered by id, when it has `num_labels`
        entries (HF's `LABEL_0`, ... when the config states none).
      pooling: sentence-embedding pooling mode(s) (`SentenceEmbedder`). Defaults to what a
        sentence-transformers folder declares; a folder that declares none needs it.
      normalize: L2-normalise sentence embeddings; defaults to the folder's Normalize module
        (True when `pooling` is given for a folder that declares nothing). The folder's Dense
        projections (`N_Dense/`) run between pooling and normalisation either way.
      dtype: compute dtype (float32, float16 or bfloat16).
      param_dtype: storage dtype of the weights; defaults to `dtype`.
      attention_impl: 'xla', 'cudnn' or None (automatic).
      allow_new_head: initialise head weights the checkpoint lacks (e.g. a classifier to be
        fine-tuned on a base model) instead of raising.
      strict: raise on checkpoint keys that no module uses (pre-training heads, a pooler no
        head uses, and buffers are always ignored). With `strict=False` and no head stated,
        the encoder is read alone whatever head the weights hold.
      allow_torch_pickle: read `pytorch_model.bin` when the folder has no safetensors weights
        (without torch, running nothing from the pickle; `read_state_dict`). False refuses it
        (and reads `flax_model.msgpack` instead when the folder has one, with a warning).

    Raises:
      FileNotFoundError: no config or no weights file.
      ConfigError: the config is not a supported family, the head / pooling asked for does
        not fit the folder, or the config states no head and the weights hold one.
      CheckpointError: missing, unexpected or mis-shaped keys, or damaged files.
    """
    path = Path(path)
    check_not_interrupted(path)
    model_folder = transformer_folder(path)  # a sentence-transformers 1.x folder's 0_Transformer

    def read() -> tuple[dict[str, np.ndarray], Path]:
        state, source = read_state_dict(model_folder, allow_torch_pickle=allow_torch_pickle)
        return state, model_folder / source
    return load_checkpoint(model_folder, read, files=path, head=head, num_labels=num_labels,
                           pooling=pooling, normalize=normalize, dtype=dtype, param_dtype=param_dtype,
                           attention_impl=attention_impl, allow_new_head=allow_new_head,
                           strict=strict)


def load_checkpoint(path: Path, read_weights: Callable[[], tuple[dict[str, np.ndarray], Path | str]],
                    *, hf_overrides: Mapping[str, Any] | None = None, files: Path | None = None,
                    head: str | HeadKind | None = None, num_labels: int | None = None,
                    pooling: str | Sequence[str] | None = None, normalize: bool | None = None,
                    dtype=jnp.float32, param_dtype=None, attention_impl=None,
                    allow_new_head: bool = False, strict: bool = True) -> EncoderModel:
    """`load_pretrained` of the folder `path` (its `config.json`), with the weights that
    `read_weights()` returns: `(state in HF naming, the file errors name)`. A PEFT adapter
    (`samp_jax.models.peft_adapter`) gives its base folder and the merged weights here.

    `hf_overrides`: `config.json` keys stated elsewhere (an adapter's own `id2label`), over
    the folder's. `files`: the folder whose sentence-transformers files (pooling, Dense,
    similarity, a CrossEncoder's activation) are read; `path` by default. The other
    arguments and the errors are `load_pretrained`'s.
    """
    files = path if files is None else files
    config = EncoderConfig.from_hf_config(path)
    family = get_family(config.model_type)
    hf = _read_hf(path) | dict(hf_overrides or {})

    @functools.cache
    def weights() -> tuple[dict[str, np.ndarray], Path | str]:
        # the layers the config asks for, against those the weights hold, before any code
        # expands keys or builds modules per layer
        state, source = read_weights()
        check_layers(path / "config.json", source, config, family,
                     strip_prefix(state, family).keys())
        return state, source
    given_num_labels = num_labels
    detected = head is None
    head, num_labels, hint = _resolve_head(path, config, family, hf, head, num_labels,
                                           weights if strict else None, files=files)
    head_hint = None
    if get_head_kind(head).classifies:  # a classifier of another width: say where ours came from
        origin = (f"num_labels={given_num_labels} was given" if given_num_labels is not None
                  else num_labels_origin(hf, path / "config.json"))
        head_hint = (f"hint: the classifier is built with {num_labels} labels because {origin}; "
                     "state the number the checkpoint's classifier has (id2label / num_labels "
                     "in config.json, or num_labels=), or pass allow_new_head=True to train a "
                     "new classifier")
    if not allow_new_head:
        check_problem_type(path / "config.json", hf, head)
    declared = read_pooling(files) if head == SENTENCE_EMBEDDING.name else None  # read once
    spec = _head_spec(path, config, family, hf, head, num_labels, declared, pooling, normalize,
                      files=files)
    state, source = weights()

    def build(config: EncoderConfig = config) -> EncoderModel:
        rngs = nnx.Rngs(0)
        return EncoderModel(config, make_head(head, config, rngs=rngs, **spec),
                            dtype=dtype, param_dtype=param_dtype or dtype,
                            attention_impl=attention_impl, rngs=rngs)
    # The model is first built with abstract variables (shapes and dtypes; no random draws, no
    # compilations, no memory), and the config's sizes are checked against the checkpoint's
    # shapes. Without new head weights to draw, every variable then comes from the
    # checkpoint: the abstract model is filled, and any variable left unfilled is an error
    # (`check_filled`).
    abstract = nnx.eval_shape(build)
    check_sizes(path / "config.json", source, abstract, strip_prefix(state, family),
                lambda other: nnx.eval_shape(lambda: build(other)))
    model = build() if allow_new_head else abstract
    assign_state_dict(model, state, path=source, allow_new_head=allow_new_head, strict=strict,
                      hint=hint, head_hint=head_hint)
    unserved = unserved_head_hint(hf.get("architectures"))
    if strict and detected and head == NO_HEAD.name and unserved is not None:
        # its head's keys are ones the family ignores (BERT's `cls.`: next-sentence prediction)
        raise ConfigError(f"{path}: {unserved} (or head='none'; CLI: --head none)")
    if spec.get("dense"):  # the folder's Dense modules, from their own folders
        load_dense(model.head, declared.dense)
    check_filled(model, path)
    return model


def check_filled(model: nnx.Module, path: Path) -> None:
    """Raises CheckpointError when a variable of `model` built abstract (`nnx.eval_shape`) was
    not filled from the checkpoint at `path`: a module variable no key table maps."""
    left = [jax.tree_util.keystr(where) for where, leaf
            in jax.tree_util.tree_leaves_with_path(nnx.state(model))
            if isinstance(leaf, jax.ShapeDtypeStruct)]
    if left:
        raise CheckpointError(path, problem=f"fills no value for the model's variables {left}: "
                                            "no key table maps them")


def _resolve_head(path: Path, config: EncoderConfig, family: Family, hf: dict,
                  head: str | HeadKind | None, num_labels: int | None,
                  weights, *, files: Path) -> tuple[str, int | None, str | None]:
    """`(head kind name, classifier width, hint)`. With `head` None the head is detected from
    the config (`detect_head`); when that finds none, `weights` (a call returning
    `read_state_dict`'s result, or None for a non-strict load) must hold no head of the family
    (`head_keys.check_stated_head`). A given `head` is checked against the family's heads. A
    classifier's width defaults to what the config states, else HF's default of two; `hint`
    goes with an unexpected-keys error of a head-less load."""
    head = head.name if isinstance(head, HeadKind) else head
    architectures = hf.get("architectures")
    hint = unserved_head_hint(architectures)  # the config names a head samp-jax does not run
    if head is None:
        head, detected_labels = detect_head(path, files=files)
        num_labels = num_labels or detected_labels
        if head == NO_HEAD.name and hint is None and weights is not None:
            keys = strip_prefix(weights()[0], family).keys()
            hint = check_stated_head(path / "config.json", family, config, keys, architectures)
    elif head not in family.heads:
        raise ValueError(f"{head=} is not one of {tuple(family.heads)} (the heads "
                         f"{family.model_type} checkpoints have)")
    elif num_labels is None:
        num_labels = stated_num_labels(hf)
        if num_labels is None and get_head_kind(head).classifies:  # as HF's task classes read it
            num_labels = HF_DEFAULT_NUM_LABELS
    return head, num_labels, hint if head == NO_HEAD.name else None


def _head_spec(path: Path, config: EncoderConfig, family: Family, hf: dict, head: str,
               num_labels: int | None, declared: DeclaredPooling | None, pooling,
               normalize, *, files: Path) -> dict:
    """`make_head`'s keyword arguments for `head`: a classifier's width, class names,
    activation and family options, or a sentence embedder's pooling and Dense layers (from
    `declared`, the folder's sentence-transformers declaration)."""
    spec: dict = {}
    if get_head_kind(head).classifies:
        labels = label_names(hf, path=path / "config.json")
        if labels is not None and len(labels) != num_labels:
            labels = None  # the config names another head's classes (e.g. a new head)
        spec = {"num_labels": num_labels, "labels": labels,
                "activation": family.heads[head].activation}
        if head == SEQUENCE_CLASSIFICATION.name:
            spec["problem_type"] = stated_problem_type(hf, num_labels)
            spec["label_threshold"] = stated_label_threshold(path / "config.json", hf,
                                                             spec["problem_type"])
            spec["relevant_class"] = stated_relevant_class(path / "config.json", hf, num_labels,
                                                           spec["problem_type"])
            # a sentence-transformers CrossEncoder's activation, checked before any weights
            spec["cross_encoder_activation"] = read_activation(files, hf, num_labels)
        if family.heads[head].options is not None:
            try:
                spec |= family.heads[head].options(hf)
            except ConfigError as e:
                raise ConfigError(f"{path / 'config.json'}: {e}") from None
    if head == SENTENCE_EMBEDDING.name:
        spec = _pooling_spec(files, config, declared, pooling, normalize)
    elif pooling is not None or normalize is not None:
        raise ValueError(f"pooling/normalize apply to head={SENTENCE_EMBEDDING.name!r}, not {head!r}")
    return spec


def _pooling_spec(path: Path, config: EncoderConfig, declared: DeclaredPooling | None, pooling,
                  normalize) -> dict:
    """The folder's declared pooling (`declared`, `read_pooling`; or `pooling` / `normalize` in
    its place), with its Dense layers, checked to read the pooled width (`hidden_size` × modes)."""
    if pooling is None:
        if declared is None:
            raise ConfigError(
                f"{path} declares no sentence-transformers pooling (no modules.json / "
                "1_Pooling/config.json); pass pooling= one of "
                f"{POOLING_MODES} (CLI: --pooling) to choose one")
        pooling = declared.modes
        differs = unlisted_pooling_warning(declared)  # read once per load, warned once
        if differs is not None:
            warnings.warn(differs, stacklevel=4)
    if normalize is None:
        normalize = declared.normalize if declared is not None else True
    spec = {"pooling": pooling, "normalize": normalize}
    similarity = read_similarity(path)  # sentence-transformers' similarity_fn_name
    if similarity != DEFAULT_SIMILARITY:
        spec["similarity"] = similarity
    if declared is not None and declared.dense:
        modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        check_widths(declared.dense, config.hidden_size * len(modes),
                     f"pooling {list(modes)} of hidden_size {config.hidden_size}")
        spec["dense"] = [module.layer for module in declared.dense]
    return spec


# ------------------------------------------------------------------------------ export
def export_state_dict(model: EncoderModel) -> dict[str, np.ndarray]:
    """The model's float weights under HF PyTorch names (the inverse of `assign_state_dict`).

    Backbone keys carry the family's base-model prefix (`bert.`, `roberta.`, ...) when the
    model has a classification head, as HF's task classes write them.
    """
    family = get_family(model.config.model_type)
    prefix = family.prefix + "." if model.head_kind in _TASK_HEADS else ""
    state = {}
    for a in _assignments(model):
        value = np.asarray(a.target[...], np.float32)
        for key, part in zip(a.sources, a.transform.split(value)):
            state[key if a.outside_base else prefix + key] = np.ascontiguousarray(part)
    return state


_TASK_HEADS = (SEQUENCE_CLASSIFICATION.name, TOKEN_CLASSIFICATION.name)


def save_pretrained(model: EncoderModel, directory: str | Path, *, tokenizer_dir: str | Path | None = None,
                    labels: Sequence[str] | None = None, extra: dict | None = None) -> Path:
    """Writes an HF checkpoint folder (`config.json` + `model.safetensors`, in the model's
    family's naming and class names) that `load_pretrained` and HF transformers both read. A
    sentence-embedding model also gets sentence-transformers' `modules.json` and pooling
    config (and its Dense projections, `N_Dense/`), so sentence-transformers loads it and
    embeds the same way. A sentence-transformers CrossEncoder's head states its activation
    in `config.json` (`samp_jax.models.cross_encoder.hf_config_keys`), so `CrossEncoder.predict`
    applies the same one.

    Args:
      model: a float `EncoderModel`.
      directory: output folder (created).
      tokenizer_dir: a folder whose tokenizer files are copied alongside. Without it, or when
        it holds no tokenizer (a PEFT adapter's folder), the model's own tokenizer
        (`model.tokenizer`), if any, is written.
      labels: class names, written as `id2label` / `label2id`; defaults to the head's
        `labels`, else HF's `LABEL_0`, `LABEL_1`, ...
      extra: more keys for `config.json`.

    The folder is written beside `directory` and renamed into place (`samp_jax.core.atomic`): a
    crash leaves any previous checkpoint there whole. Saving over a model folder replaces the
    whole folder (files this call does not write are not kept); a non-empty `directory` that is
    no model folder (neither `config.json` nor `quantization.json`) is refused, before anything
    is written, rather than replaced.

    Raises:
      ConfigError: the head has no HF equivalent in the model's family (a custom head).
      FileExistsError: `directory` is a file, or a non-empty folder that holds no model.
    """
    directory = Path(directory)
    family = get_family(model.config.model_type)
    state = export_state_dict(model)  # raises for heads HF cannot express, before any write
    if tokenizer_dir is not None and not has_tokenizer(tokenizer_dir) and \
            getattr(model, "tokenizer", None) is not None:
        tokenizer_dir = None  # a folder without one (a PEFT adapter's, read with its base's)
    num_labels = getattr(model.head, "num_labels", None)
    if num_labels is not None:
        names = check_labels(labels if labels is not None else model.labels, num_labels)
        names = names or tuple(f"LABEL_{i}" for i in range(num_labels))
    config = model.config.to_hf_dict() | {"architectures": [family.architecture(model.head_kind)]}
    layout = family.heads.get(model.head_kind)
    if layout is not None and layout.to_hf is not None:
        config |= layout.to_hf(model.head.spec())
    if num_labels is not None:
        config |= {"id2label": {str(i): n for i, n in enumerate(names)},
                   "label2id": {n: i for i, n in enumerate(names)}}
    if getattr(model.head, "problem_type", None) is not None:  # how HF trains and reads it
        config["problem_type"] = model.head.problem_type
    # a CrossEncoder's activation, where sentence-transformers 4 and 5 read it
    config |= hf_config_keys(getattr(model.head, "cross_encoder_activation", None))
    if getattr(model.head, "label_threshold", None) is not None:  # read back by load_pretrained
        config[LABEL_THRESHOLD_KEY] = model.head.label_threshold
    if getattr(model.head, "relevant_class", None) is not None:  # read back by load_pretrained
        config[RELEVANT_CLASS_KEY] = model.head.relevant_class
    config |= extra or {}
    with atomic_folder(directory) as tmp:  # tokenizer and sentence-transformers files too
        with writing_safetensors(directory / SAFETENSORS):  # a full disk: OSError, named
            save_file(state, str(tmp / SAFETENSORS))
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        if isinstance(model.head, SentenceEmbedder):
            write_st_files(tmp, hidden_size=model.config.hidden_size, modes=model.head.pooling,
                           normalize=model.head.normalize, dense=dense_weights(model.head))
        if tokenizer_dir is not None:
            # the prompts the model's own tokenizer reads, with the one it uses; without one,
            # the folder's, for an embedder
            tokenizer = getattr(model, "tokenizer", None)
            source = Path(tokenizer_dir) / PROMPTS_FILE
            prompts = (tokenizer.file_text(PROMPTS_FILE) if tokenizer is not None else
                       source.read_text(encoding="utf-8") if source.is_file()
                       and isinstance(model.head, SentenceEmbedder) else None)
            for name in (*TOKENIZER_FILES, *SENTENCEPIECE_FILES):  # binary models too
                if (Path(tokenizer_dir) / name).is_file() and name != PROMPTS_FILE:
                    shutil.copyfile(Path(tokenizer_dir) / name, tmp / name)
            if prompts is not None:
                (tmp / PROMPTS_FILE).write_text(prompts, encoding="utf-8")
            if tokenizer is not None:
                _state_raised_length(tmp, tokenizer.max_length, model.config.max_sequence_length)
        elif getattr(model, "tokenizer", None) is not None:
            model.tokenizer.save(tmp)
        if isinstance(model.head, SentenceEmbedder):  # beside its prompts, as ST reads it
            write_similarity(tmp, model.head.similarity)
    return directory
