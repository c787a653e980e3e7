"""The inference engine: ahead-of-time compiled, bucketed serving of an encoder.

`compile(model)` returns an `Engine`. The engine compiles one XLA executable per
(batch bucket, sequence bucket) pair in its constructor and, while serving, only calls those
executables: a call can never trigger a compilation. With `precompile=False` it compiles each
bucket instead the first time a call reaches it, once: for a one-off job over rows known up
front (`samp-jax predict`), where buckets no row reaches are never compiled. Each call

1. tokenizes texts or text pairs (or takes token ids), checking every row against the largest
   sequence bucket (raising, or truncating with `truncate=True`): `samp_jax.serving.inputs`;
2. sorts rows by length and cuts them into chunks of at most `batch_size` rows, each padded
   with all-padding rows to the smallest batch bucket and with padding tokens to the smallest
   sequence bucket that holds it;
3. runs the chunks, drops padded rows and positions, and post-processes in numpy (each row's
   classes, label set or score, as the model's head is read: `EncoderModel.readout`; per-row
   trimming), returning rows in input order as an `EngineOutput`.

The engine serves a snapshot of the weights taken at compile time: changing the model's
weights afterwards (`nnx.update`, assigning a variable) does not change what it serves.
Text needs the model's own
tokenizer: `tokenizer=`, else the one travelling with the model (`model.tokenizer`, attached by
`samp_jax.load`); there is no default.

Persistent compilation cache: pass `cache_dir` (or set `$SAMP_JAX_XLA_CACHE`) and the
executables are written to / read from JAX's persistent compilation cache there, so a new
process with the same model and buckets loads them instead of compiling. This is a JAX
process-wide setting: it also caches every later JAX compilation in the process. The variable
does not move a cache the program already gave JAX (`environment_compilation_cache`). Through
the API nothing is cached on disk unless asked for; the `samp-jax` command turns the cache on
itself (`default_compilation_cache`). As JAX warns, the cache is trusted code: keep the
folder private.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from samp_jax.models.head_kinds import (LABEL_THRESHOLD, HeadKind, HeadOutput, Readout,
                                       check_label_threshold)
from samp_jax.models.model import EncoderModel, check_ids
from samp_jax.models.tokenizer import Tokenizer
from samp_jax.core import host_memory
from samp_jax.core.errors import SampJaxError
from samp_jax.core.transfers import own_transfers
from samp_jax.core.precision import PrecisionMap, precision_of_dtype
from samp_jax.ptq.quantized import QuantizedModel, quantize
from samp_jax.serving.batching import bucket_batches, buckets_to, rows_for_length
from samp_jax.serving.forward import INPUT_KEYS, batch_inputs, merged_call
from samp_jax.serving.inputs import InputReader, Rows, is_pair
from samp_jax.serving.sharding import data_mesh, local_devices, round_batch_size, split_rows
from samp_jax.serving.xla_cache import checked_reads

DEFAULT_SEQ_BUCKETS = (32, 64, 128, 256, 512)
DEFAULT_BATCH_SIZE = 32
# The default batch buckets are 1, this and `batch_size`: a call of 2 to 8 rows is padded to 8,
# not to 32 (four times the work at most, not sixteen), for half again as many executables.
SMALL_BATCH_BUCKET = 8
CACHE_ENV = "SAMP_JAX_XLA_CACHE"
CACHE_OFF = "off"
"""`$SAMP_JAX_XLA_CACHE=off`: no persistent compilation cache, not even the command's."""
DEFAULT_CACHE_BYTES = 4 << 30
"""The size the command's default cache is kept under (JAX evicts the least recently used
executables past it)."""


class JitDisabledError(SampJaxError, RuntimeError):
    """An engine built or called with JAX's jit turned off (`JAX_DISABLE_JIT=1`,
    `jax.disable_jit()`): its programs are compiled ahead of time, which JAX does not run
    eagerly."""


