"""`gemm`: the one dispatch point for every GEMM site, with a registry of implementations.

In the tokamax style, an implementation is a function with `gemm`'s keyword interface that
raises `NotImplementedError` for a combination it cannot handle; with `implementation=None`
the registered ones are tried in order (`implementations()`; the built-in order is set in
`samp_jax.ops.__init__`: the Pallas kernels, then `xla`). `xla` (`samp_jax.ops.base`) is
always registered and is both the default and the numerical reference.

Epilogue order, shared by every implementation (`pallas_kernels.numerics.epilogue`):
`y = act(dequant(x @ w) + bias) + residual`, computed in float32 and cast to `out_dtype`, or
requantized to INT8 with a static `out_scale` when the next GEMM takes INT8 (chaining). An INT8
site may also take its input already quantized (`x` a `QArray`), from a fused LayerNorm+quant.

Which implementation ran is recorded, not assumed: an implementation that runs one of several
kernels names it (`report_kernel`, e.g. `pallas_mosaic` or `pallas_triton` for `pallas`), every
traced call is reported to the active `record_executions()` blocks as a `GemmExecution`, and
the first fallback of each site (an implementation that handles the precision declined, and a
later one ran) is logged once on the `samp_jax.ops` logger: a warning on a GPU, where a Pallas
site silently timed as XLA would mislead, and at INFO level elsewhere, where XLA is the
expected path of every site.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import threading
from typing import Callable, Iterator, Literal, Sequence

import jax
import jax.numpy as jnp

from pallas_kernels.numerics import check_scale, quantize_rows, row_finite
from samp_jax.core.precision import PRECISIONS, SitePrecision, as_precision
from samp_jax.core.primitives import QArray, quantize_fp8
from samp_jax.ops.fused import registered_fused_ops

Activation = Literal["gelu", "gelu_tanh", "quick_gelu", "silu", "tanh", "relu"] | None
GemmImpl = Callable[..., jax.Array]
logger = logging.getLogger("samp_jax.ops")


@dataclasses.dataclass(frozen=True)
class _Registered:
    fn: GemmImpl
    takes_fused_input: bool  # sites pinned to it take INT8 from fused LayerNorm+quant kernels
    automatic: bool  # tried by `implementation=None`
    precisions: frozenset[str] | None  # the `SitePrecision.precision` names it runs (None: all)


_REGISTRY: dict[str, _Registered] = {}
_ORDER: list[str] = []


@dataclasses.dataclass(frozen=True)
class GemmExecution:
    """What one traced `gemm` call ran.

    Attributes:
      site: the caller's label (`"3.ffn_in"` for a quantized model's site), or None.
      precision: the site's precision, as `str(SitePrecision)`.
      k, n: the GEMM's depth and width.
      executed: the implementation that ran: a kernel a multi-kernel implementation reported
        (`pallas_mosaic`, `pallas_triton`), else the registered name (`xla`, ...).
      declined: `"name: reason"` of each implementation that handles the precision, was tried
        first and declined (empty when the first choice ran).
    """

    site: str | None
    precision: str
    k: int
    n: int
    executed: str
    declined: tuple[str, ...] = ()


class _ThreadState(threading.local):
    """Per thread, as JAX traces a function in the thread that calls it: the open
    `record_executions` blocks and the kernel an implementation last reported, so that a
    model traced in one thread is never recorded in another thread's block."""

    def __init__(self):
        self.recorders: list[list[GemmExecution]] = []
        self.kernel_ran: str | None = None


_THREAD = _ThreadState()
_LOGGED: set[tuple] = set()


