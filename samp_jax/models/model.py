"""The full model: embeddings → encoder → an optional, replaceable target head
(`samp_jax.models.heads`), and the one definition of valid model inputs (`check_ids`).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import checkify

from samp_jax.core.precision import precision_of_dtype
from samp_jax.models.config import EncoderConfig
from samp_jax.models.head_kinds import NO_HEAD, HeadKind, Readout
from samp_jax.models.heads import declared_kind, kind_name
from samp_jax.models.layers import AttentionImpl, Embeddings, Encoder
from samp_jax.models.tokenizer import Tokenizer


class EncoderModel(nnx.Module):
    """Embeddings → encoder → head. With `head=None` it returns the last hidden state.

    Args:
      config: the architecture.
      head: a head module (`SequenceClassifier`, `TokenClassifier`, `SentenceEmbedder`, or any
        module called as `head(hidden, attention_mask)`), or None.
      dtype: compute dtype of embeddings and encoder (float32, float16 or bfloat16).
      param_dtype: storage dtype of the parameters.
      attention_impl: 'xla', 'cudnn' or None (cuDNN flash attention on GPU for 16-bit dtypes).
      tokenizer: the model's tokenizer, or None (`samp_jax.load` attaches the folder's).
      rngs: initialisation randomness.

    Attributes:
      tokenizer: a `Tokenizer` or None. A static attribute: it lives in the graphdef (hashed and
        compared by identity), never in the state, so `nnx.split`/`merge`/`clone`, `quantize`
        and jit keep the same object, and weight files never hold it (`save_pretrained` and
        `QuantizedModel.save` write it as tokenizer files).
    """

    def __init__(self, config: EncoderConfig, head: nnx.Module | None = None, *,
                 dtype=jnp.float32, param_dtype=jnp.float32,
                 attention_impl: AttentionImpl = None, tokenizer: Tokenizer | None = None,
                 rngs: nnx.Rngs):
        precision_of_dtype(dtype)  # raises unless float32, float16 or bfloat16
        self.config = config
        self.embeddings = Embeddings(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.encoder = Encoder(config, dtype=dtype, param_dtype=param_dtype,
                               attention_impl=attention_impl, rngs=rngs)
        self.head = head
        self.dtype = jnp.dtype(dtype)
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a samp_jax.Tokenizer, got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer

    @property
    def head_kind(self) -> str:
        """The head's kind name ('none' without a head)."""
        return NO_HEAD.name if self.head is None else kind_name(self.head)

    @property
    def head_declaration(self) -> HeadKind | None:
        """The head's `HeadKind` (`declared_kind`), or None when it declares none."""
        return declared_kind(self.head)

    @property
    def readout(self) -> Readout | None:
        """How the head's logits are read (`Readout`: one class, a set of labels or a score
        per row), the one answer the CLI, `check_head_fits`, the search, the engine and
        `predict` use; None for a head that gives no logits.

        A head that says (`head.readout`, e.g. `SequenceClassifier` from its problem type) is
        read so; any other logits head gives a score when it is a sequence head of one output,
        else classes."""
        kind = self.head_declaration
        if kind is None or not kind.classifies:
            return None
        declared = getattr(self.head, "readout", None)
        if isinstance(declared, Readout):
            return declared
        width = getattr(self.head, "output_width", None)
        one = not kind.per_token and callable(width) and width(self.config) == 1
        return Readout.SCORE if one else Readout.CLASSES

    def output_shape(self, batch: int, seq: int) -> tuple[int, ...]:
        """The shape the model returns for `[batch, seq]` inputs, from the head's declaration
        and its `output_width(config)`.

        Raises:
          ValueError: a head that declares no `HeadKind` or no `output_width`.
        """
        kind = self.head_declaration
        if self.head is None:
            width = self.config.hidden_size
        elif kind is None or not callable(getattr(self.head, "output_width", None)):
            raise ValueError(f"head {type(self.head).__name__} declares no output shape: give its "
                             "class a `kind` (a HeadKind) and an `output_width(config)` method")
        else:
            width = self.head.output_width(self.config)
        return kind.output_shape(batch, seq, width)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The head's class names (`head.labels`), or None."""
        return getattr(self.head, "labels", None)

    @property
    def cross_encoder_activation(self) -> str | None:
        """The activation a sentence-transformers CrossEncoder's `predict` applies to the
        head's logits (`samp_jax.models.cross_encoder`), or None: not a CrossEncoder."""
        return getattr(self.head, "cross_encoder_activation", None)

    @property
    def label_threshold(self) -> float | None:
        """A multi-label head's own decision threshold (the sigmoid its label sets are read at
        when none is given; `SequenceClassifier`'s `label_threshold`), or None: the default,
        `LABEL_THRESHOLD`, or not multi-label."""
        return getattr(self.head, "label_threshold", None)

    @property
    def relevant_class(self) -> int | None:
        """The class of a two-class head a ranking reads as relevant, where the model says
        (`SequenceClassifier`'s `relevant_class`, saved by a fine-tune given one), or None:
        not said (class 1)."""
        return getattr(self.head, "relevant_class", None)

    def encode(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
               token_type_ids: jax.Array | None = None) -> jax.Array:
        """Returns the last hidden state `[batch, seq, hidden]`.

        Inputs are checked as `__call__` checks them."""
        return self._hidden(*check_inputs(input_ids, attention_mask, token_type_ids,
                                          config=self.config))

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                 token_type_ids: jax.Array | None = None) -> jax.Array:
        """Returns the head's output, or the last hidden state when there is no head.

        Shapes are always checked. Concrete inputs (a direct call, outside jit) are also
        checked on the host by `check_ids`: ids outside the vocabulary or token types outside
        the type table (which XLA's gather would clamp silently to the last row), a mask that is
        not 0/1, and a row with no real token are refused. Under jit the ids are tracers and
        are not checked: use `checked(model)` (checkify) there, or check with `check_ids`
        before the call.

        Raises:
          ValueError: bad shapes, or (concrete inputs) ids the model cannot embed.
        """
        input_ids, attention_mask, token_type_ids = check_inputs(
            input_ids, attention_mask, token_type_ids, config=self.config)
        hidden = self._hidden(input_ids, attention_mask, token_type_ids)
        return hidden if self.head is None else self.head(hidden, attention_mask)

    def layer_inputs(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                     token_type_ids: jax.Array | None = None) -> jax.Array:
        """Each encoder layer's input hidden states `[num_layers, batch, seq, hidden]` (the
        embeddings' output first), for `from_layer` (`Encoder.layer_inputs`: without INT8
        hand-offs). Inputs are checked as `__call__` checks them."""
        input_ids, attention_mask, token_type_ids = check_inputs(
            input_ids, attention_mask, token_type_ids, config=self.config)
        return self.encoder.layer_inputs(self.embeddings(input_ids, token_type_ids), attention_mask)

    def from_layer(self, hidden: jax.Array, attention_mask: jax.Array, start) -> jax.Array:
        """The model's output (head included) with `hidden` `[batch, seq, hidden]` as layer
        `start`'s input: no embeddings, no layer before `start` (`Encoder.from_layer`; `start`
        may be traced). With `hidden = layer_inputs(...)[start]` it runs the operations
        `__call__` runs from that layer on, for a model whose sites take float input (no INT8
        hand-offs): the search relies on the outputs being equal bit for bit
        (`calibrate.search.candidates`; tests/calibrate/test_resume.py checks every family)."""
        x = self.encoder.from_layer(hidden, attention_mask, start)
        return x if self.head is None else self.head(x, attention_mask)

    def _hidden(self, input_ids, attention_mask, token_type_ids):
        layers = self.encoder.layers
        x, x_q = self.embeddings.with_quantized(input_ids, token_type_ids, layers[0].qkv)
        return self.encoder(x, attention_mask, x_q=x_q)