def check_jit_enabled(what: str) -> None:
    """Raises `JitDisabledError` while JAX's jit is off (`jax.config.jax_disable_jit`: the
    `JAX_DISABLE_JIT` variable or a `jax.disable_jit()` block), naming `what` was refused."""
    if jax.config.jax_disable_jit:
        raise JitDisabledError(
            f"{what} needs JAX's jit, which is off (JAX_DISABLE_JIT=1 or inside "
            "jax.disable_jit()): the engine serves programs compiled ahead of time, which JAX "
            "cannot run eagerly; unset JAX_DISABLE_JIT (or leave the block) to serve, or call "
            "the model itself (model(**tokenizer(texts))), or samp_jax.evaluate, which run "
            "eagerly with jit off")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class EngineOutput:
    """What an `Engine` call returns; rows are in input order.

    Which fields are set depends on what the model's head declares it returns (its
    `HeadKind`: `output`, and `per_token` for a sequence axis); the others are None. Per-token
    outputs come as a list with one `[lengths[i], ...]` array per row, special tokens included.

    Attributes:
      kind: the head kind's name (`EncoderModel.head_kind`).
      lengths: `[N]` real tokens each row ran with (after any truncation).
      truncated: `[N]` True where a row was cut to the largest bucket.
      logits: logits heads: `[N, C]` float32 ('sequence_classification'), or per token a list
        of `[lengths[i], C]` arrays ('token_classification').
      labels: what the head predicts (`Readout.predict`): the argmax of `logits`, `[N]` or a
        list of `[lengths[i]]` arrays; for a multi-label head (`Readout.LABELS`) `[N, C]`
        bool, True for every label whose sigmoid is at least the engine's `label_threshold`
        (the one `compile` was given, else the model's own, else `LABEL_THRESHOLD`); None for a sequence head of one
        output (num_labels=1, a reranker), whose logit is a score.
      label_names: when the head has class names (`head.labels`), the names of `labels`: a
        list of `N` names, or (per token) a list of per-row lists of `lengths[i]` names, or
        (multi-label) a list of `N` lists of the names predicted.
      embeddings: embedding heads ('sentence_embedding'): `[N, D]` float32.
      hidden_states: no head ('none'): a list of `[lengths[i], hidden]` float32 arrays.
      outputs: any other head (`HeadOutput.OTHER`): `[N, ...]`, or per token a list of
        `[lengths[i], ...]` arrays.
      word_logits: `Engine.classify_words` only: per row, `[num_words, C]` logits of each
        word's first sub-token (NaN for a word without a sub-token: one that truncation
        removed, or a word the tokenizer makes no token of, such as a zero-width or control
        character; `truncated` is False for a row whose only such words are the latter).
      word_labels: `Engine.classify_words` only: per row, `[num_words]` labels (-1 for a word
        without a sub-token, as for `word_logits`).
      word_label_names: `Engine.classify_words` with class names only: per row, the names of
        `word_labels` (None for a word without a sub-token, as for `word_logits`).
      non_finite: `[N]` True where a row's outputs hold NaN or Inf (values past the range of
        the model's precision, e.g. above FP16's 65,504). No answer is read from them: such a
        row's (or token's, or word's) label is -1 and its name None, never the argmax of NaN.
    """

    kind: str
    lengths: np.ndarray
    truncated: np.ndarray
    logits: np.ndarray | list[np.ndarray] | None = None
    labels: np.ndarray | list[np.ndarray] | None = None
    embeddings: np.ndarray | None = None
    hidden_states: list[np.ndarray] | None = None
    outputs: np.ndarray | list[np.ndarray] | None = None
    word_logits: list[np.ndarray] | None = None
    word_labels: list[np.ndarray] | None = None
    label_names: list[str] | list[list[str]] | None = None
    word_label_names: list[list[str | None]] | None = None
    non_finite: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def __repr__(self) -> str:
        """The fields that are set, each by its shape (`embeddings=float32[2, 384]`), not its
        values: a list of per-row arrays as `[2 x float32[L, 9]]`, a list of names by its
        length."""
        fields = [f"kind={self.kind!r}"]
        for field in dataclasses.fields(self)[1:]:
            value = getattr(self, field.name)
            if value is not None:
                fields.append(f"{field.name}={_shape_of(value)}")
        return f"EngineOutput({', '.join(fields)})"