def register_gemm_implementation(name: str, fn: GemmImpl, *, first: bool = False,
                                 automatic: bool = True, takes_fused_input: bool = True,
                                 precisions: Sequence[str] | None = None,
                                 replace: bool = False) -> None:
    """Registers `fn` under `name`: `fn(x, weight, *, precision, bias, activation, residual,
    act_scale, input_scale, out_dtype, out_scale, requantize_from)`, the arguments of `gemm`
    after the checks (`precision` a `SitePrecision`, `out_dtype` a dtype); it raises
    `NotImplementedError` for a call it cannot run.

    The order `implementation=None` tries them (`implementations()`) is the order of
    registration: a new name goes last (behind `xla`, which runs everything, so it would
    never run automatically) unless `first=True` puts it ahead of all the others. A
    replacement (`replace=True`) keeps its name's place, unless `first=True` moves it ahead.

    Args:
      first: put it ahead of the implementations already registered.
      automatic: whether `implementation=None` tries it (else only when named).
      takes_fused_input: whether a site pinned to it takes INT8 input quantized by an upstream
        fused kernel; False keeps such a site on plain float input (a pure-XLA baseline).
      precisions: the `SitePrecision.precision` names it runs (from
        `samp_jax.core.precision.PRECISIONS`: 'fp32', 'bf16', 'fp16', 'int8', 'fp8_e4m3');
        None: every one. 'int8' covers both INT8 options (int8-dynamic and int8-static): an
        implementation that runs only one raises `NotImplementedError` for the other. Option
        names ('int8-dynamic') are refused rather than widened to 'int8'.
        `implementation=None` passes it by for the others without counting a fallback, and a
        model pinned to `name` runs its other sites on `xla` (`site_implementation`).
      replace: allow replacing the implementation registered as `name`.

    Raises:
      ValueError: `name` is empty or already registered (without `replace`), or a precision
        name is not one of `PRECISIONS`.
      TypeError: `name` is not a string, or `fn` is not callable.
    """
    if not isinstance(name, str):
        raise TypeError(f"register_gemm_implementation: name={name!r} must be a str")
    if not name.strip():
        raise ValueError("register_gemm_implementation: name must be a non-empty str")
    if not callable(fn):
        raise TypeError(f"register_gemm_implementation({name!r}): fn={fn!r} is not callable; "
                        "expected fn(x, weight, *, precision, ...) like samp_jax.ops.base.xla_gemm")
    if name in _REGISTRY and not replace:
        raise ValueError(f"GEMM implementation {name!r} is already registered (the order is "
                         f"{tuple(_ORDER)}); pass replace=True to replace it in its place")
    if precisions is not None:
        if isinstance(precisions, str):
            precisions = (precisions,)
        if len(precisions) == 0:
            raise ValueError(f"register_gemm_implementation({name!r}): precisions=[] runs "
                             "nothing; name the precisions it runs, or None for all")
        unknown = [p for p in precisions if p not in PRECISIONS]
        if unknown:
            options = {p: _option_precision(p) for p in unknown}
            hint = "".join(f"; {p!r} is an option of precision {q!r} (which covers every "
                           "option of it: decline the others with NotImplementedError)"
                           for p, q in options.items() if q is not None)
            raise ValueError(f"register_gemm_implementation({name!r}): precisions {unknown} are "
                             f"not precision names; expected names from {PRECISIONS}{hint}")
    _REGISTRY[name] = _Registered(fn, takes_fused_input, automatic,
                                  None if precisions is None else frozenset(precisions))
    if name in _ORDER and not first:
        return  # a replacement keeps its place
    if name in _ORDER:
        _ORDER.remove(name)
    _ORDER.insert(0, name) if first else _ORDER.append(name)


def _option_precision(name) -> str | None:
    """The precision of an option name ('int8-dynamic' -> 'int8'), or None for no option."""
    try:
        return as_precision(name).precision
    except Exception:  # noqa: BLE001  (any name as_precision refuses)
        return None


