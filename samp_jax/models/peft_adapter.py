"""PEFT LoRA adapters: a folder with `adapter_config.json` and `adapter_model.safetensors` (or
`adapter_model.bin`), read over its base model and merged into the base's weights at load, so
the result is an ordinary `EncoderModel` (quantized, searched and served as any other).

The merge works on the checkpoint's own key names (the ones the family's key tables read), so
every Linear PEFT can target is covered without a table of its own: attention Q/K/V and output,
the FFN, the pooler and classifier, DeBERTa's `*_proj` and ModernBERT's fused `Wqkv` / `Wi`.
Per targeted module, as PEFT's `LoraLayer.merge` computes it:

    W  <-  W + scaling * B @ A          (an Embedding's table [num, dim]: + scaling * (B @ A).T)
    scaling = alpha / r                 (use_rslora: alpha / sqrt(r))

with `r` and `alpha` per module from `rank_pattern` / `alpha_pattern` (PEFT's own matching: the
first pattern that ends the module's name). `modules_to_save` weights and the biases that
`bias: all` / `lora_only` saves replace the base's. The head comes from `task_type` and, for a
classifier, its width from the saved head's shape.

Refused, naming the file and the field or key: a peft type other than LORA, DoRA and the other
LoRA variants whose forward is not `W + scaling * B @ A`, several adapters in one folder unless
one is chosen, a base that is no local folder, a key that matches no weight of the base, shapes
that disagree, and non-finite adapter weights.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from samp_jax.core.input_files import check_regular
from samp_jax.models.checkpoint import load_checkpoint, read_state_dict, strip_prefix
from samp_jax.models.config import EncoderConfig, read_json
from samp_jax.models.errors import CheckpointError, ConfigError
from samp_jax.models.families import Family, get_family
from samp_jax.models.head_kinds import NO_HEAD, SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION
from samp_jax.models.hf_labels import LABEL_THRESHOLD_KEY, RELEVANT_CLASS_KEY, label_names
from samp_jax.models.model import EncoderModel
from samp_jax.models.st_folder import MODULES_FILE, read_pooling
from samp_jax.models.tokenizer import has_tokenizer
from samp_jax.models.torch_pickle import read_torch_pickle
from samp_jax.models.weight_files import check_float_weight, read_safetensors

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SAFETENSORS = "adapter_model.safetensors"
ADAPTER_TORCH_PICKLE = "adapter_model.bin"
DEFAULT_ADAPTER = "default"  # PEFT's name for the adapter saved at the folder's root
# the snapshots HF's Trainer saves beside the adapter it ends with (`checkpoint-500/`): earlier
# states of the root's adapter, not other adapters of the folder
TRAINER_CHECKPOINT = re.compile(r"checkpoint-\d+")
HF_CONFIG = "config.json"

# PEFT task type -> the head it trains; None: the base folder's own (a sentence-transformers
# folder embeds, else the encoder alone). Task types of decoders are refused.
TASK_HEADS: dict[str | None, str | None] = {
    "SEQ_CLS": SEQUENCE_CLASSIFICATION.name,
    "TOKEN_CLS": TOKEN_CLASSIFICATION.name,
    "FEATURE_EXTRACTION": None,
    None: None,
}
BIAS_MODES = ("none", "all", "lora_only")

# adapter_config.json fields of LoRA variants whose forward is not `x W^T + scaling x A^T B^T`
# (or that train more than LoRA pairs and saved modules), refused when set (plain LoRA leaves
# each false, null or empty): field -> what the variant is.
_VARIANTS = {
    "use_dora": "DoRA (a learned magnitude per output)",
    "lora_bias": "a bias on lora_B",
    "use_qalora": "QA-LoRA (pooled inputs)",
    "layer_replication": "replicated layers",
    "trainable_token_indices": "trainable token embeddings",
    "target_parameters": "LoRA on bare parameters",
    "alora_invocation_tokens": "activated LoRA (from invocation tokens on)",
}
# init_lora_weights whose adapters PEFT loads over a changed base (PiSSA, OLoRA, CorDA:
# W - scaling * B0 @ A0; LoftQ: a quantized W), not over the base as saved
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq")
_CONFIG_FILES_KEYS = ("id2label", "label2id", "problem_type", LABEL_THRESHOLD_KEY,
                      RELEVANT_CLASS_KEY)

# How PEFT names what it saves, after its `base_model.model.` wrapper: each pattern (fullmatch)
# -> the role of the tensor. An adapter's name may follow the LoRA part (a raw state dict's
# `lora_A.default.weight`); PEFT's own files drop it. Any other key is a saved tensor
# (`modules_to_save`, a bias) under the base model's own name, the LoRA layer's `base_layer.`
# and the wrapper's `modules_to_save.` removed.
_LORA_KEYS = (
    (re.compile(r"(?P<module>.+)\.lora_(?P<part>[AB])(?:\.(?P<adapter>[^.]+))?\.weight"), "linear"),
    (re.compile(r"(?P<module>.+)\.lora_embedding_(?P<part>[AB])(?:\.(?P<adapter>[^.]+))?"), "embedding"),
)
_WRAPPERS = re.compile(r"\.(?:base_layer|modules_to_save(?:\.(?P<adapter>[^.]+))?)(?=\.[^.]+$)")
# the frozen original a `modules_to_save` wrapper keeps beside its trained copy (`bias: all`
# saves its bias too); the forward runs the copy
_FROZEN_ORIGINAL = ".original_module."
_WRAPPER_PREFIX = "base_model.model."


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """What `adapter_config.json` says about the merge (validated by `read_adapter_config`)."""

    file: Path
    r: int
    lora_alpha: float
    use_rslora: bool = False
    rank_pattern: Mapping[str, int] = dataclasses.field(default_factory=dict)
    alpha_pattern: Mapping[str, float] = dataclasses.field(default_factory=dict)
    fan_in_fan_out: bool = False
    bias: str = "none"
    task_type: str | None = None
    base_model_name_or_path: str | None = None

    def rank_alpha(self, module: str) -> tuple[int, float]:
        """`(r, alpha)` of `module` (its name in the PEFT-wrapped model, such as
        `bert.encoder.layer.0.attention.self.query`), as PEFT's `get_pattern_key` picks them."""
        return (_pattern_value(self.rank_pattern, module, self.r),
                _pattern_value(self.alpha_pattern, module, self.lora_alpha))

    def scaling(self, module: str) -> float:
        """`alpha / r`, or `alpha / sqrt(r)` with `use_rslora`, for `module`."""
        r, alpha = self.rank_alpha(module)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def _pattern_value(patterns: Mapping[str, Any], module: str, default):
    for pattern in patterns:  # PEFT's get_pattern_key: the first pattern that ends the name
        if re.match(rf"(.*\.)?({pattern})$", module):
            return patterns[pattern]
    return default