def _shape_of(value) -> str:
    """`float32[2, 384]` for an array; `[2 x float32[L, 9]]` for a list of arrays (L: each
    row's own length when they differ); `list[2]` for a list of anything else."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name}[{', '.join(map(str, value.shape))}]"
    if value and all(isinstance(row, np.ndarray) for row in value):
        shapes = {row.shape for row in value}
        dims = [str(size) if len({shape[axis] for shape in shapes}) == 1 else "L"
                for axis, size in enumerate(value[0].shape)]
        return f"[{len(value)} x {value[0].dtype.name}[{', '.join(dims)}]]"
    return f"list[{len(value)}]"


class CompileCounter:
    """Counts XLA backend compilations (any function, any cause) while the block runs, through
    `jax.monitoring`: `with CompileCounter() as c: engine(texts)` then `c.count == 0`. A program
    that JAX's persistent compilation cache serves counts too (JAX reports its load as a
    backend compilation)."""

    def __enter__(self) -> "CompileCounter":
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, **kwargs):
        if "backend_compile" in event:
            self.count += 1

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


def enable_compilation_cache(path: str | os.PathLike) -> Path:
    """Turns on JAX's persistent compilation cache in `path` (created if missing).

    Every compilation is cached whatever its duration or size. Process-wide: later JAX
    compilations in this process are cached there too. Returns the resolved folder.

    Raises:
      ValueError: `path`, or a folder above it, is a file.
    """
    path = Path(path).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file at the path, or above it
        blocking = next(p for p in (path, *path.parents) if p.exists() and not p.is_dir())
        raise ValueError(f"cache_dir={str(path)!r} cannot be a folder: {blocking} is a file; "
                         "expected a folder (created if missing) for JAX's compilation cache, "
                         f"as cache_dir or ${CACHE_ENV}") from None
    if jax.config.jax_compilation_cache_dir != str(path):
        checked_reads()  # a cut entry (a process killed while writing it) is compiled anew
        jax.config.update("jax_compilation_cache_dir", str(path))
        # JAX opens the cache once per process; re-open it at the new folder.
        compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def _cache_setting() -> str:
    """`$SAMP_JAX_XLA_CACHE`, stripped ('' when unset)."""
    return os.environ.get(CACHE_ENV, "").strip()


def _cache_from_environment() -> str | None:
    """The folder `$SAMP_JAX_XLA_CACHE` names, or None when it is unset, empty or `CACHE_OFF`."""
    setting = _cache_setting()
    return None if setting in ("", CACHE_OFF) else setting


def environment_compilation_cache() -> Path | None:
    """The persistent compilation cache `$SAMP_JAX_XLA_CACHE` asks for, for an engine given no
    `cache_dir`: None when the variable is unset, empty or `off`. When JAX already has a cache
    folder (the host program's `jax.config` or `$JAX_COMPILATION_CACHE_DIR`), that one is used
    and every cache setting is left as the program made it; else the variable's folder is
    turned on as the command turns its own on (`default_compilation_cache`): bounded, and a
    folder that cannot be made or written is one warning (once per process) and no cache.
    """
    if _cache_from_environment() is None:
        return None
    return default_compilation_cache(None)  # the variable names the folder: no default needed


def default_compilation_cache(default: Path | None) -> Path | None:
    """The `samp-jax` command's persistent compilation cache, so that a command run again (a
    restart, the next file to predict) loads its executables instead of compiling them:
    `$SAMP_JAX_XLA_CACHE`, else `default` (`<$SAMP_JAX_CACHE>/xla`; None when no cache folder
    is known), kept under `DEFAULT_CACHE_BYTES` by JAX's least-recently-used eviction (which
    also locks the folder between processes). Nothing changes when `$SAMP_JAX_XLA_CACHE` is
    `off` or JAX already has a cache folder (`$JAX_COMPILATION_CACHE_DIR`, `jax.config`). A
    folder that cannot be made or written (a read-only copy of a cache: JAX would warn at every
    compilation) is one warning, and the command runs without the cache (its engines too:
    `environment_compilation_cache` does not try that folder again). Returns the folder in
    use, or None.
    """
    if _cache_setting() == CACHE_OFF:
        return None
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    folder = _cache_from_environment() or default
    if folder is None:
        warnings.warn(f"no persistent compilation cache (no folder for it: no home folder is "
                      f"known); every executable is compiled (${CACHE_ENV} or $SAMP_JAX_CACHE "
                      "names one)")
        return None
    return _turn_on(Path(folder).expanduser())


def _limit_cache_size() -> None:
    """Keeps a cache samp-jax turns on under `DEFAULT_CACHE_BYTES`, by JAX's least-recently-used
    eviction (which also locks the folder between processes), where JAX can evict."""
    if importlib.util.find_spec("filelock") is not None:  # JAX's eviction needs it
        jax.config.update("jax_compilation_cache_max_size", DEFAULT_CACHE_BYTES)


# Folders found unusable for the cache in this process: said once, not tried again (a folder
# made writable later is used by the next process).
_UNUSABLE_CACHES: set[Path] = set()


def _turn_on(folder: Path) -> Path | None:
    """Turns the persistent compilation cache on in `folder`, bounded (`_limit_cache_size`);
    a folder that cannot be made or written is one warning and None, once per process."""
    if folder in _UNUSABLE_CACHES:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{folder} cannot be written")
        _limit_cache_size()
        return enable_compilation_cache(folder)
    except (OSError, ValueError) as e:
        jax.config.update("jax_compilation_cache_max_size", -1)
        _UNUSABLE_CACHES.add(folder)
        warnings.warn(f"no persistent compilation cache ({e}); every executable is compiled "
                      f"(${CACHE_ENV} names another folder, '{CACHE_OFF}' turns it off)")
        return None


def default_seq_buckets(max_length: int) -> list[int]:
    """The sequence buckets an engine compiles by default for a model taking `max_length`
    tokens: `DEFAULT_SEQ_BUCKETS`, then doublings while below `max_length` (1024, 2048, ...
    for long-context models), capped at `max_length` (the last bucket is the limit itself)."""
    return buckets_to(max_length, DEFAULT_SEQ_BUCKETS)


def row_limit(config, tokenizer: Tokenizer) -> int:
    """The most tokens a row of a model is served at: its tokenizer's own `max_length` (a
    sentence-transformers `max_seq_length`, a tokenizer's `model_max_length`: rows past it are
    not what the model was trained and is served at), or the model's positions
    (`config.position_limit`) when fewer. A model without a position table (DeBERTa-v3,
    ModernBERT) has no such limit: its tokenizer's `max_length` alone decides."""
    positions = config.position_limit
    return tokenizer.max_length if positions is None else min(positions, tokenizer.max_length)