def implementation_key() -> str:
    """What decides which implementation an automatic `gemm` call (`implementation=None`) runs,
    as one string: the automatic implementations in order, each with its function and the
    precisions it runs, and the registered fused ops. A latency table measured under another
    key timed other code (`calibrate.search.latency.table_name`)."""
    gemms = [f"{name}={_callable_name(_REGISTRY[name].fn)}"
             f"[{','.join(sorted(_REGISTRY[name].precisions or ('*',)))}]" for name in implementations()]
    fused = [f"{name}={_callable_name(fn)}" for name, fn in sorted(registered_fused_ops().items())]
    return ";".join(gemms) + "|" + ";".join(fused)


_BUILT_IN_KEY: list[str] = []  # `implementation_key()` once `samp_jax.ops` registered its own


def implementation_digest() -> str:
    """'' while the registered implementations are samp-jax's own (as `samp_jax.ops` registers
    them), else a short digest of `implementation_key()`."""
    key = implementation_key()
    if _BUILT_IN_KEY and key == _BUILT_IN_KEY[0]:
        return ""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _callable_name(fn, depth: int = 0) -> str:
    """What `fn` is, the same in every process: `module.qualname` of a function or class; of a
    `functools.partial`, its function with its arguments; of an instance, its class with its
    attributes (`Impl(tile=64)` and `Impl(tile=128)` run other code). Values are described
    alike, never by a `repr` that holds a memory address."""
    if isinstance(fn, functools.partial):
        arguments = [_callable_name(v, depth + 1) for v in fn.args] + [
            f"{k}={_callable_name(v, depth + 1)}" for k, v in sorted(fn.keywords.items())]
        return f"partial({_callable_name(fn.func, depth + 1)};{','.join(arguments)})"
    if fn is None or isinstance(fn, (bool, int, float, complex, str, bytes)):
        return repr(fn)
    if isinstance(fn, (tuple, list, frozenset, set)):
        items = sorted(map(repr, fn)) if isinstance(fn, (set, frozenset)) else [
            _callable_name(v, depth + 1) for v in fn]
        return f"{type(fn).__name__}({','.join(items)})"
    if isinstance(fn, dict):
        return "{" + ",".join(f"{k!r}:{_callable_name(v, depth + 1)}"
                              for k, v in sorted(fn.items(), key=lambda kv: repr(kv[0]))) + "}"
    if hasattr(fn, "__qualname__"):  # a function, method or class
        return f"{getattr(fn, '__module__', '?')}.{fn.__qualname__}"
    kind = type(fn)
    name = f"{getattr(kind, '__module__', '?')}.{kind.__qualname__}"
    attributes = getattr(fn, "__dict__", None)
    if depth > 3 or not attributes:
        return name
    return name + "(" + ",".join(f"{k}={_callable_name(v, depth + 1)}"
                                 for k, v in sorted(attributes.items())) + ")"


def report_kernel(name: str) -> None:
    """Called by an implementation that picks one of several kernels, as it runs one: `name`
    (e.g. `pallas_triton`) is then recorded as what ran instead of the implementation's own."""
    _THREAD.kernel_ran = name


@contextlib.contextmanager
def record_executions() -> Iterator[list[GemmExecution]]:
    """Collects a `GemmExecution` for every `gemm` call traced inside the block by this thread
    (calls are traced once per compilation: trace a fresh function, e.g. with
    `jax.eval_shape`); another thread's traces go to its own blocks."""
    records: list[GemmExecution] = []
    _THREAD.recorders.append(records)
    try:
        yield records
    finally:
        _THREAD.recorders.remove(records)


def _handles(name: str, precision: SitePrecision) -> bool:
    supported = _REGISTRY[name].precisions
    return supported is None or precision.precision in supported


def _report(site: str | None, precision: SitePrecision, weight, executed: str,
            declined: list[str]) -> None:
    """Records one traced call, and logs a site's first fallback once."""
    k, n = (int(d) for d in weight.shape)
    record = GemmExecution(site, str(precision), k, n, executed, tuple(declined))
    for records in _THREAD.recorders:
        records.append(record)
    key = (site, record.precision, k, n, executed)
    if declined and key not in _LOGGED:
        _LOGGED.add(key)
        level = logging.WARNING if jax.default_backend() == "gpu" else logging.INFO
        logger.log(level, "GEMM site %s at %s (K=%d, N=%d) ran on %s after %s",
                   site or "(unnamed)", precision, k, n, executed, "; ".join(declined))