def lora_delta(a: np.ndarray, b: np.ndarray, scaling: float, *, fan_in_fan_out: bool = False) -> np.ndarray:
    """`scaling * B @ A` in float64, the update LoRA adds to a weight stored `[out, in]` (a
    torch Linear's); transposed with `fan_in_fan_out`, for a weight stored `[in, out]` (an
    Embedding's `[num, dim]` table, GPT-2's Conv1D).

    Args:
      a: `lora_A`, `[r, in]`.
      b: `lora_B`, `[out, r]`.
    """
    delta = scaling * (np.asarray(b, np.float64) @ np.asarray(a, np.float64))
    return delta.T if fan_in_fan_out else delta


def merge_lora(weight: np.ndarray, a: np.ndarray, b: np.ndarray, scaling: float, *,
               fan_in_fan_out: bool = False) -> np.ndarray:
    """`weight + lora_delta(...)`, summed in float64 and returned as float32."""
    return (np.asarray(weight, np.float64) + lora_delta(a, b, scaling, fan_in_fan_out=fan_in_fan_out)
            ).astype(np.float32)


# ------------------------------------------------------------------------------ the folder
def _check_type(file: Path, field: str, value, types, expected: str):
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ConfigError(f"{file}: {field}={value!r:.80} is not {expected}")
    return value