def compile(model: EncoderModel | QuantizedModel, *, tokenizer: Tokenizer | None = None,
            seq_buckets: Sequence[int] | None = None, batch_size: int | None = None,
            batch_buckets: Sequence[int] | None = None, dtype=None, truncate: bool = False,
            cache_dir: str | os.PathLike | None = None, progress: bool = False,
            precompile: bool = True, label_threshold: float | None = None,
            devices: Sequence[jax.Device] | None = None) -> "Engine":
    """Compiles `model` for serving: one executable per (batch bucket, sequence bucket).

    Args:
      model: a float `EncoderModel` or a `QuantizedModel`; never modified.
      tokenizer: turns texts into ids (and pads token-id input); defaults to the model's own
        `model.tokenizer` (attached by `samp_jax.load`). There is no other default.
      seq_buckets: sequence lengths to compile; sorted and deduplicated. Each must be at most
        the model's limit (`row_limit`): the tokenizer's `max_length` (e.g. a
        sentence-transformers `max_seq_length`: the length the model was trained and is
        served at, as sentence-transformers cuts rows), or the model's position table
        (`config.position_limit`) when smaller. To serve longer rows, pass a tokenizer with a
        larger `max_length` (a model without a position table, DeBERTa-v3 or ModernBERT,
        takes any). Defaults
        to `default_seq_buckets` of that limit: `DEFAULT_SEQ_BUCKETS`, doubling on past 512
        for long-context models (ModernBERT's 8,192), capped at the limit.
      batch_size: most rows per executable call; larger inputs are cut into chunks. Defaults
        to `max(batch_buckets)` when those are given, else 32.
      batch_buckets: batch shapes to compile; defaults to `(1, 8, batch_size)`
        (`SMALL_BATCH_BUCKET`; those up to `batch_size`): three executables per sequence
        bucket. The largest must equal `batch_size`.
      dtype: compute dtype of a float model (float32, float16 or bfloat16), applied to a copy.
        For a `QuantizedModel` it must be None or the dtype it was quantized with.
      truncate: cut rows longer than the largest sequence bucket (pairs as the tokenizer does,
        longest segment first; raw ids keep their first tokens) instead of raising.
      cache_dir: turn on JAX's persistent compilation cache there (process-wide; see
        `enable_compilation_cache`). None: `$SAMP_JAX_XLA_CACHE`'s folder, unless JAX already
        has a cache folder, which is then used as the program set it
        (`environment_compilation_cache`); the variable unset too: off.
      progress: print one line per compiled executable.
      precompile: compile every bucket now (the default: no call ever compiles). False
        compiles each bucket the first time a call reaches it (once, thread-safe): less
        compiling for a job whose rows reach few buckets, at the price of a compilation
        inside the calls that reach a new one.
      label_threshold: a multi-label head's (`Readout.LABELS`) decision threshold: `labels`
        holds every label whose sigmoid probability is at least it. A number strictly between
        0 and 1; None: the model's own (`EncoderModel.label_threshold`, which a search or
        fine-tune saves with it), else `LABEL_THRESHOLD` (0.5). Only for a multi-label head.
      devices: this process's devices to serve on, e.g. `jax.local_devices()`. With several,
        each executable is data parallel: every device holds a copy of the weights and runs
        its share of each chunk's rows (`samp_jax.serving.sharding.split_rows`), and
        `batch_size` and every batch bucket are rounded up to a multiple of their number
        (a chunk is padded with all-padding rows, dropped from the output). One device: the
        engine runs there. None (the default): on JAX's default device.

    Returns:
      An `Engine`, compiled (every bucket, or none yet with `precompile=False`).

    Raises:
      JitDisabledError: JAX's jit is off (`JAX_DISABLE_JIT=1`, `jax.disable_jit()`).
      TypeError: `model` is neither an `EncoderModel` nor a `QuantizedModel`, or `tokenizer`
        is not a `Tokenizer`.
      ValueError: no tokenizer (neither `tokenizer=` nor `model.tokenizer`), invalid
        buckets, batch size, dtype or devices (`samp_jax.serving.sharding.local_devices`), or
        a `label_threshold` that is not strictly between 0 and 1 or is given for a head that
        is not multi-label (checked before compiling).
    """
    return Engine(model, tokenizer=tokenizer, seq_buckets=seq_buckets, batch_size=batch_size,
                  batch_buckets=batch_buckets, dtype=dtype, truncate=truncate,
                  cache_dir=cache_dir, progress=progress, precompile=precompile,
                  label_threshold=label_threshold, devices=devices)