def check_inputs(input_ids, attention_mask=None, token_type_ids=None, *,
                 config: EncoderConfig | None = None):
    """Checks shapes (static, so it also runs under jit) and fills in default mask and types.

    With `config`, concrete inputs (not tracers) are also checked against it by `check_ids`
    (the model's direct call passes its config).
    """
    input_ids = jnp.asarray(input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {input_ids.shape}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"empty batch: input_ids has shape {input_ids.shape}")
    if not jnp.issubdtype(input_ids.dtype, jnp.integer):
        raise ValueError(f"input_ids must be integers, got {input_ids.dtype}")
    if attention_mask is None:
        attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    for name, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if jnp.shape(value) != input_ids.shape:
            raise ValueError(
                f"{name} has shape {jnp.shape(value)}, expected {input_ids.shape} like input_ids")
    attention_mask, token_type_ids = jnp.asarray(attention_mask), jnp.asarray(token_type_ids)
    # after the conversion: inside a trace (`jax.eval_shape`, with jit off too) it gives
    # tracers even of concrete arrays
    concrete = all(is_concrete(v) for v in (input_ids, attention_mask, token_type_ids))
    if config is not None and concrete:
        check_ids(config, input_ids, attention_mask, token_type_ids,
                  allow_padding_rows=_PADDED_BATCH.get())
    return input_ids, attention_mask, token_type_ids