def report_matmul(site: str | None, precision: str, k: int, n: int, executed: str) -> None:
    """Records a matmul that does not run through `gemm` (an attention product a precision map
    names: `"3.attn_scores"`) to the active `record_executions()` blocks, as a `GemmExecution`
    of depth `k` and width `n` that `executed` (`xla`, `cudnn`) ran."""
    record = GemmExecution(site, precision, int(k), int(n), executed)
    for records in _THREAD.recorders:
        records.append(record)


def implementations() -> tuple[str, ...]:
    """Implementation names in the order `implementation=None` tries them."""
    return tuple(name for name in _ORDER if _REGISTRY[name].automatic)


def check_implementation(implementation: str | None, *, where: str = "implementation") -> None:
    """Raises ValueError naming `where` unless `implementation` is None or a registered name
    (automatic or not)."""
    if implementation is not None and implementation not in _REGISTRY:
        raise ValueError(f"{where}={implementation!r} is not a registered GEMM implementation; "
                         f"expected None or one of {tuple(_ORDER)}")


def site_implementation(implementation: str | None, precision: SitePrecision | str) -> str | None:
    """The implementation a site at `precision` runs when its model is pinned to
    `implementation`: the pinned one where it runs that precision, else `xla` (the reference,
    which runs every precision). A model pinned to `pallas` thus keeps its float and FP8
    sites on XLA; a single `gemm` call pinned to an implementation still fails loudly.

    Raises:
      ValueError: `implementation` is not registered.
    """
    if implementation is None:
        return None
    if implementation not in _REGISTRY:
        raise ValueError(f"{implementation=} is not one of {tuple(_ORDER)}")
    handled = _REGISTRY[implementation].precisions
    return implementation if handled is None or as_precision(precision).precision in handled else "xla"


def takes_fused_input(implementation: str | None) -> bool:
    """Whether a site pinned to `implementation` (None: automatic) may take pre-quantized
    INT8 input from a fused kernel."""
    check_implementation(implementation)
    return implementation is None or _REGISTRY[implementation].takes_fused_input


