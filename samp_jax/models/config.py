"""Encoder architecture configuration.

`EncoderConfig` describes the shape of a BERT-family encoder and nothing else: run-time
choices such as the compute dtype or the precision map are passed separately, so one config
serves every precision. What differs between families (RoBERTa's positions, DistilBERT's
missing token types, ELECTRA's embedding projection, MPNet's relative position bias,
ModernBERT's rotary positions, local attention, pre-LN layers, gated FFN and missing biases) is a
field here, set from the checkpoint by the family's config mapping (`samp_jax.models.families`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from samp_jax.core import strict_json
from samp_jax.core.input_files import check_regular, read_text
from samp_jax.models.activations import SUPPORTED_ACTIVATIONS
from samp_jax.models.errors import ConfigError
from samp_jax.models.families import UnsupportedFamilyError, get_family

# The spread of the normal (cut at two of it) that new weights are drawn from: BERT's
# initializer_range
INIT_STD = 0.02
# MPNet buckets relative positions into 32 buckets up to distance 128, whatever its config
# says (`MPNetEncoder.compute_position_bias` uses its defaults); the table may have more rows.
RELATIVE_BUCKETS = 32
# `config.json`'s special-token ids besides the padding one: nothing samp-jax computes reads
# them (the tokenizer has its own), but HF's classes do, so they travel through unchanged
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")
RELATIVE_MAX_DISTANCE = 128
# HF's names of a layer's attention in `layer_types` (transformers 5).
FULL_ATTENTION, SLIDING_ATTENTION = "full_attention", "sliding_attention"


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Shape of a BERT-family encoder.

    Attributes:
      model_type: the HF family (`bert`, `roberta`, `xlm-roberta`, `camembert`,
        `data2vec-text`, `ernie`, `distilbert`, `electra`, `mpnet`, `modernbert`, `deberta-v2`);
        picks the key map and class names on import and export.
      vocab_size: Rows of the word-embedding table.
      hidden_size: Model width; must be a multiple of `num_heads`.
      num_layers: Number of encoder layers.
      num_heads: Attention heads per layer.
      intermediate_size: Width of the FFN's inner projection.
      max_position_embeddings: Rows of the position table.
      type_vocab_size: Token-type (segment) embeddings; 0 when the family has none (token
        type ids are then ignored), 1 when there is one type (ids are ignored, row 0 added).
      task_type_vocab_size: rows of ERNIE's task-type table (HF `task_type_vocab_size` when
        `use_task_id` is true); 0: no table. HF's tokenizers send no task-type ids and HF's
        ErnieEmbeddings then uses id 0, so row 0 is added to every token's embedding.
      layer_norm_eps: LayerNorm epsilon.
      hidden_act: HF activation name; one of `SUPPORTED_ACTIVATIONS`.
      pad_token_id: Id of the padding token.
      embedding_size: width of the embedding tables when it differs from `hidden_size`
        (ELECTRA); an `embeddings.project` GEMM then maps it to `hidden_size`. None: same.
      position_padding_idx: None for positions `0 .. seq-1`; an index `p` for RoBERTa-style
        positions: `p + 1, p + 2, ...` for tokens that are not padding, `p` for padding.
      relative_attention_num_buckets: rows of MPNet's relative position bias table; 0 for none.
      rotary_theta: rotary position embeddings (RoPE) with this base in global-attention
        layers instead of a learned position table; None: a position table (ModernBERT).
      local_rotary_theta: the RoPE base in local-attention layers (None: `rotary_theta`).
      local_attention: sliding-window width in tokens of local-attention layers (a query sees
        keys within `local_attention // 2` positions); 0: every layer attends globally.
      global_attn_every_n_layers: layer `i` attends globally when `i % n == 0`, locally
        otherwise (only with `local_attention`).
      layer_types: each layer's attention when no `global_attn_every_n_layers` gives the
        pattern (HF's `layer_types`, as transformers 5 writes it): `'full_attention'` or
        `'sliding_attention'` per layer; None: the `global_attn_every_n_layers` pattern.
      norm_first: pre-LN layers (ModernBERT): LayerNorm before attention (not in layer 0, whose
        input the embedding LayerNorm has just normalised) and before the FFN, residual adds
        after, and a final LayerNorm after the last layer. False: BERT's post-LN.
      gated_ffn: the FFN's `ffn_in` projects to `2 * intermediate_size` and the activation of
        its first half gates (multiplies) its second half (GeGLU with GELU).
      attention_bias, mlp_bias, norm_bias, classifier_bias: whether the attention GEMMs, the
        FFN GEMMs, the LayerNorms and the classification head's dense layer have biases.
      position_biased_input: absolute positions are added in the embeddings (a position
        table); DeBERTa-v3 has none (False).
      disentangled_attention: DeBERTa's disentangled attention (HF `relative_attention`): a
        relative-position embedding table shared by every layer, whose projections give
        content-to-position / position-to-content score terms
        (`samp_jax.models.relative_attention`).
      pos_att_type: the relative terms, a subset of ('c2p', 'p2c'). Each term also divides
        the attention scale (`score_scale_factor`), with or without `disentangled_attention`.
      position_buckets: log-bucketed relative distances (`> 0`), or -1 for exact distances up
        to `max_relative_positions`.
      max_relative_positions: the largest relative distance; -1 means `max_position_embeddings`.
      share_att_key: the position projections reuse the layer's query/key projections (the
        `qkv` site's weights); else each layer has its own `pos_key` / `pos_query` projections.
      norm_rel_ebd: 'layer_norm' for a LayerNorm over the relative embedding table, else 'none'
        (HF's `norm_rel_ebd`).
      token_ids: the checkpoint's own `TOKEN_ID_KEYS` (`(key, id)` pairs, those it states as
        integers), written back unchanged into an exported `config.json`, so that HF does not
        put its class defaults (ModernBERT's 50281/50282) in their place. Nothing the model
        computes reads them.
    """

    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    task_type_vocab_size: int = 0
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    embedding_size: int | None = None
    position_padding_idx: int | None = None
    relative_attention_num_buckets: int = 0
    rotary_theta: float | None = None
    local_rotary_theta: float | None = None
    local_attention: int = 0
    global_attn_every_n_layers: int = 1
    layer_types: tuple[str, ...] | None = None
    norm_first: bool = False
    gated_ffn: bool = False
    attention_bias: bool = True
    mlp_bias: bool = True
    norm_bias: bool = True
    classifier_bias: bool = True
    position_biased_input: bool = True
    disentangled_attention: bool = False
    pos_att_type: tuple[str, ...] = ()
    position_buckets: int = -1
    max_relative_positions: int = -1
    share_att_key: bool = False
    norm_rel_ebd: str = "none"
    token_ids: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if isinstance(self.layer_types, list):  # a list from Python: the frozen, hashable form
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
        object.__setattr__(self, "token_ids", _token_ids(self.token_ids))
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads",
                     "intermediate_size", "max_position_embeddings"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("type_vocab_size", "task_type_vocab_size", "relative_attention_num_buckets",
                     "pad_token_id"):
            _check_int(name, getattr(self, name), minimum=0)
        if self.embedding_size is not None:
            _check_int("embedding_size", self.embedding_size, minimum=1)
            if self.embedding_size == self.hidden_size:
                object.__setattr__(self, "embedding_size", None)  # no projection needed
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(
                f"hidden_act={self.hidden_act!r} is not one of {sorted(SUPPORTED_ACTIVATIONS)}")
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ConfigError(f"layer_norm_eps={self.layer_norm_eps!r} must be a positive number")
        if self.position_padding_idx is not None:
            _check_int("position_padding_idx", self.position_padding_idx, minimum=0)
            if self.position_padding_idx + 1 >= self.max_position_embeddings:
                raise ConfigError(
                    f"position_padding_idx={self.position_padding_idx} leaves no positions in "
                    f"max_position_embeddings={self.max_position_embeddings}")
        if 0 < self.relative_attention_num_buckets < RELATIVE_BUCKETS:
            raise ConfigError(
                f"relative_attention_num_buckets={self.relative_attention_num_buckets}: MPNet "
                f"buckets relative positions into {RELATIVE_BUCKETS}, so the table needs at least "
                f"{RELATIVE_BUCKETS} rows")
        _check_modern_fields(self)
        self._check_disentangled()

    def _check_disentangled(self) -> None:
        """DeBERTa's fields: a tuple of known terms, and booleans that are booleans."""
        if self.norm_rel_ebd not in ("none", "layer_norm"):
            raise ConfigError(f"norm_rel_ebd={self.norm_rel_ebd!r} is not one of ('none', 'layer_norm')")
        for name in ("position_biased_input", "disentangled_attention", "share_att_key"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be true or false")
        object.__setattr__(self, "pos_att_type", tuple(self.pos_att_type))
        unknown = [t for t in self.pos_att_type if t not in ("c2p", "p2c")]
        if unknown or len(set(self.pos_att_type)) != len(self.pos_att_type):
            raise ConfigError(f"pos_att_type={list(self.pos_att_type)} must name distinct terms "
                              "from ('c2p', 'p2c')")
        for name in ("position_buckets", "max_relative_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name}={value!r} must be an integer")

    @property
    def relative_span(self) -> int:
        """DeBERTa's attention span `k`: the relative table has `2 k` rows (`position_buckets`
        when bucketed, else `max_relative_positions`)."""
        if self.position_buckets > 0:
            return self.position_buckets
        return self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings

    @property
    def score_scale_factor(self) -> int:
        """DeBERTa divides the attention scores by `sqrt(head_dim * factor)`, with `factor = 1 +`
        the number of relative terms in `pos_att_type`, whether or not the terms are computed
        (HF `DisentangledSelfAttention` scales by `pos_att_type` alone); 1 for other families."""
        return 1 + len(self.pos_att_type)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def activation(self) -> str:
        """The FFN's epilogue activation (a name of `pallas_kernels.numerics.ACTIVATIONS`)."""
        return SUPPORTED_ACTIVATIONS[self.hidden_act]

    @property
    def site_shapes(self) -> dict[str, tuple[int, int]]:
        """(K, N) of each GEMM site of a layer: the fused `[Q | K | V]` projection, and a gated
        `ffn_in` twice as wide (`[input | gate]`)."""
        h, i = self.hidden_size, self.intermediate_size
        return {"qkv": (h, 3 * h), "attn_out": (h, h),
                "ffn_in": (h, (2 if self.gated_ffn else 1) * i), "ffn_out": (i, h)}

    @property
    def gelu_approximate(self) -> bool:
        """True for the tanh approximation of GELU."""
        return self.activation == "gelu_tanh"

    def is_local_layer(self, index: int) -> bool:
        """Whether layer `index` attends within a sliding window (`local_attention`)."""
        if not self.local_attention:
            return False
        if self.layer_types is not None:
            return self.layer_types[index] == SLIDING_ATTENTION
        return index % self.global_attn_every_n_layers != 0

    @property
    def has_local_layers(self) -> bool:
        """Whether any layer attends within a sliding window."""
        return any(self.is_local_layer(index) for index in range(self.num_layers))

    def layer_rotary_theta(self, index: int) -> float | None:
        """The RoPE base of layer `index` (None without rotary positions)."""
        if self.is_local_layer(index) and self.local_rotary_theta is not None:
            return self.local_rotary_theta
        return self.rotary_theta

    @property
    def embedding_width(self) -> int:
        """Width of the embedding tables (`embedding_size`, else `hidden_size`)."""
        return self.embedding_size or self.hidden_size

    @property
    def max_sequence_length(self) -> int:
        """The longest input by default, in tokens: the position table's rows, less the ones
        RoBERTa-style positions skip (`position_padding_idx + 1`). A model without a position
        table (`position_limit` None) can take longer rows when asked to."""
        skipped = 0 if self.position_padding_idx is None else self.position_padding_idx + 1
        return self.max_position_embeddings - skipped

    @property
    def position_limit(self) -> int | None:
        """The longest input the model can take at all: `max_sequence_length` for a model with
        a table of absolute positions, None (no limit) for one without (rotary positions,
        ModernBERT; relative positions only, DeBERTa-v3), which HF runs at any length."""
        if self.rotary_theta is None and self.position_biased_input:
            return self.max_sequence_length
        return None

    def replace(self, **changes: Any) -> "EncoderConfig":
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------- presets
    @classmethod
    def bert_base(cls) -> "EncoderConfig":
        """BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072."""
        return cls()

    @classmethod
    def minilm_l6(cls) -> "EncoderConfig":
        """all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, FFN 1536."""
        return cls(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536)

    # --------------------------------------------------------------------------- HF import
    @classmethod
    def from_hf_config(cls, source: str | os.PathLike | Mapping[str, Any] | Any) -> "EncoderConfig":
        """Builds a config from a Hugging Face config of any registered family.

        Args:
          source: a checkpoint folder or `config.json` path (read as plain JSON), a dict with
            the HF keys, or a `transformers.PretrainedConfig` (read through `to_dict()`).

        Raises:
          FileNotFoundError: the folder has no `config.json`.
          ConfigError: the file is not a JSON object, the model type or an option is not
            supported, or a required key is missing or has the wrong type.
        """
        hf, where = _hf_config_dict(source)
        try:
            family = get_family(hf.get("model_type"))
        except UnsupportedFamilyError as e:
            raise UnsupportedFamilyError(f"{where}: {e}") from None
        for key, option in family.one_value_options.items():
            value = hf.get(key, option.default)
            if not option.accepts(value):
                raise ConfigError(f"{where}: {key}={value!r} is not supported{option.why}")
        optional = set(family.hf_defaults)
        missing = sorted(key for key in family.config_keys.values()
                         if key not in optional and hf.get(key) is None)
        if missing:
            raise ConfigError(f"{where} ({family.model_type}) lacks required keys {missing}")
        kwargs = {"model_type": family.model_type, "token_ids": tuple(
            (key, hf[key]) for key in TOKEN_ID_KEYS
            if isinstance(hf.get(key), int) and not isinstance(hf[key], bool) and hf[key] >= 0)}
        for ours, theirs in family.config_keys.items():
            value = hf.get(theirs)
            kwargs[ours] = family.hf_defaults[theirs] if value is None else value
        try:
            kwargs |= family.config_derived(hf) | dict(family.config_fixed)
            return cls(**kwargs)
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{where}: {_in_hf_naming(str(e), family.config_keys)}") from None

    def to_hf_dict(self) -> dict[str, Any]:
        """The HF `config.json` keys for this architecture, in its family's naming."""
        family = get_family(self.model_type)
        out = {"model_type": self.model_type}
        for ours, theirs in family.config_keys.items():
            value = getattr(self, ours)
            out[theirs] = self.hidden_size if ours == "embedding_size" and value is None else value
        if self.layer_types is not None:  # no pattern gives them: 4.57 must not run one
            out["layer_types"] = list(self.layer_types)
            out[family.config_keys.get("global_attn_every_n_layers", "global_attn_every_n_layers")] = None
        return out | dict(family.hf_extra) | family.config_export(self) | dict(self.token_ids)


def _token_ids(pairs) -> tuple[tuple[str, int], ...]:
    """`EncoderConfig.token_ids` in its frozen form (pairs given as lists or a dict become
    tuples), checked: keys of `TOKEN_ID_KEYS`, each once, with non-negative int ids."""
    pairs = tuple(tuple(pair) for pair in (pairs.items() if isinstance(pairs, Mapping) else pairs))

    def valid(pair) -> bool:
        return (len(pair) == 2 and pair[0] in TOKEN_ID_KEYS and isinstance(pair[1], int)
                and not isinstance(pair[1], bool) and pair[1] >= 0)
    if not all(valid(pair) for pair in pairs) or len({pair[0] for pair in pairs}) != len(pairs):
        raise ConfigError(f"token_ids={pairs!r} must pair distinct keys of {TOKEN_ID_KEYS} "
                          "with non-negative integer ids")
    return pairs


def _in_hf_naming(message: str, config_keys: Mapping[str, str]) -> str:
    """A field's error (`hidden_act='silu' is not ...`) named by the key the file has
    (`activation='silu' is not ...` for DistilBERT)."""
    field, sep, rest = message.partition("=")
    theirs = config_keys.get(field)
    if not sep or theirs is None or theirs == field:
        return message
    return f"{theirs}={rest}"


def _check_modern_fields(config: EncoderConfig) -> None:
    """Checks the rotary, local-attention, layout and bias fields."""
    for name in ("rotary_theta", "local_rotary_theta"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
            raise ConfigError(f"{name}={value!r} must be a positive number or None")
    if config.local_rotary_theta is not None and config.rotary_theta is None:
        raise ConfigError("local_rotary_theta needs rotary_theta (rotary positions)")
    _check_int("local_attention", config.local_attention, minimum=0)
    _check_int("global_attn_every_n_layers", config.global_attn_every_n_layers, minimum=1)
    if config.layer_types is not None:
        types = config.layer_types
        if (not isinstance(types, tuple) or len(types) != config.num_layers
                or not set(types) <= {FULL_ATTENTION, SLIDING_ATTENTION}):
            raise ConfigError(f"layer_types={types!r} must name {config.num_layers} layers' "
                              f"attention, each {FULL_ATTENTION!r} or {SLIDING_ATTENTION!r}")
    if config.head_dim % 2 and config.rotary_theta is not None:
        raise ConfigError(f"rotary positions need an even head_dim, got {config.head_dim}")
    for name in ("norm_first", "gated_ffn", "attention_bias", "mlp_bias", "norm_bias",
                 "classifier_bias"):
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"{name}={getattr(config, name)!r} must be true or false")


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ConfigError(f"{name}={value!r} must be {kind} integer")


def _hf_config_dict(source: Any) -> tuple[dict[str, Any], str]:
    """The HF config as a dict, and a name for it in error messages."""
    if isinstance(source, Mapping):
        return dict(source), "config"
    if hasattr(source, "to_dict") and callable(source.to_dict):
        return source.to_dict(), f"{type(source).__name__}"
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if not check_regular(path):  # a FIFO or /dev/zero there is named as such
        quantized = (path.parent / "quantization.json").is_file()
        raise FileNotFoundError(f"no HF config at {path}" + (
            " (the folder holds a quantized samp-jax model: samp_jax.load or "
            "QuantizedModel.load reads it)" if quantized else ""))
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data, str(path)


def read_json(file: Path):
    """The JSON value in a config file.

    Raises:
      FileNotFoundError: no file there.
      NotRegularFileError: the name is a FIFO, a device (such as /dev/zero) or a folder.
      ConfigError: naming the file, when it is not UTF-8 JSON, or JSON that Python cannot read
        (nested deeper than its recursion limit, an integer of more than 4300 digits).

    Warns when an object holds a key twice (a hand edit that left the old line): its last
    value is used, as HF's `json.load` uses it, and the warning names the file and the key.
    """
    try:
        value = strict_json.loads(read_text(file))
    except strict_json.BeyondReader as e:
        raise ConfigError(f"{file}: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file} is not valid JSON: {e}") from None
    repeated = strict_json.repeated_key(value)
    if repeated is not None:
        where, key = repeated
        warnings.warn(f"{file} states {key!r} more than once{f' in {where}' if where else ''}: "
                      "its last value is used, as Hugging Face uses it; delete the others",
                      stacklevel=1)  # one place: said once, though a load reads the file thrice
    return value