# True inside `padded_batch()`: the inputs are a batch the library cut and filled with
# all-padding rows (`serving.batching.bucket_batches`), whose real rows were checked where they
# were cut.
_PADDED_BATCH = contextvars.ContextVar("samp_jax_padded_batch", default=False)


@contextlib.contextmanager
def padded_batch() -> Iterator[None]:
    """Within it, the model's host check (`check_inputs` of concrete inputs) lets rows with no
    real token through: the all-padding rows that fill a batch to its bucket size.

    `serving.forward.merged_call`, the one wrapper of the library's compiled forwards (evaluation,
    calibration, the search, the engine), runs the model inside it. Under jit the inputs are
    tracers and nothing is checked on the host; with jit off (`JAX_DISABLE_JIT`,
    `jax.disable_jit()`) or in the eager rerun of `JAX_DEBUG_NANS` they are concrete, and the
    padding rows the batcher added must not read as a user's empty row. A user's rows are
    checked with `check_ids` where the batch is cut (`evaluate`, `calibrate`, the engine), and a
    direct model call, outside it, still refuses an empty row. Ids and mask values are checked
    inside it too.
    """
    token = _PADDED_BATCH.set(True)
    try:
        yield
    finally:
        _PADDED_BATCH.reset(token)


# ------------------------------------------------------------------------ id checks
# XLA's gather clamps an out-of-range index to the last row instead of failing, so an id
# outside the vocabulary (10**6, -1, a larger tokenizer's ids) or a token type outside the type
# table would silently embed the wrong row. `_id_conditions` is the one definition of valid
# model inputs; `check_ids` evaluates it on the host (numpy) and raises, `id_checks` evaluates
# it on traced arrays as `checkify` checks.

def _id_conditions(config: EncoderConfig, input_ids, attention_mask, token_type_ids, *, xp,
                   allow_padding_rows: bool) -> list[tuple[str, Any, Any]]:
    """`(message template, values, bad [batch, seq] bool)` per condition, with `xp` numpy or
    jax.numpy. Templates take `row`, `position` and `value` (the first bad position).

    - `attention_mask` holds 0 (padding) and 1 (a real token) only;
    - every row has a real token, unless `allow_padding_rows` (batches filled with
      all-padding rows, as calibration and evaluation batches are);
    - at real positions, `input_ids` lie in `[0, vocab_size)` and, when the model has more than
      one token type, `token_type_ids` in `[0, type_vocab_size)` (with 0 or 1 types the model
      ignores them). Padded positions are never read into a real output and are not checked.
    """
    mask = attention_mask.astype(xp.int32) if attention_mask.dtype == bool else attention_mask
    real = mask == 1
    conditions = [("attention_mask row {row} position {position} is {value}, expected 0 "
                   "(padding) or 1 (a real token)", mask, (mask != 0) & (mask != 1))]
    if not allow_padding_rows:
        empty = ~xp.any(real, axis=1, keepdims=True) & (xp.arange(mask.shape[1]) == 0)[None]
        conditions.append(("attention_mask row {row} has no real token (all padding), expected "
                           "at least one 1 per row: the model's output for such a row is "
                           "meaningless (drop the row)", mask, empty))
    ranges = [("input_ids", input_ids, config.vocab_size, "vocab_size")]
    if config.type_vocab_size > 1:  # with 0 or 1 types the model ignores the ids
        ranges.append(("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size"))
    for name, values, size, field in ranges:
        conditions.append((
            f"{name} row {{row}} position {{position}} is {{value}}, outside the model's range "
            f"[0, {size}) ({field}={size}; for text input: does the tokenizer match the model?)",
            values, real & ((values < 0) | (values >= size))))
    return conditions