def gemm(x: jax.Array | QArray, weight: jax.Array | QArray, *, precision: SitePrecision | str,
         bias: jax.Array | None = None, activation: Activation = None,
         residual: jax.Array | None = None, act_scale: jax.Array | None = None,
         input_scale: jax.Array | None = None, out_dtype=None, out_scale=None,
         requantize_from=jnp.float32,
         implementation: str | Sequence[str] | None = None, site: str | None = None) -> jax.Array:
    """`act(x @ weight + bias) + residual` at the given precision.

    Args:
      x: `[..., K]` float activations, or for INT8 precisions an int8 `QArray` already
        quantized as the site would (per-token `[..., 1]` or per-tensor scale).
      weight: `[K, N]` float kernel for float precisions, or a `QArray` (INT8 per-channel or
        FP8 per-tensor) for quantized ones.
      precision: a `SitePrecision` or its name ('fp32', 'fp16', 'bf16', 'int8-dynamic',
        'int8-static', 'fp8_e4m3').
      bias: `[N]`, added in float32.
      activation: None or a name of `pallas_kernels.numerics.ACTIVATIONS` ('gelu',
        'gelu_tanh', 'quick_gelu', 'silu', 'tanh', 'relu').
      residual: `[..., N]`, added after the activation.
      act_scale: static activation scale (scalar) for 'int8-static' and 'fp8_e4m3': finite and
        at least `SCALE_EPS` (a concrete one is checked; a traced one under jit cannot be, and
        is the caller's to make -- calibration clamps scales to at least `SCALE_EPS`).
      input_scale: optional `[K]` per-input-channel multiplier applied to `x` before it is
        quantized (SmoothQuant migration, `1 / s`).
      out_dtype: output dtype; defaults to `x.dtype`. `int8` requantizes the output with the
        static `out_scale` (for a following static-INT8 GEMM), from the values rounded to
        `requantize_from`: the float dtype that GEMM would read were it handed float input,
        so that the hand-off gives its own numbers (`pallas_kernels.numerics.requantize`).
      implementation: None (try each automatic one in order), a name, or a sequence of names.
        A single named implementation that cannot handle the call raises.
      site: a label for records and logs (`record_executions`), e.g. `"3.ffn_in"`.

    Non-finite input propagates at every precision: for the quantized ones a row of `x`
    holding NaN or ±Inf gives an all-NaN output row (`pallas_kernels.numerics.quantize_rows`),
    in every implementation.

    Raises:
      ValueError: inconsistent shapes, a weight/scale that does not fit the precision, a
        concrete `act_scale`/`out_scale` that is not finite and >= `SCALE_EPS`, or an INT8 GEMM
        deeper than `pallas_kernels.numerics.MAX_K` (its int32 accumulator could wrap).
      NotImplementedError: no requested implementation supports the call.
    """
    precision = as_precision(precision)
    if len(x.shape) < 1:  # x may be a QArray (pre-quantized input): its own shape
        raise ValueError(f"gemm: x has shape {tuple(x.shape)}, expected [..., K]")
    _validate(x, weight, precision, act_scale, input_scale)
    _validate_epilogue(x, weight, bias, residual)
    out_dtype = _output_dtype(x, out_dtype, out_scale)
    kwargs = dict(precision=precision, bias=bias, activation=activation, residual=residual,
                  act_scale=act_scale, input_scale=input_scale, out_dtype=out_dtype,
                  out_scale=out_scale, requantize_from=requantize_from)
    errors = []
    for name in _candidate_names(implementation, precision):
        _THREAD.kernel_ran = None
        try:
            out = _REGISTRY[name].fn(x, weight, **kwargs)
        except NotImplementedError as e:
            if isinstance(implementation, str):
                raise
            errors.append(f"{name}: {e}")
            continue
        _report(site, precision, weight, _THREAD.kernel_ran or name, errors)
        return out
    raise NotImplementedError(f"no GEMM implementation handles {precision}: {errors}")


def _output_dtype(x, out_dtype, out_scale):
    """The checked output dtype: `x`'s unless given (a pre-quantized input must give one); an
    `out_scale` exactly for an INT8 output."""
    if isinstance(x, QArray) and out_dtype is None:
        raise ValueError("a pre-quantized (QArray) input needs an explicit out_dtype")
    out_dtype = jnp.dtype(out_dtype or x.dtype)
    if (out_dtype == jnp.int8) != (out_scale is not None):
        raise ValueError("out_scale is required exactly when out_dtype is int8")
    check_scale(out_scale, "out_scale")
    return out_dtype


def _candidate_names(implementation: str | Sequence[str] | None,
                     precision: SitePrecision) -> tuple[str, ...]:
    """The implementations `gemm` tries, in order: the one named, the ones listed, or every
    automatic one; a list passes by those that never handle `precision`."""
    if implementation is None:
        names = implementations()
    elif isinstance(implementation, str):
        names = (implementation,)
    else:
        names = tuple(implementation)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"implementation {unknown} is not one of {tuple(_ORDER)}")
    if not isinstance(implementation, str):
        names = tuple(n for n in names if _handles(n, precision)) or names
    return names