def read_adapter_config(file: Path) -> LoraSettings:
    """The LoRA settings of an `adapter_config.json`.

    Raises:
      ConfigError: naming the file and the field: not a LoRA adapter (`peft_type`), a LoRA
        variant samp-jax does not merge (`use_dora`, ...), a task type of a decoder, a bias
        mode PEFT does not have, or a field of the wrong type.
    """
    raw = read_json(file)
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} is not a JSON object")
    peft_type = raw.get("peft_type")
    if peft_type != "LORA":
        raise ConfigError(f"{file}: peft_type={peft_type!r} is not supported; samp-jax merges "
                          "LoRA adapters ('LORA') only")
    for field, variant in _VARIANTS.items():
        value = raw.get(field)
        if value:
            raise ConfigError(f"{file}: {field}={value!r:.80} ({variant}) is not supported; "
                              "samp-jax merges plain LoRA (W + scaling * B @ A)")
    init = raw.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_CHANGING_INITS):
        raise ConfigError(
            f"{file}: init_lora_weights={init!r} changes the base weights as well as starting "
            "the LoRA pair (PEFT loads it over a base with its initial B @ A taken out), so "
            "merging it over the base would be wrong; save it as plain LoRA with PEFT's "
            "path_initial_model_for_weight_conversion (it then reads init_lora_weights=true)")
    task_type = raw.get("task_type")
    if task_type not in TASK_HEADS:
        raise ConfigError(f"{file}: task_type={task_type!r} is not supported; samp-jax reads "
                          f"{[t for t in TASK_HEADS if t]} adapters (or none stated)")
    bias = raw.get("bias", "none")
    if bias not in BIAS_MODES:
        raise ConfigError(f"{file}: bias={bias!r} is not one of {BIAS_MODES}")
    r = _check_type(file, "r", raw.get("r", 8), int, "a positive integer")
    alpha = _check_type(file, "lora_alpha", raw.get("lora_alpha", 8), (int, float), "a number")
    patterns = {}
    for field, kind, expected in (("rank_pattern", int, "a positive integer"),
                                  ("alpha_pattern", (int, float), "a number")):
        value = raw.get(field) or {}
        _check_type(file, field, value, dict, "an object of module patterns")
        for pattern, item in value.items():
            _check_type(file, f"{field}[{pattern!r}]", item, kind, expected)
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"{file}: {field} key {pattern!r} is not a regular expression "
                                  f"({e})") from None
        patterns[field] = value
    for field, value in (("r", r), *((f"rank_pattern[{k!r}]", v) for k, v in patterns["rank_pattern"].items())):
        if value <= 0:
            raise ConfigError(f"{file}: {field}={value} is not a positive integer")
    base = raw.get("base_model_name_or_path")
    if base is not None:
        _check_type(file, "base_model_name_or_path", base, str, "a folder or a model name")
    return LoraSettings(
        file=file, r=r, lora_alpha=alpha,
        use_rslora=bool(_check_type(file, "use_rslora", raw.get("use_rslora", False), bool, "true or false")),
        rank_pattern=patterns["rank_pattern"], alpha_pattern=patterns["alpha_pattern"],
        fan_in_fan_out=bool(_check_type(file, "fan_in_fan_out", raw.get("fan_in_fan_out", False), bool,
                                        "true or false")),
        bias=bias, task_type=task_type,
        base_model_name_or_path=base)