class Engine:
    """Serves a model through ahead-of-time compiled executables. Build it with `compile`.

    Call it with one text, a list (or numpy array) of texts, a list of `(text, text_pair)`
    tuples (a cross-encoder; a single pair too goes in a list: a bare tuple of two texts is
    refused), or token ids: a dict with `input_ids [N, L]` and optional right-padded
    `attention_mask` and `token_type_ids` (what `Tokenizer` returns), a 2-D integer array, or a
    list of lists of ints. A call returns an `EngineOutput`; one text is a batch of one.

    An engine holds compiled executables: it does not pickle or copy. Pickle the model it
    serves (`engine.model`) and `compile` it again where it is needed.

    Attributes:
      model: the model served (a copy when `dtype` changed it).
      tokenizer: the tokenizer used for text input: `tokenizer=`, else `model.tokenizer`.
      head_kind: the model's head kind name.
      head_declaration: its `HeadKind`, which decides the `EngineOutput` fields.
      readout: how its logits are read (`EncoderModel.readout`), or None.
      label_threshold: the threshold a multi-label head's label sets are read at
        (`compile(label_threshold=...)`, else the model's own, else `LABEL_THRESHOLD`); None
        for other heads.
      labels: the head's class names (`EngineOutput.label_names`), or None.
      cross_encoder_activation: a sentence-transformers CrossEncoder's activation
        (`EncoderModel.cross_encoder_activation`; the logits are returned without it), or None.
      seq_buckets, batch_buckets: the shapes served, ascending (all compiled, unless the
        engine was built with `precompile=False`: then those reached so far).
      batch_size: most rows per executable call (a multiple of the devices' number).
      devices: the devices served on (`compile(devices=...)`), or None: JAX's default one.
      truncate: whether over-long rows are cut instead of rejected.
      compile_report: one dict per executable, in compilation order: `batch`, `seq`,
        `seconds` (lower + compile).
      num_compilations: how many executables this engine compiled.
      precompile: whether every bucket was compiled at construction.
      bucket_calls: `Counter` of executable calls by `(batch, seq)` bucket.
      cache_dir: the persistent compilation cache folder, or None.

    Thread-safe: one engine may be called from many threads at once. Tokenizing never changes
    shared tokenizer state (`Tokenizer` is thread-safe), the executables are only called, and
    the mutable state, `bucket_calls` (and, without `precompile`, the executables compiled
    on first use), is updated under locks.

    JAX settings: the engine is built and called with jit on (`JitDisabledError` under
    `JAX_DISABLE_JIT` / `jax.disable_jit()`: its programs are compiled ahead of time). It runs
    its programs with JAX's NaN/Inf debugging off (`jax.debug_nans(False)`,
    `jax.debug_infs(False)`), whatever `JAX_DEBUG_NANS` says: a row whose outputs overflow is
    flagged in `EngineOutput.non_finite`, the engine's own report, not raised.
    """

    @own_transfers
    def __init__(self, model: EncoderModel | QuantizedModel, *, tokenizer: Tokenizer | None = None,
                 seq_buckets: Sequence[int] | None = None, batch_size: int | None = None,
                 batch_buckets: Sequence[int] | None = None, dtype=None, truncate: bool = False,
                 cache_dir: str | os.PathLike | None = None, progress: bool = False,
                 precompile: bool = True, label_threshold: float | None = None,
                 devices: Sequence[jax.Device] | None = None):
        if not isinstance(model, (EncoderModel, QuantizedModel)):
            raise TypeError(f"compile needs an EncoderModel or a QuantizedModel, "
                            f"got {type(model).__name__}")
        check_jit_enabled("samp_jax.compile")
        if tokenizer is None:
            tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                f"the {type(model).__name__} has no tokenizer; pass tokenizer=samp_jax.Tokenizer"
                ".from_pretrained(folder) or load the model with samp_jax.load(folder), which "
                "attaches the folder's tokenizer")
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a samp_jax.Tokenizer, got {type(tokenizer).__name__}")
        positions = model.config.position_limit
        max_length = row_limit(model.config, tokenizer)
        if seq_buckets is None:
            seq_buckets = default_seq_buckets(max_length)
        self.seq_buckets = _check_buckets(seq_buckets, "seq_buckets")
        if self.seq_buckets[-1] > max_length:
            why = (f"the model's maximum of {positions} tokens (max_position_embeddings="
                   f"{model.config.max_position_embeddings})"
                   if positions is not None and positions <= tokenizer.max_length
                   else f"the tokenizer's max_length of {tokenizer.max_length} tokens (its "
                        "model_max_length or sentence-transformers max_seq_length); to serve longer "
                        "rows, pass tokenizer=samp_jax.Tokenizer.from_pretrained(folder, "
                        "max_length=N)")
            raise ValueError(f"seq_buckets={self.seq_buckets} has {self.seq_buckets[-1]}, more "
                             f"than {why}")
        self.batch_size, self.batch_buckets = _check_batch(batch_size, batch_buckets)
        host_memory.fit_to_row_length(self.seq_buckets[-1])  # long rows: large blocks mapped
        self.devices = None if devices is None else local_devices(devices)
        if self.devices is not None and len(self.devices) > 1:  # equal rows on every device
            shards = len(self.devices)
            self.batch_size = round_batch_size(self.batch_size, shards)
            self.batch_buckets = tuple(sorted({round_batch_size(b, shards)
                                               for b in self.batch_buckets}))
        if not isinstance(truncate, bool):
            raise TypeError(f"truncate={truncate!r} must be True or False")
        if not isinstance(precompile, bool):
            raise TypeError(f"precompile={precompile!r} must be True or False")
        self.truncate = truncate
        self.precompile = precompile
        self.tokenizer = tokenizer
        self.model = _served_model(model, dtype)
        self.config = self.model.config
        self.head_kind = self.model.head_kind
        self.readout = self.model.readout
        if label_threshold is None:  # the model's own, saved with it
            own = getattr(self.model, "label_threshold", None)
            label_threshold = own if self.readout is Readout.LABELS else None
        self.label_threshold = _label_threshold(label_threshold, self.readout, self.head_kind)
        self.labels = self.model.labels
        self.cross_encoder_activation = self.model.cross_encoder_activation
        self._inputs = InputReader(tokenizer, self.config, limit=self.seq_buckets[-1],
                                   truncate=truncate)
        self.cache_dir = (environment_compilation_cache() if cache_dir is None
                          else enable_compilation_cache(cache_dir))
        self._graphdef, state = nnx.split(self.model)
        # Where the weights and each chunk's rows go: the default device (None), one device,
        # or a copy of the weights on each device and the rows split over them.
        self._weights_at, self._rows_at, forward = None, None, self._forward
        if self.devices is not None and len(self.devices) == 1:
            self._weights_at = self._rows_at = jax.sharding.SingleDeviceSharding(self.devices[0])
        elif self.devices is not None:
            mesh = data_mesh(self.devices)
            self._weights_at = NamedSharding(mesh, P())
            self._rows_at = NamedSharding(mesh, P(mesh.axis_names[0]))
            forward = split_rows(self._forward, mesh, axis=mesh.axis_names[0])
        # the weights as they are now: the split's Variables are the model's own, which a later
        # `nnx.update` or `variable[...] = ...` would change under the executables
        self._state = jax.tree.map(lambda value: value if self._weights_at is None else
                                   jax.device_put(value, self._weights_at), state)
        self.head_declaration = _declared_head(self.model)
        self.compile_report: list[dict[str, Any]] = []
        self.num_compilations = 0
        self.bucket_calls: collections.Counter[tuple[int, int]] = collections.Counter()
        self._lock = threading.Lock()  # guards bucket_calls, the state calls change
        self._compile_lock = threading.Lock()  # guards compiling on first use
        self._executables: dict[tuple[int, int], Any] = {}
        # The weights are an argument, not constants baked into the executable: compiling
        # stays fast and cache entries stay small.
        self._jitted = jax.jit(forward)
        self._progress = progress
        if precompile:  # every shape a call can take (rows past 512 tokens go fewer a batch)
            for batch in self.batch_buckets:
                for seq in self.seq_buckets:
                    if batch <= max(self._rows_for_length(seq), self.batch_buckets[0]):
                        self._compile(batch, seq)

    def _rows_for_length(self, seq: int) -> int:
        """The most rows a batch of `seq` tokens takes (`batching.rows_for_length`)."""
        return rows_for_length(self.batch_size, seq)

    # ------------------------------------------------------------------------ compilation
    def _forward(self, state, input_ids, attention_mask, token_type_ids):
        return merged_call(self._graphdef, state, input_ids, attention_mask, token_type_ids)

    @own_transfers  # a set-up step, also on first use inside a call
    def _compile(self, batch: int, seq: int):
        """Compiles the (batch, seq) executable, records it and returns it."""
        start = time.perf_counter()
        spec = jax.ShapeDtypeStruct((batch, seq), jnp.int32, sharding=self._rows_at)
        executable = self._jitted.lower(self._state, spec, spec, spec).compile()
        seconds = time.perf_counter() - start
        self._executables[batch, seq] = executable
        self.num_compilations += 1
        self.compile_report.append({"batch": batch, "seq": seq, "seconds": seconds})
        if self._progress:
            print(f"samp_jax.compile: batch={batch} seq={seq} in {seconds:.2f}s", flush=True)
        return executable

    def _executable(self, shape: tuple[int, int]):
        """The executable of bucket `shape`, compiled now if this is its first use (only
        without `precompile`; every bucket exists already otherwise)."""
        executable = self._executables.get(shape)
        if executable is None:
            with self._compile_lock:  # one thread compiles; the others then find it
                executable = self._executables.get(shape)
                if executable is None:
                    executable = self._compile(*shape)
        return executable

    # ---------------------------------------------------------------------------- serving
    def __call__(self, inputs) -> EngineOutput:
        """Runs the model on texts, text pairs or token ids; see the class docstring.

        Raises:
          TypeError: inputs of an unsupported type.
          ValueError: empty input, mixed kinds of rows, ids outside the vocabulary, a mask
            that is not right padding, or a row longer than the largest sequence bucket
            (without `truncate`).
        """
        kind = self.head_declaration
        # a list of pairs (`InputReader.read` refuses a mix), or of two pre-split words each
        if kind.classifies and kind.per_token and isinstance(inputs, (list, tuple)) and inputs \
                and is_pair(inputs[0]):
            raise ValueError("inputs are (text, text_pair) pairs, which a token classifier does "
                             "not tag; a row of pre-split words goes to "
                             "engine.classify_words([[word, ...], ...])")
        rows = self._inputs.read(inputs)
        return self._postprocess(rows, self._run(rows))

    def classify_words(self, words: Sequence[Sequence[str]]) -> EngineOutput:
        """Token classification of pre-split words, with a label per word.

        Each word is labelled by its first sub-token, as in HF token-classification training.
        The output also carries the per-token `logits` and `labels`.

        Raises:
          ValueError: the model has no token-classification head, or inputs as in `__call__`.
        """
        kind = self.head_declaration
        if not (kind.classifies and kind.per_token):
            raise ValueError(f"classify_words needs a per-token logits head such as "
                             f"'token_classification', the model has {self.head_kind!r}")
        rows = self._inputs.read_words(words)
        out = self._postprocess(rows, self._run(rows))
        word_logits, word_labels = [], []
        for row, logits in enumerate(out.logits):
            count = len(words[row])
            ids = rows.word_ids[row, :len(logits)]
            first = np.full(count, -1)
            for position in range(len(ids) - 1, -1, -1):  # backwards: the first position wins
                if ids[position] >= 0:
                    first[ids[position]] = position
            kept = first >= 0
            row_logits = np.full((count, logits.shape[-1]), np.nan, np.float32)
            row_logits[kept] = logits[first[kept]]
            word_logits.append(row_logits)
            answered = kept & np.isfinite(row_logits).all(-1)  # no answer from NaN or Inf
            word_labels.append(np.where(answered, np.argmax(np.nan_to_num(row_logits), axis=-1), -1))
        word_label_names = None
        if self.labels is not None:
            word_label_names = [[self.labels[i] if i >= 0 else None for i in row.tolist()]
                                for row in word_labels]
        return dataclasses.replace(out, word_logits=word_logits, word_labels=word_labels,
                                   word_label_names=word_label_names)

    def _run(self, rows: Rows) -> list[tuple[np.ndarray, Any]]:
        """Dispatches every chunk (asynchronously), then returns `(row_indices, output)`.

        NaN/Inf debugging is off for the calls: non-finite rows are flagged, not raised."""
        check_jit_enabled("an Engine call")
        self._check_range(rows)
        arrays = {key: getattr(rows, key).astype(np.int32) for key in INPUT_KEYS}
        pending = []
        for index, batch in bucket_batches(arrays, rows.lengths, batch_size=self.batch_size,
                                           seq_buckets=self.seq_buckets,
                                           batch_buckets=self.batch_buckets,
                                           pad_values={"input_ids": self.tokenizer.pad_id},
                                           max_rows=self._rows_for_length):
            shape = batch["input_ids"].shape
            # explicit copies (in, and out in `_postprocess`): a caller's transfer guard
            # ("disallow") refuses implicit ones
            inputs = jax.device_put(batch_inputs(batch), self._rows_at)
            executable = self._executable(shape)
            with jax.debug_nans(False), jax.debug_infs(False):
                pending.append((index, executable(self._state, *inputs)))
            with self._lock:
                self.bucket_calls[shape] += 1
        return pending

    def _postprocess(self, rows: Rows, pending: list[tuple[np.ndarray, Any]]) -> EngineOutput:
        n = len(rows.lengths)
        kind = self.head_declaration
        if kind.per_token:
            per_row: list[np.ndarray | None] = [None] * n
            for index, output in pending:
                output = np.asarray(jax.device_get(output), np.float32)
                for slot, row in enumerate(index):
                    per_row[row] = output[slot, :rows.lengths[row]]
            result: np.ndarray | list[np.ndarray] = per_row
        else:
            result = None
            for index, output in pending:
                output = np.asarray(jax.device_get(output), np.float32)[:len(index)]  # drop the padding rows
                if result is None:
                    result = np.empty((n, *output.shape[1:]), np.float32)
                result[index] = output
        rows_finite = (np.array([np.isfinite(r).all() for r in result]) if kind.per_token
                       else np.isfinite(result.reshape(n, -1)).all(-1))
        common = {"kind": self.head_kind, "lengths": rows.lengths, "truncated": rows.truncated,
                  "non_finite": ~rows_finite}
        if kind.output is HeadOutput.LOGITS and kind.per_token:
            labels = [np.where(np.isfinite(r).all(-1), np.argmax(r, axis=-1), -1) for r in result]
            names = None if self.labels is None else [self._names(row) for row in labels]
            return EngineOutput(**common, logits=result, labels=labels, label_names=names)
        if kind.output is HeadOutput.LOGITS and (self.readout is Readout.SCORE
                                                 or result.shape[-1] == 1):  # a score, no class
            return EngineOutput(**common, logits=result)
        if kind.output is HeadOutput.LOGITS:  # one class, or a set of labels, per row
            threshold = LABEL_THRESHOLD if self.label_threshold is None else self.label_threshold
            labels = (self.readout or Readout.CLASSES).predict(result, threshold)
            if labels.ndim == 1:
                labels = np.where(rows_finite, labels, -1)
            return EngineOutput(**common, logits=result, labels=labels,
                                label_names=self._names(labels))
        if kind.output is HeadOutput.EMBEDDING:
            return EngineOutput(**common, embeddings=result)
        if kind.output is HeadOutput.HIDDEN:
            return EngineOutput(**common, hidden_states=result)
        return EngineOutput(**common, outputs=result)

    def _names(self, labels: np.ndarray) -> list[str] | list[list[str]] | None:
        """The class names of label indices `[n]` (or, of multi-hot label sets `[n, C]`, the
        names of each row's labels), or None when the head has no names."""
        if self.labels is None:
            return None
        if labels.ndim == 2:
            return [[self.labels[i] for i in np.flatnonzero(row)] for row in labels]
        return [self.labels[i] if i >= 0 else None for i in labels.tolist()]

    def _check_range(self, rows: Rows) -> None:
        """Ids outside the embedding tables would be clamped silently by XLA's gather
        (`check_ids`, the model's own check)."""
        check_ids(self.config, rows.input_ids, rows.attention_mask, rows.token_type_ids)

    def __reduce__(self):
        raise TypeError("an Engine holds compiled executables, which do not pickle or copy; "
                        "pickle the model it serves (engine.model: an EncoderModel or "
                        "QuantizedModel) and call samp_jax.compile on it where it is needed")

    def __repr__(self) -> str:
        dtype = (self.model.model if isinstance(self.model, QuantizedModel) else self.model).dtype
        return (f"Engine(head_kind={self.head_kind!r}, dtype={jnp.dtype(dtype).name}, "
                f"seq_buckets={self.seq_buckets}, batch_buckets={self.batch_buckets}, "
                f"truncate={self.truncate}, executables={len(self._executables)}"
                f"{'' if self.devices is None else f', devices={len(self.devices)}'}"
                f"{'' if self.precompile else ', precompile=False'})")