def quantize_activation(x: jax.Array | QArray, precision: SitePrecision, act_scale=None,
                        input_scale=None) -> tuple[jax.Array, jax.Array]:
    """Quantizes GEMM input `x` as `precision` says; returns `(qvalue, scale)`.

    A `QArray` input is already quantized (by a fused LayerNorm+quant or a requantizing
    epilogue) and passes through. Otherwise the scale is per row, `[..., 1]`, and NaN for a
    row holding a non-finite value (whose values are zeros): the epilogue then makes that
    output row NaN, as a float GEMM would (`pallas_kernels.numerics.quantize_rows`)."""
    if isinstance(x, QArray):
        return x.qvalue, x.scale
    if precision.precision == "fp8_e4m3":
        check_scale(act_scale, "act_scale")
        x = x.astype(jnp.float32)
        if input_scale is not None:
            x = x * input_scale.astype(jnp.float32)
        finite = row_finite(x)  # a saturating cast would turn ±Inf into ±448
        scale = jnp.broadcast_to(jnp.asarray(act_scale, jnp.float32), finite.shape)
        return quantize_fp8(jnp.where(finite, x, 0.0), act_scale), jnp.where(finite, scale, jnp.nan)
    static = precision.activation == "per_tensor_static"
    return quantize_rows(x, act_scale=act_scale if static else None, input_scale=input_scale)


def _validate(x, weight, precision: SitePrecision, act_scale, input_scale) -> None:
    k = x.shape[-1]
    if isinstance(x, QArray):
        if precision.precision != "int8" or x.qtype != "int8":
            raise ValueError(f"a pre-quantized input must be an int8 QArray for an int8 site, "
                             f"got a {x.qtype} QArray at {precision}")
        if x.scale.ndim and x.scale.shape != (*x.shape[:-1], 1):
            raise ValueError(f"a pre-quantized input's scale must be per-token [..., 1] or "
                             f"per-tensor [], got {x.scale.shape} for values {x.shape}")
        return _validate_weight(k, weight, precision)
    if not precision.is_quantized and isinstance(weight, QArray):
        raise ValueError(f"precision {precision} needs a float weight, got a {weight.qtype} QArray")
    _validate_weight(k, weight, precision)
    if precision.needs_calibration and act_scale is None:
        raise ValueError(f"precision {precision} needs a static act_scale (run calibration)")
    if precision.needs_calibration and jnp.size(act_scale) != 1:
        raise ValueError(f"act_scale must be one per-tensor scale at {precision}, got shape "
                         f"{tuple(jnp.shape(act_scale))}")
    check_scale(act_scale, "act_scale")
    if input_scale is not None and tuple(input_scale.shape) != (k,):
        raise ValueError(f"input_scale has shape {tuple(input_scale.shape)}, expected ({k},)")


def _validate_weight(k: int, weight, precision: SitePrecision) -> None:
    if precision.is_quantized and (not isinstance(weight, QArray) or weight.qtype != precision.precision):
        found = f"a {weight.qtype} QArray" if isinstance(weight, QArray) else \
            f"a {type(weight).__name__} of dtype {getattr(weight, 'dtype', '?')}"
        raise ValueError(f"gemm: precision {precision} needs weight as a {precision.precision} "
                         f"QArray (samp_jax.core.primitives.quantize_weight_{precision.precision}"
                         f"), got {found}")
    if len(weight.shape) != 2 or weight.shape[0] != k:
        raise ValueError(f"gemm: weight has shape {tuple(weight.shape)}, expected [K={k}, N] "
                         f"(K: the size of x's last axis)")


def _validate_epilogue(x, weight, bias, residual) -> None:
    """bias is [N] and residual has the output's shape `[..., N]`."""
    n = weight.shape[1]
    if bias is not None and tuple(jnp.shape(bias)) != (n,):
        raise ValueError(f"gemm: bias has shape {tuple(jnp.shape(bias))}, expected ({n},) (N: the "
                         "size of weight's last axis)")
    out = (*x.shape[:-1], n)
    if residual is not None and tuple(jnp.shape(residual)) != out:
        raise ValueError(f"gemm: residual has shape {tuple(jnp.shape(residual))}, expected {out} "
                         "(the output's: x's leading axes, then N)")