def check_ids(config: EncoderConfig, input_ids, attention_mask=None, token_type_ids=None, *,
              allow_padding_rows: bool = False, source: str | None = None) -> None:
    """Checks concrete model inputs on the host against the model's `config`.

    The one id check: the model's direct call, `samp_jax.compile`'s engine, `calibrate` and
    `evaluate` all use it (see `_id_conditions` for what is checked). Under jit use `id_checks`
    or `checked(model)` instead.

    Args:
      config: the model's `EncoderConfig` (`vocab_size`, `type_vocab_size`).
      input_ids, attention_mask, token_type_ids: `[batch, seq]` integer arrays (numpy or
        concrete jax); a missing mask means all real, missing types mean all 0.
      allow_padding_rows: accept rows with no real token (batch padding).
      source: prefixed to the message, e.g. 'calibration batch 3'.

    Raises:
      ValueError: naming the tensor, the first bad row and position, the value found and the
        range expected.
    """
    input_ids = np.asarray(input_ids)
    attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
    token_type_ids = np.zeros_like(input_ids) if token_type_ids is None else np.asarray(token_type_ids)
    for template, values, bad in _id_conditions(config, input_ids, attention_mask, token_type_ids,
                                                xp=np, allow_padding_rows=allow_padding_rows):
        if bad.any():
            row, position = (int(i) for i in np.argwhere(bad)[0])
            message = template.format(row=row, position=position, value=values[row, position].item())
            count = int(bad.sum())
            if count > 1 and "position" in template:
                message += f" ({count} such positions)"
            raise ValueError(message if source is None else f"{source}: {message}")


def id_checks(config: EncoderConfig, input_ids, attention_mask, token_type_ids, *,
              allow_padding_rows: bool = False) -> None:
    """`check_ids` on traced arrays, as `jax.experimental.checkify` checks.

    Call it inside a function transformed by `checkify.checkify` (then jitted as you like); the
    error it returns names the first bad position, e.g. `err, out =
    jax.jit(checkify.checkify(f))(...); err.throw()`. `checked(model)` does all of this.
    """
    for template, values, bad in _id_conditions(config, input_ids, attention_mask, token_type_ids,
                                                xp=jnp, allow_padding_rows=allow_padding_rows):
        first = jnp.argmax(bad.ravel())
        row, position = first // bad.shape[1], first % bad.shape[1]
        checkify.check(~jnp.any(bad), template, row=row, position=position,
                       value=values.ravel()[first])


def checked(model, *, method: str | None = None) -> Callable[..., jax.Array]:
    """`model(...)` (or `model.<method>(...)`) compiled with its ids checked inside the program.

    Inside jit the ids are tracers and the direct call cannot check them on the host; this
    wraps the call in `jax.experimental.checkify` with `id_checks`, so a bad id raises
    (`checkify.JaxRuntimeError`, naming the tensor, row, position and value) instead of being
    clamped. The model's state is an argument of the compiled program (snapshot taken now).

    Args:
      model: an `EncoderModel` or `QuantizedModel` (anything with `.config` called as
        `model(input_ids, attention_mask, token_type_ids)`).
      method: e.g. 'encode'; None calls the model.

    Returns:
      `fn(input_ids, attention_mask=None, token_type_ids=None) -> output`, jitted (one
      compilation per input shape).
    """
    graphdef, state = nnx.split(model)
    config = model.config

    def call(state, input_ids, attention_mask, token_type_ids):
        input_ids, attention_mask, token_type_ids = check_inputs(
            input_ids, attention_mask, token_type_ids)
        id_checks(config, input_ids, attention_mask, token_type_ids)
        merged = nnx.merge(graphdef, state)
        fn = merged if method is None else getattr(merged, method)
        return fn(input_ids, attention_mask, token_type_ids)

    compiled = jax.jit(checkify.checkify(call))

    def run(input_ids, attention_mask=None, token_type_ids=None):
        error, out = compiled(state, input_ids, attention_mask, token_type_ids)
        error.throw()
        return out

    return run


def is_concrete(value) -> bool:
    """Whether `value` can be read on the host now (None, numpy, or a non-traced jax array)."""
    if isinstance(value, jax.core.Tracer):
        return False
    return getattr(value, "is_fully_addressable", True)