def _declared_head(model) -> HeadKind:
    """The model head's `HeadKind`, which says how its outputs are trimmed and returned.

    Raises:
      ValueError: a custom head that declares none.
    """
    kind = model.head_declaration
    if kind is None:
        head = model.model.head if isinstance(model, QuantizedModel) else model.head
        raise ValueError(
            f"head {type(head).__name__} declares no HeadKind, so the engine cannot tell how to "
            "return its output: give its class `kind = samp_jax.HeadKind(name, per_token=..., "
            "output=...)`, or a registered kind's name (samp_jax.register_head)")
    return kind


def _label_threshold(threshold, readout: Readout | None, head_kind: str) -> float | None:
    """The threshold a multi-label head's label sets are read at (`LABEL_THRESHOLD` when
    `threshold` is None); None for any other head.

    Raises:
      ValueError: a threshold out of (0, 1), or one given for a head that is not multi-label.
    """
    if readout is Readout.LABELS:
        return LABEL_THRESHOLD if threshold is None else check_label_threshold(threshold)
    if threshold is not None:
        reads = ("gives no logits" if readout is None else
                 f"is read as {readout.described} (Readout.{readout.name}), not as label sets")
        raise ValueError(f"label_threshold={threshold!r} is for a multi-label head "
                         "(Readout.LABELS, problem_type multi_label_classification); this "
                         f"model's {head_kind!r} head {reads}: leave label_threshold out")
    return None