def adapter_names(folder: Path) -> list[str]:
    """The adapters PEFT saved in `folder`: `default` at its root, each other in a subfolder
    of its name."""
    names = [DEFAULT_ADAPTER] if check_regular(folder / ADAPTER_CONFIG) else []
    if folder.is_dir():
        names += sorted(sub.name for sub in folder.iterdir()
                        if sub.is_dir() and check_regular(sub / ADAPTER_CONFIG))
    return names


def is_adapter_folder(folder: Path) -> bool:
    """Whether `folder` is a PEFT adapter folder: `adapter_config.json` at its root, or, in a
    folder that holds no model of its own (no `config.json`), in a subfolder."""
    return check_regular(folder / ADAPTER_CONFIG) or (
        not check_regular(folder / HF_CONFIG) and bool(adapter_names(folder)))


@dataclasses.dataclass(frozen=True)
class Adapter:
    """A PEFT adapter found on disk (`find_adapter`), before any weight is read.

    Attributes:
      folder: the adapter's own folder (its `adapter_config.json`).
      settings: its LoRA settings.
      base: the base model's folder (`config.json` and weights).
      files: where its sentence-transformers files are read: the adapter folder when it has
        `modules.json` (sentence-transformers saves an adapter so), else the base.
      tokenizer: where its tokenizer is read: the adapter folder when it has one, else the base.
    """

    folder: Path
    settings: LoraSettings
    base: Path
    files: Path
    tokenizer: Path


def find_adapter(path: str | Path, *, adapter: str | None = None,
                 base_model: str | Path | None = None) -> Adapter:
    """The adapter in `path` and its base model.

    Args:
      path: a PEFT adapter folder (`adapter_config.json`), or a folder of several adapters as
        `PeftModel.save_pretrained` writes them (`default` at its root, each other in a
        subfolder of its name). The Trainer's `checkpoint-N` subfolders beside a root adapter
        are its earlier states, read only when named.
      adapter: which of several to read (`default`: the root's).
      base_model: the base model's folder, in place of `base_model_name_or_path`.

    Raises:
      FileNotFoundError: no adapter there, or no such `adapter`.
      ConfigError: several adapters and none chosen; a base that is no local folder; and
        `read_adapter_config`'s refusals.
    """
    path = Path(path)
    names = adapter_names(path)
    if adapter is None and DEFAULT_ADAPTER in names:
        names = [name for name in names if not TRAINER_CHECKPOINT.fullmatch(name)]
    if adapter is not None:
        if adapter not in names:
            raise FileNotFoundError(f"{path} holds no PEFT adapter {adapter!r}; it holds {names}")
    elif len(names) > 1:
        raise ConfigError(f"{path} holds {len(names)} PEFT adapters {names}: choose one with "
                          f"adapter=NAME (CLI: --adapter NAME; {DEFAULT_ADAPTER!r} is the one "
                          "at the folder's root)")
    elif not names:
        raise FileNotFoundError(f"{path} has no {ADAPTER_CONFIG}")
    name = adapter or names[0]
    folder = path if name == DEFAULT_ADAPTER else path / name
    settings = read_adapter_config(folder / ADAPTER_CONFIG)
    base = _base_folder(folder, settings, base_model)
    files = folder if check_regular(folder / MODULES_FILE) else base
    return Adapter(folder, settings, base, files, folder if has_tokenizer(folder) else base)


def _base_folder(folder: Path, settings: LoraSettings, base_model) -> Path:
    file = folder / ADAPTER_CONFIG
    if base_model is not None:
        base = Path(base_model)
        if not check_regular(base / HF_CONFIG):
            raise FileNotFoundError(f"base_model={str(base)!r} (for the adapter {file}) is not a "
                                    f"model folder: it has no {HF_CONFIG}")
        return base
    name = settings.base_model_name_or_path
    if name:
        given = Path(name).expanduser()
        # as transformers reads it (from the working directory), then beside the adapter
        places = [given] if given.is_absolute() else [given, folder / given]
        found = [place for place in places if check_regular(place / HF_CONFIG)]
        if len(found) == 2 and found[0].resolve() != found[1].resolve():
            raise ConfigError(
                f"{file}: base_model_name_or_path={name!r} names two model folders, "
                f"{found[0].absolute()} (from the working directory) and {found[1]} (relative to the "
                "adapter's folder): pass the base model's folder as base_model=DIR (CLI: --base-model DIR)")
        if found:
            return found[0]
    raise ConfigError(
        f"{file}: base_model_name_or_path={name!r} is not a local model folder (absolute, "
        f"relative to the working directory {Path.cwd()}, or to {folder}); samp-jax reads no "
        "model hub: pass the base model's folder as base_model=DIR (CLI: --base-model DIR)")


def read_adapter_weights(folder: Path, *, allow_torch_pickle: bool = True) -> tuple[dict[str, np.ndarray], Path]:
    """The adapter's tensors by name, each checked to be a finite float tensor, and its file.

    Raises:
      FileNotFoundError: no `adapter_model.safetensors` (nor `adapter_model.bin`).
      CheckpointError: a damaged file, or a tensor that is not float or not finite.
    """
    if check_regular(folder / ADAPTER_SAFETENSORS):
        file = folder / ADAPTER_SAFETENSORS
        state = read_safetensors([file])
    elif check_regular(folder / ADAPTER_TORCH_PICKLE) and allow_torch_pickle:
        file = folder / ADAPTER_TORCH_PICKLE
        state = read_torch_pickle(file)
    else:
        refused = " (allow_torch_pickle=False)" if check_regular(folder / ADAPTER_TORCH_PICKLE) else ""
        raise FileNotFoundError(f"{folder} has no adapter weights: looked for "
                                f"{ADAPTER_SAFETENSORS}, {ADAPTER_TORCH_PICKLE}{refused}")
    for key, value in state.items():
        check_float_weight(file, key, value)
    return state, file


# ------------------------------------------------------------------------------- the merge
@dataclasses.dataclass
class _Lora:
    kind: str  # "linear" or "embedding"
    module: str  # its name in the PEFT-wrapped model (what rank_pattern matches)
    parts: dict[str, tuple[str, np.ndarray]] = dataclasses.field(default_factory=dict)


def _split_keys(state: Mapping[str, np.ndarray], file: Path) -> tuple[dict, dict]:
    """`(LoRA pairs by module, saved tensors by their base name)` of an adapter's `state`."""
    loras: dict[tuple[str, str], _Lora] = {}
    saved: dict[str, tuple[str, np.ndarray]] = {}
    adapters = set()
    for key, value in state.items():
        name = key.removeprefix(_WRAPPER_PREFIX)
        for pattern, kind in _LORA_KEYS:
            match = pattern.fullmatch(name)
            if match:
                adapters.add(match["adapter"])
                lora = loras.setdefault((match["module"], kind), _Lora(kind, match["module"]))
                lora.parts[match["part"]] = (key, value)
                break
        else:
            if _FROZEN_ORIGINAL in name:
                continue
            match = _WRAPPERS.search(name)
            if match:
                adapters.add(match["adapter"])
            name = _WRAPPERS.sub("", name)
            if name in saved and not np.array_equal(saved[name][1], value):  # `bias: all` saves
                # a saved module's bias under both names, the same tensor
                raise CheckpointError(file, problem=f"holds {saved[name][0]} and {key}, two "
                                      f"different values for {name}")
            saved[name] = (key, value)
    named = sorted(a for a in adapters if a is not None)
    if len(named) > 1:
        raise CheckpointError(file, problem=f"holds the weights of {len(named)} adapters {named}; "
                              "save each to its own folder (PeftModel.save_pretrained does)")
    for lora in loras.values():
        if set(lora.parts) != {"A", "B"}:
            found = next(iter(lora.parts.values()))[0]
            raise CheckpointError(file, problem=f"holds {found} without its lora_"
                                  f"{'B' if 'A' in lora.parts else 'A'} partner")
    return loras, saved