def _served_model(model, dtype):
    """The model to serve: `model` itself, or a copy at compute dtype `dtype`."""
    if isinstance(model, QuantizedModel):
        if dtype is not None and jnp.dtype(dtype) != jnp.dtype(model.model.dtype):
            raise ValueError(
                f"dtype={jnp.dtype(dtype).name} does not match the QuantizedModel's compute dtype "
                f"{jnp.dtype(model.model.dtype).name}; a quantized model's dtype is fixed by "
                "quantize(..., dtype=...). Pass dtype=None")
        return model
    if dtype is None or jnp.dtype(dtype) == model.dtype:
        return model
    # quantize() with a float preset is the one way to run a model at another float dtype: it
    # copies the model (the caller's is never changed) and keeps the heads in float32.
    preset = precision_of_dtype(dtype)  # raises for a dtype that is not a float compute dtype
    return quantize(model, PrecisionMap.preset(preset, model.config.num_layers), dtype=dtype).model


def _check_buckets(buckets, name: str) -> tuple[int, ...]:
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
        raise TypeError(f"{name} must be a sequence of ints, e.g. (32, 64, 128); got {buckets!r}")
    if len(buckets) == 0:
        raise ValueError(f"{name} is empty; give at least one size")
    for size in buckets:
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f"{name}={tuple(buckets)} has {size!r}; every size must be a positive int")
    return tuple(sorted({int(size) for size in buckets}))


def _check_batch(batch_size, batch_buckets) -> tuple[int, tuple[int, ...]]:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size <= 0):
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    if batch_buckets is None:
        batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        return batch_size, tuple(sorted({1, min(SMALL_BATCH_BUCKET, batch_size), batch_size}))
    buckets = _check_buckets(batch_buckets, "batch_buckets")
    if batch_size is None:
        return buckets[-1], buckets
    if buckets[-1] != batch_size:
        raise ValueError(
            f"batch_buckets={buckets} must have batch_size={batch_size} as its largest size: calls "
            "are cut into chunks of batch_size rows, each padded to the smallest batch bucket")
    return int(batch_size), buckets