def merge_adapter(base_state: Mapping[str, np.ndarray], adapter_state: Mapping[str, np.ndarray],
                  settings: LoraSettings, family: Family, *, adapter_file: Path, base_file,
                  head_keys: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """The base's weights with the adapter's merged in, in the family's key naming (no
    base-model prefix).

    Args:
      base_state, adapter_state: the two checkpoints' tensors, as read.
      head_keys: keys the model's head reads that the base may lack (a new classifier, saved
        with `modules_to_save`).

    Raises:
      CheckpointError: naming `adapter_file` and the key: a LoRA pair or saved tensor that
        matches no weight of the base (nor of the head), a rank that is not the one
        `r` / `rank_pattern` state, or shapes that disagree with the base weight's.
    """
    merged = dict(strip_prefix(dict(base_state), family))
    loras, saved = _split_keys(adapter_state, adapter_file)
    prefix = family.prefix + "."
    for name, (key, value) in saved.items():
        target = name.removeprefix(prefix)
        if target not in merged and target not in head_keys:
            raise CheckpointError(adapter_file, problem=f"tensor {key} matches no weight of the "
                                  f"base model {base_file} ({target}) nor of the model's head")
        # a head saved whole may have another width than the base's (a new classifier)
        want = merged[target].shape if target in merged and target not in head_keys else None
        if want is not None and tuple(value.shape) != tuple(want):
            raise CheckpointError(adapter_file, problem=f"tensor {key} has shape "
                                  f"{tuple(value.shape)}, expected {tuple(want)} ({target} in {base_file})")
        merged[target] = value
    if settings.fan_in_fan_out and any(lora.kind == "linear" for lora in loras.values()):
        warnings.warn(f"{settings.file}: fan_in_fan_out=true is for weights stored [in, out] "
                      f"(GPT-2's Conv1D); the {family.model_type} Linear layers store [out, in], "
                      "so it is read as false, as PEFT reads it for a Linear", stacklevel=2)
    for lora in loras.values():
        target = lora.module.removeprefix(prefix) + ".weight"
        (a_key, a), (b_key, b) = lora.parts["A"], lora.parts["B"]
        if target not in merged:
            raise CheckpointError(adapter_file, problem=f"tensor {a_key} matches no weight of the "
                                  f"base model {base_file} ({target})")
        weight = merged[target]
        r, _ = settings.rank_alpha(lora.module)
        embedding = lora.kind == "embedding"
        # [out, in] for a Linear, [num, dim] for an Embedding (lora_embedding_A is [r, num])
        rows, cols = (weight.shape[::-1] if embedding else weight.shape) if weight.ndim == 2 else (None, None)
        expected = {a_key: (r, cols), b_key: (rows, r)}
        for key, value in ((a_key, a), (b_key, b)):
            if tuple(value.shape) != expected[key]:
                raise CheckpointError(adapter_file, problem=(
                    f"tensor {key} has shape {tuple(value.shape)}, expected {expected[key]} "
                    f"(r={r} by {settings.file.name}, {target} {tuple(weight.shape)} in {base_file})"))
        merged[target] = merge_lora(weight, a, b, settings.scaling(lora.module), fan_in_fan_out=embedding)
    return merged


# ------------------------------------------------------------------------------ the model
def _head(adapter: Adapter, family: Family, hf: Mapping[str, Any], head) -> str:
    if head is not None:
        return getattr(head, "name", head)
    kind = TASK_HEADS[adapter.settings.task_type]
    if kind is not None:
        return kind
    if adapter.settings.task_type is None:  # unstated: the head the base's config names
        named = family.head_kind_of(hf.get("architectures"))
        if named is not None:
            return named
    return SENTENCE_EMBEDDING.name if read_pooling(adapter.files) is not None else NO_HEAD.name


def _classifier_key(family: Family, config: EncoderConfig, head: str) -> str | None:
    """The checkpoint key of the head's output Linear (its rows are the classes)."""
    layout = family.heads.get(head)
    for rule in layout.key_rules(config) if layout is not None else ():
        if rule.ours == "head.classifier.kernel":
            return rule.theirs[0]
    return None


def _head_config(adapter: Adapter, base_hf: Mapping[str, Any], num_labels: int | None) -> dict:
    """The head keys (`id2label`, `problem_type`, ...) that replace the base's: those of a
    `config.json` in the adapter's folder (checked against the base's model type and the
    saved head's width), else HF's `LABEL_<i>` names when the base's do not fit the head."""
    file = adapter.folder / HF_CONFIG
    own: dict = {}
    if check_regular(file):
        own = read_json(file)
        if not isinstance(own, dict):
            raise ConfigError(f"{file} is not a JSON object")
        stated, base_type = own.get("model_type"), base_hf.get("model_type")
        if stated is not None and stated != base_type:
            raise ConfigError(f"{file}: model_type={stated!r}, but the base model "
                              f"{adapter.base / HF_CONFIG} is {base_type!r}")
    labels = label_names(own, path=file) if "id2label" in own else None
    if labels is not None and num_labels is not None and len(labels) != num_labels:
        raise ConfigError(f"{file}: id2label names {len(labels)} labels, but the adapter's "
                          f"head has {num_labels} outputs")
    out = {key: own[key] for key in _CONFIG_FILES_KEYS if key in own}
    base_labels = label_names(dict(base_hf), path=adapter.base / HF_CONFIG)
    if labels is None and num_labels is not None and len(base_labels or ()) != num_labels:
        names = [f"LABEL_{i}" for i in range(num_labels)]  # as HF names a new head's classes
        out |= {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    return out


def load_adapter(adapter: Adapter, *, head=None, num_labels: int | None = None,
                 allow_torch_pickle: bool = True, **options) -> EncoderModel:
    """The base model with the adapter merged in (`find_adapter` gives `adapter`).

    The head is `head` when given, else the adapter's `task_type`'s (`TASK_HEADS`); a
    classifier's width is the saved head's (`modules_to_save`), else the base's. Class names
    come from a `config.json` in the adapter's folder, else from the base's when their number
    fits, else `LABEL_<i>`. `options` are `load_pretrained`'s (`dtype`, `pooling`, `strict`, ...).

    Raises:
      as `read_adapter_weights`, `merge_adapter` and `load_pretrained`.
    """
    config = EncoderConfig.from_hf_config(adapter.base)
    family = get_family(config.model_type)
    base_hf = read_json(adapter.base / HF_CONFIG)
    head = _head(adapter, family, base_hf, head)
    layout = family.heads.get(head)
    head_keys = frozenset(key for rule in (layout.key_rules(config) if layout else ())
                          for key in rule.theirs)
    adapter_state, adapter_file = read_adapter_weights(adapter.folder, allow_torch_pickle=allow_torch_pickle)
    base_state, base_name = read_state_dict(adapter.base, allow_torch_pickle=allow_torch_pickle)
    base_file = adapter.base / base_name
    merged = merge_adapter(base_state, adapter_state, adapter.settings, family,
                           adapter_file=adapter_file, base_file=base_file, head_keys=head_keys)
    classifier = _classifier_key(family, config, head)
    if num_labels is None and classifier in merged and merged[classifier].ndim == 2:
        num_labels = merged[classifier].shape[0]
    hf_overrides = _head_config(adapter, base_hf, num_labels)
    source = f"{adapter_file} merged into {base_file}"
    return load_checkpoint(adapter.base, lambda: (merged, source), hf_overrides=hf_overrides,
                           files=adapter.files, head=head, num_labels=num_labels, **options)


__all__ = ["ADAPTER_CONFIG", "Adapter", "LoraSettings", "TASK_HEADS", "adapter_names",
           "find_adapter", "is_adapter_folder", "load_adapter", "lora_delta", "merge_adapter",
           "merge_lora", "read_adapter_config", "read_adapter_weights"]
