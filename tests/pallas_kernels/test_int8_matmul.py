"""The Pallas INT8 GEMMs (Mosaic GPU wgmma and Triton): numerics, implementation choice, configs.

Every numerical check is written once in `Int8MatmulChecks` and runs twice: in interpret mode
on the CPU (`TestInterpret`; the Mosaic kernel under GPU interpret mode, which simulates TMA,
barriers and wgmma) and compiled on a GPU (`TestCompiled`, marked `gpu`). The int32
accumulator must equal an int64 numpy matmul bit for bit, and every epilogue must match
`int8_matmul_reference` within its dtype's tolerance. Cross-lowering for CUDA (an abstract
H100 or A100, no GPU needed) checks "it lowers, and it is the kernel we meant".

Nothing here imports `samp_jax`: the model-level wiring is tested in tests/samp_jax/ops.
"""

import contextlib
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.mosaic.gpu import core as mosaic_gpu_core

from pallas_kernels import devices, numerics
from pallas_kernels.gpu_lowering import A100, H100, gpu_kernel_calls, lower_for_gpu
from pallas_kernels.int8_matmul import (
    ENV_VAR,
    IMPLEMENTATIONS,
    KERNEL_NAME,
    MOSAIC_KERNEL_NAME,
    Config,
    MosaicConfig,
    NoImplementationError,
    WS_KERNEL_NAME,
    WsConfig,
    TunedTableError,
    default_order,
    heuristic,
    int8_matmul,
    int8_matmul_reference,
    is_hopper,
    mosaic_heuristic,
)
from pallas_kernels.int8_matmul import base, mosaic, mosaic_ws
from pallas_kernels.int8_matmul.tuning import candidates, choose, record, tune, tuned
from tests import numerics_reference

IMPLS = ("triton", "mosaic")
KERNEL_NAMES = {"triton": KERNEL_NAME, "mosaic": MOSAIC_KERNEL_NAME}
# Epilogue tolerances by output dtype (the accumulator itself is compared exactly).
TOLERANCE = {jnp.float16: 1e-2, jnp.bfloat16: 6e-2, jnp.float32: 1e-5}


@pytest.fixture(autouse=True)
def _no_kernel_override(monkeypatch):
    """Each test sees the device's default order unless it sets the variable itself."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def _operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.integers(-127, 128, size=(m, k)), jnp.int8)
    w = jnp.asarray(rng.integers(-127, 128, size=(k, n)), jnp.int8)
    xs = jnp.asarray(rng.uniform(1e-3, 2e-2, size=(m, 1)), jnp.float32)
    ws = jnp.asarray(rng.uniform(1e-3, 2e-2, size=(n,)), jnp.float32)
    return x, w, xs, ws


def _exact(x, w):
    return np.asarray(x, np.int64) @ np.asarray(w, np.int64)


def _kernels_in(jaxpr: str) -> list[str]:
    """The names of our pallas_calls in a jaxpr (`name=samp_...`)."""
    return [name for name in re.findall(r"\bname=(\w+)", jaxpr) if name.startswith("samp_")]


class Int8MatmulChecks:
    """The numerical checks of both kernels; a subclass sets `INTERPRET`."""

    INTERPRET: bool

    def runnable(self, impl: str) -> bool:
        """Compiled, the Mosaic kernel needs a Hopper GPU; interpreted, it runs anywhere."""
        return self.INTERPRET or not impl.startswith("mosaic") or is_hopper(jax.devices()[0].device_kind)

    def matmul(self, *args, implementation, **kwargs):
        if not self.runnable(implementation):
            pytest.skip(f"the {implementation} kernel needs a Hopper GPU")
        return int8_matmul(*args, implementation=implementation, interpret=self.INTERPRET, **kwargs)

    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("m, k, n", [(1, 384, 128), (7, 768, 256), (16, 1536, 128),
                                         (130, 384, 384), (33, 3072, 128)])
    def test_int32_accumulator_is_exact(self, impl, m, k, n):
        x, w, xs, ws = _operands(m, k, n)
        acc = self.matmul(x, w, xs, ws, out_dtype=jnp.int32, implementation=impl)
        np.testing.assert_array_equal(np.asarray(acc), _exact(x, w))

    @pytest.mark.parametrize("impl", IMPLS)
    def test_accumulator_extremes_do_not_overflow_or_saturate(self, impl):
        """All -127 x 127 over K=3072: |acc| = 49.5M, far inside int32, exactly represented."""
        m, k, n = 64, 3072, 128
        x = jnp.full((m, k), -127, jnp.int8)
        w = jnp.full((k, n), 127, jnp.int8)
        xs, ws = jnp.ones((m, 1), jnp.float32), jnp.ones((n,), jnp.float32)
        acc = self.matmul(x, w, xs, ws, out_dtype=jnp.int32, implementation=impl)
        assert int(acc.min()) == int(acc.max()) == -127 * 127 * k

    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("activation", [None, "gelu"])
    @pytest.mark.parametrize("out_dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
    def test_epilogue_matches_reference(self, impl, activation, out_dtype):
        self._check_epilogue(impl, activation, out_dtype)

    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("activation", ["silu", "quick_gelu"])
    def test_sigmoid_epilogues_match_reference(self, impl, activation):
        self._check_epilogue(impl, activation, jnp.float32)

    def _check_epilogue(self, impl, activation, out_dtype):
        m, k, n = 70, 384, 256
        x, w, xs, ws = _operands(m, k, n, seed=1)
        rng = np.random.default_rng(2)
        bias = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
        residual = jnp.asarray(rng.normal(size=(m, n)), out_dtype)
        kwargs = dict(bias=bias, activation=activation, residual=residual, out_dtype=out_dtype)
        out = self.matmul(x, w, xs, ws, implementation=impl, **kwargs)
        ref = int8_matmul_reference(x, w, xs, ws, **kwargs)
        assert out.dtype == out_dtype and out.shape == (m, n)
        tol = TOLERANCE[out_dtype]
        np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32),
                                   rtol=tol, atol=tol)

    @pytest.mark.parametrize("impl", IMPLS)
    def test_int8_requantized_output(self, impl):
        x, w, xs, ws = _operands(40, 768, 128, seed=3)
        scale = jnp.asarray(0.05, jnp.float32)  # a traced model value, not a Python constant
        out = self.matmul(x, w, xs, ws, activation="gelu", out_dtype=jnp.int8, out_scale=scale,
                          implementation=impl)
        ref = int8_matmul_reference(x, w, xs, ws, activation="gelu", out_dtype=jnp.int8, out_scale=0.05)
        assert out.dtype == jnp.int8
        diff = np.abs(np.asarray(out, np.int32) - np.asarray(ref, np.int32))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # only exact .5 ties may differ

    @pytest.mark.parametrize("impl", (*IMPLS, "mosaic_ws"))
    @pytest.mark.parametrize("rounded_to", [jnp.float16, jnp.bfloat16])
    def test_requantizing_from_16_bits_gives_what_the_next_site_quantizes(self, impl, rounded_to):
        """The INT8 hand-off from `ffn_in` to a static `ffn_out` (`requantize_from`): the
        kernel's INT8 output is what `ffn_out` would quantize itself from `ffn_in`'s 16-bit
        output. Requantizing the float32 values instead differs in about 0.3% (FP16) and 3%
        (BF16) of them."""
        m, k, n = 64, 256, 256
        x, w, xs, ws = _operands(m, k, n, seed=8)
        bias = jnp.asarray(np.random.default_rng(9).normal(size=(n,)), jnp.float32)
        kwargs = dict(bias=bias, activation="gelu")
        y16 = int8_matmul_reference(x, w, xs, ws, out_dtype=rounded_to, **kwargs)
        scale = jnp.asarray(np.percentile(np.abs(np.asarray(y16, np.float32)), 99) / 127, jnp.float32)
        unfused = np.asarray(numerics.quantize_rows(y16, act_scale=scale)[0], np.int64)
        config = WsConfig(tile_m=64, tile_n=128, tile_k=64) if impl == "mosaic_ws" else None
        out = self.matmul(x, w, xs, ws, out_dtype=jnp.int8, out_scale=scale, implementation=impl,
                          requantize_from=rounded_to, config=config, **kwargs)
        ref = int8_matmul_reference(x, w, xs, ws, out_dtype=jnp.int8, out_scale=scale,
                                    requantize_from=rounded_to, **kwargs)
        np.testing.assert_array_equal(np.asarray(ref, np.int64), unfused)  # the reference: exact
        diff = np.abs(np.asarray(out, np.int64) - unfused)
        # the kernel's float32 may differ in its last bit, which moves a rare 16-bit rounding
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, (diff != 0).mean()

    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("out_dtype", [jnp.float16, jnp.int8])
    def test_relu_epilogue_matches_reference(self, impl, out_dtype):
        """ReLU (DistilBERT's classifier head and `activation="relu"` FFNs), after the bias and
        before the residual, so negative pre-activations add exactly the residual."""
        m, k, n = 40, 384, 128
        x, w, xs, ws = _operands(m, k, n, seed=4)
        rng = np.random.default_rng(5)
        bias = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
        residual = None if out_dtype == jnp.int8 else jnp.asarray(rng.normal(size=(m, n)), out_dtype)
        out_scale = 0.05 if out_dtype == jnp.int8 else None
        kwargs = {"bias": bias, "activation": "relu", "residual": residual, "out_dtype": out_dtype,
                  "out_scale": out_scale}
        out = self.matmul(x, w, xs, ws, implementation=impl, **kwargs)
        ref = int8_matmul_reference(x, w, xs, ws, **kwargs)
        pre = int8_matmul_reference(x, w, xs, ws, bias=bias, out_dtype=jnp.float32)
        assert out.dtype == out_dtype and (np.asarray(pre) < 0).mean() > 0.3  # ReLU clips a lot
        if out_dtype == jnp.int8:
            diff = np.abs(np.asarray(out, np.int32) - np.asarray(ref, np.int32))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # only exact .5 ties may differ
            assert int(np.asarray(out).min()) >= 0
        else:
            np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32),
                                       rtol=TOLERANCE[out_dtype], atol=TOLERANCE[out_dtype])
            clipped = np.asarray(pre) < 0
            np.testing.assert_array_equal(np.asarray(out)[clipped], np.asarray(residual)[clipped])

    @pytest.mark.parametrize("impl", IMPLS)
    def test_the_named_kernel_runs(self, impl):
        x, w, xs, ws = _operands(8, 384, 128)
        if not self.runnable(impl):
            pytest.skip(f"the {impl} kernel needs a Hopper GPU")
        jaxpr = str(jax.make_jaxpr(lambda x: int8_matmul(
            x, w, xs, ws, implementation=impl, interpret=self.INTERPRET))(x))
        assert _kernels_in(jaxpr) == [KERNEL_NAMES[impl]]

    def test_random_shapes_and_scales_property(self):
        """Random shapes (M not a multiple of any tile), tiles and scale magnitudes, both kernels."""
        rng = np.random.default_rng(7)
        for trial in range(6):
            impl = IMPLS[trial % 2]
            m = int(rng.integers(1, 200))
            k = int(rng.choice([384, 768, 1536]))
            n = int(rng.choice([128, 256, 384]))
            x, w, xs, ws = _operands(m, k, n, seed=100 + trial)
            xs = xs * float(rng.uniform(0.1, 10))
            ws = ws * float(rng.uniform(0.1, 10))
            if impl == "triton":
                config = Config(block_m=int(rng.choice([16, 32, 64])), block_n=128,
                                block_k=int(rng.choice([64, 128])))
            else:
                config = MosaicConfig(tile_m=int(rng.choice([64, 128])), tile_n=128,
                                      tile_k=int(rng.choice([64, 128])), max_concurrent_steps=2)
            if not self.runnable(impl):
                continue
            kw = dict(implementation=impl, config=config)
            acc = self.matmul(x, w, xs, ws, out_dtype=jnp.int32, **kw)
            np.testing.assert_array_equal(np.asarray(acc), _exact(x, w), err_msg=f"{impl} {m}x{k}x{n}")
            out = self.matmul(x, w, xs, ws, out_dtype=jnp.float32, **kw)
            ref = int8_matmul_reference(x, w, xs, ws, out_dtype=jnp.float32)
            np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)

    def test_automatic_choice_falls_back_from_mosaic_to_triton(self, monkeypatch):
        """With Mosaic first, a shape it cannot tile goes to Triton, not to an error."""
        monkeypatch.setenv(ENV_VAR, "mosaic")
        x, w, xs, ws = _operands(8, 384, 96)  # N=96: neither Mosaic (tile_n 64k) nor Triton tiles it
        with pytest.raises(NotImplementedError, match="mosaic: .*triton: .*block_n"):
            int8_matmul(x, w, xs, ws, interpret=self.INTERPRET)  # Triton can't either: a clear error
        x, w, xs, ws = _operands(8, 96, 128)  # K=96: Mosaic needs K % 64, Triton takes block_k=32
        acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, interpret=self.INTERPRET)
        np.testing.assert_array_equal(np.asarray(acc), _exact(x, w))


    @pytest.mark.parametrize("m, k, n", [(200, 256, 512), (64, 128, 256), (1, 384, 256)])
    def test_the_warp_specialized_kernel_is_exact(self, m, k, n):
        """More output tiles than (interpret-mode) SMs: the persistent loop takes turns."""
        if not self.runnable("mosaic"):
            pytest.skip("the warp-specialized kernel needs a Hopper GPU")
        x, w, xs, ws = _operands(m, k, n)
        config = WsConfig(tile_m=64, tile_n=64, tile_k=64) if not self.INTERPRET or m < 100 else None
        acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, implementation="mosaic_ws",
                          config=config, interpret=self.INTERPRET)
        np.testing.assert_array_equal(np.asarray(acc), _exact(x, w))

    @pytest.mark.parametrize("activation, out_dtype, residual_dtype, epi_tile_n", [
        # the fast run keeps each output dtype, each activation and both residual widths;
        # the others are slow (seconds each in interpret mode)
        ("gelu", jnp.float16, None, 32), ("relu", jnp.bfloat16, jnp.bfloat16, 16),
        ("tanh", jnp.float32, jnp.float32, 16), ("gelu", jnp.int8, None, 32),
        (None, jnp.int8, jnp.float32, 32),
        *(pytest.param(*case, marks=pytest.mark.slow) for case in [
            (None, jnp.float32, None, 32), ("relu", jnp.bfloat16, None, 32),
            ("gelu", jnp.float16, jnp.float16, 16), ("gelu", jnp.float16, jnp.float32, 32),
            ("relu", jnp.int8, jnp.float16, 32)])])
    def test_the_warp_specialized_epilogue_matches_reference(self, activation, out_dtype,
                                                             residual_dtype, epi_tile_n):
        """Bias, activation, then the residual, as a float or a requantized INT8 output. 4 x 2
        output tiles (M padded) for 3 interpret-mode SMs: the persistent loop takes turns,
        reusing its buffers and barriers; 4 or 8 store slices per consumer tile: the two
        residual slots are reloaded within a tile. A NaN row scale gives a NaN row (INT8: 0)."""
        if not self.runnable("mosaic"):
            pytest.skip("the warp-specialized kernel needs a Hopper GPU")
        m, k, n = 200, 256, 512
        x, w, xs, ws = _operands(m, k, n, seed=6)
        xs = xs.at[7].set(jnp.nan)
        rng = np.random.default_rng(3)
        bias = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
        residual = None if residual_dtype is None else jnp.asarray(rng.normal(size=(m, n)), residual_dtype)
        kwargs = dict(bias=bias, activation=activation, residual=residual)
        y = int8_matmul_reference(x, w, xs, ws, out_dtype=jnp.float32, **kwargs)
        if out_dtype == jnp.int8:  # clips the largest 1%; a traced scale, not a constant
            kwargs["out_scale"] = jnp.asarray(np.nanpercentile(np.abs(np.asarray(y)), 99) / 127, jnp.float32)
        config = WsConfig(tile_m=64, tile_n=128, tile_k=64, epi_tile_n=epi_tile_n)
        out = int8_matmul(x, w, xs, ws, implementation="mosaic_ws", interpret=self.INTERPRET,
                          config=config, out_dtype=out_dtype, **kwargs)
        ref = int8_matmul_reference(x, w, xs, ws, out_dtype=out_dtype, **kwargs)
        assert out.dtype == out_dtype and out.shape == (m, n)
        if out_dtype != jnp.int8:
            np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32),
                                       rtol=TOLERANCE[out_dtype], atol=TOLERANCE[out_dtype])
            assert np.isnan(np.asarray(out, np.float32)[7]).all()
            return
        q, q_ref = np.asarray(out, np.int64), np.asarray(ref, np.int64)
        assert (np.abs(q_ref) == 127).mean() > 0.005 and not q[7].any()
        # only values within float32 rounding of a .5 tie may round the other way
        tie = numerics_reference.near_tie(np.asarray(y), np.asarray(kwargs["out_scale"]))
        assert np.abs(q - q_ref).max() <= 1, np.abs(q - q_ref).max()
        assert not ((q != q_ref) & ~tie).any(), f"{int(((q != q_ref) & ~tie).sum())} INT8 values differ"


class TestInterpret(Int8MatmulChecks):
    INTERPRET = True


@pytest.mark.gpu
class TestCompiled(Int8MatmulChecks):
    INTERPRET = False


# Validation, implementation choice and configs: nothing below runs a kernel body.


def test_the_race_detector_catches_a_planted_race(monkeypatch, mosaic_races):
    """The interpret-mode tests run the Mosaic kernels with the race detector on and fail on a
    race (`mosaic_races`, tests/conftest.py). Planted: the warp-specialized kernel's store no
    longer waits for the TMA store two slices back before it rewrites that slot, so the TMA
    engine reads a slot the warpgroup is writing. Without the plant, the same call is clean."""
    x, w, xs, ws = _operands(128, 128, 256)
    rng = np.random.default_rng(0)
    kwargs = dict(bias=jnp.asarray(rng.normal(size=(256,)), jnp.float32), activation="gelu",
                  residual=jnp.asarray(rng.normal(size=(128, 256)), jnp.float16),
                  implementation="mosaic_ws", interpret=True,
                  config=WsConfig(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=2, epi_tile_n=16))
    int8_matmul(x, w, xs, ws, **kwargs).block_until_ready()
    assert mosaic_races and not any(state.races_found for state in mosaic_races)
    wait = mosaic_ws.plgpu.wait_smem_to_gmem

    def planted(n, *args, **kw):  # drops the "slot is free again" wait, keeps the others
        return None if n == 1 else wait(n, *args, **kw)
    monkeypatch.setattr(mosaic_ws.plgpu, "wait_smem_to_gmem", planted)
    del mosaic_races[:]
    out = int8_matmul(x, w, xs, ws, **kwargs).block_until_ready()
    jax.effects_barrier()
    assert out.shape == (128, 256) and mosaic_races
    assert any(state.races_found for state in mosaic_races)
    del mosaic_races[:]  # found, as it should be: not this test's failure


def test_bad_inputs_raise_value_error():
    x, w, xs, ws = _operands(8, 384, 128)
    with pytest.raises(ValueError, match="must be int8"):
        int8_matmul(x.astype(jnp.float16), w, xs, ws, interpret=True)
    with pytest.raises(ValueError, match=r"x_q must be \[M, K\]"):
        int8_matmul(x[None], w, xs, ws, interpret=True)
    with pytest.raises(ValueError, match="K=384 but w_q has K=128"):
        int8_matmul(x, w[:128], xs, ws, interpret=True)
    with pytest.raises(ValueError, match="scales must be"):
        int8_matmul(x, w, xs[:4], ws, interpret=True)
    with pytest.raises(ValueError, match="bias must be"):
        int8_matmul(x, w, xs, ws, bias=ws[:64], interpret=True)
    with pytest.raises(ValueError, match="out_scale is required"):
        int8_matmul(x, w, xs, ws, out_dtype=jnp.int8, interpret=True)
    with pytest.raises(ValueError, match="implementation="):
        int8_matmul(x, w, xs, ws, implementation="cutlass", interpret=True)
    with pytest.raises(ValueError, match="implementation="):
        int8_matmul(x, w, xs, ws, implementation=("triton", "cutlass"), interpret=True)
    with pytest.raises(ValueError, match="residual must be"):
        int8_matmul(x, w[:, :64], xs, ws[:64], residual=jnp.zeros((8, 32)), interpret=True)


def test_a_config_pins_its_implementation():
    x, w, xs, ws = _operands(8, 384, 128)
    with pytest.raises(ValueError, match="MosaicConfig needs implementation='mosaic'"):
        int8_matmul(x, w, xs, ws, implementation="triton", config=MosaicConfig(), interpret=True)
    with pytest.raises(ValueError, match="Config needs implementation='triton'"):
        int8_matmul(x, w, xs, ws, implementation=("mosaic", "triton"), config=Config(), interpret=True)
    with pytest.raises(ValueError, match=r"config must be one of \['MosaicConfig', 'Config', 'WsConfig'\]"):
        int8_matmul(x, w, xs, ws, config={"block_m": 16}, interpret=True)
    # With implementation=None the config's own implementation runs (and only it).
    acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, config=MosaicConfig(tile_m=64),
                      interpret=True)
    np.testing.assert_array_equal(np.asarray(acc), _exact(x, w))


def test_configs_reject_bad_tiles():
    with pytest.raises(ValueError, match="power of two"):
        Config(block_m=48)
    with pytest.raises(ValueError, match="tile_m"):
        MosaicConfig(tile_m=32)
    with pytest.raises(ValueError, match="accumulator budget"):
        MosaicConfig(tile_m=128, tile_n=256)


@pytest.mark.parametrize("impl, reason", [("triton", "n=100"),
                                          ("mosaic", "Mosaic INT8 GEMM cannot tile")])
def test_a_named_implementation_that_cannot_tile_raises(impl, reason):
    """Named alone, an implementation reports its own reason (`samp_jax.gemm` then uses XLA)."""
    x, w, xs, ws = _operands(8, 384, 100)
    with pytest.raises(NotImplementedError, match=reason):
        int8_matmul(x, w, xs, ws, implementation=impl, interpret=True)


def test_a_sequence_of_implementations_reports_every_reason():
    x, w, xs, ws = _operands(8, 384, 100)
    with pytest.raises(NotImplementedError, match=r"\('mosaic', 'triton'\).*mosaic: .*triton: ") as info:
        int8_matmul(x, w, xs, ws, implementation=("mosaic", "triton"), interpret=True)
    # every failure, raised together
    assert isinstance(info.value, NoImplementationError) and isinstance(info.value, ExceptionGroup)
    assert [type(e) for e in info.value.exceptions] == [NotImplementedError, NotImplementedError]
    assert "tile_n=64" in str(info.value.exceptions[0]) and "block_n" in str(info.value.exceptions[1])


def test_mosaic_declines_off_hopper():
    """Compiled (not interpreted), the wgmma kernel needs sm_90: named alone it says so."""
    x, w, xs, ws = _operands(8, 384, 128)
    S = jax.ShapeDtypeStruct
    fn = lambda *a: int8_matmul(*a, implementation="mosaic")  # noqa: E731
    with pytest.raises(NotImplementedError, match="needs a Hopper GPU.*A100"):
        lower_for_gpu(fn, S(x.shape, x.dtype), S(w.shape, w.dtype), S(xs.shape, xs.dtype),
                      S(ws.shape, ws.dtype), device_kind=A100)


@pytest.mark.parametrize("m, k, n", [(0, 384, 128), (8, 0, 128), (8, 384, 0)])
@pytest.mark.parametrize("impl", [None, *IMPLS])
def test_empty_operands_raise_not_implemented(impl, m, k, n):
    x, w, xs, ws = _operands(m, k, n)
    with pytest.raises(NotImplementedError, match=f"M={m}, N={n}, K={k}"):
        int8_matmul(x, w, xs, ws, implementation=impl, interpret=True)


def test_default_order_by_device():
    assert default_order(H100) == ("mosaic", "triton") == IMPLEMENTATIONS
    assert default_order("NVIDIA H200") == ("mosaic", "triton")
    assert default_order(A100) == ("triton",)
    assert default_order("cpu") == ("triton",)


def test_environment_variable_goes_first_and_is_validated(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "triton")
    assert default_order(H100) == ("triton", "mosaic")
    monkeypatch.setenv(ENV_VAR, "mosaic")
    assert default_order(A100) == ("mosaic", "triton")
    monkeypatch.setenv(ENV_VAR, "cublas")
    with pytest.raises(ValueError, match=f"{ENV_VAR}='cublas' is not one of"):
        default_order(H100)
    x, w, xs, ws = _operands(8, 384, 128)
    with pytest.raises(ValueError, match=ENV_VAR):
        int8_matmul(x, w, xs, ws, interpret=True)
    # A named implementation does not read the variable.
    acc = int8_matmul(x, w, xs, ws, out_dtype=jnp.int32, implementation="triton", interpret=True)
    np.testing.assert_array_equal(np.asarray(acc), _exact(x, w))


def test_the_warp_specialized_kernel_runs_only_when_named():
    """Named, it runs every epilogue (a residual, an INT8 output, both); the automatic choice
    never picks it, on the CPU or on Hopper."""
    x, w, xs, ws = _operands(8, 256, 256)
    residual = jnp.zeros((8, 256), jnp.float16)
    for kwargs in (dict(residual=residual), dict(out_dtype=jnp.int8, out_scale=0.1),
                   dict(residual=residual, out_dtype=jnp.int8, out_scale=0.1)):
        def run(x, implementation, kwargs=kwargs):
            return int8_matmul(x, w, xs, ws, implementation=implementation, interpret=True, **kwargs)
        assert _kernels_in(str(jax.make_jaxpr(lambda x: run(x, "mosaic_ws"))(x))) == [WS_KERNEL_NAME]
        assert WS_KERNEL_NAME not in _kernels_in(str(jax.make_jaxpr(lambda x: run(x, None))(x)))
    assert "mosaic_ws" not in default_order(H100) and "mosaic_ws" not in IMPLEMENTATIONS
    fn = lambda *a: int8_matmul(*a, residual=residual, out_dtype=jnp.int8, out_scale=0.1)  # noqa: E731
    hlo = lower_for_gpu(fn, *(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, w, xs, ws)))
    assert MOSAIC_KERNEL_NAME in hlo and WS_KERNEL_NAME not in hlo


def test_the_warp_specialized_kernel_counts_its_epilogue_buffers_in_shared_memory():
    """The residual's slots count beside the store slots, in the call's dtypes; a call that
    does not fit in Hopper's 227 KiB is declined, and the heuristic and the candidates offer
    only configs that fit."""
    config = WsConfig()  # 128 x 256 CTA tiles, three 128-deep TMA buffers, 32-column slices
    slots = 2 * 2 * 128 * 32  # two consumers, two slots, [tile_m, epi_tile_n]
    assert config.smem_bytes(jnp.float16, jnp.float16) == config.smem_bytes(jnp.int32)
    assert config.smem_bytes(jnp.int8, jnp.float32) - config.smem_bytes(jnp.int8) == 4 * slots
    assert config.refuses(jnp.float16, jnp.float16) is None
    assert "shared memory" in config.refuses(jnp.float32, jnp.float32)
    assert "32-byte swizzle" in WsConfig(epi_tile_n=16).refuses(jnp.int8)
    with pytest.raises(ValueError, match="shared memory"):
        WsConfig(tile_m=128, tile_n=128, tile_k=128, max_concurrent_steps=5)
    shape = (4096, 768, 3072)  # BERT-base's FFN output at 4,096 tokens
    for out_dtype, residual_dtype in [(jnp.float16, jnp.float16), (jnp.float32, jnp.float32),
                                      (jnp.int8, jnp.float32), (jnp.int8, None)]:
        dtypes = dict(out_dtype=out_dtype, residual_dtype=residual_dtype)
        assert mosaic_ws.heuristic(*shape, **dtypes).refuses(out_dtype, residual_dtype) is None
        options = mosaic_ws.candidates(*shape, **dtypes)
        assert options and not any(c.refuses(out_dtype, residual_dtype) for c in options)
    wide = dict(out_dtype=jnp.float32, residual_dtype=jnp.float32)
    assert len(mosaic_ws.candidates(*shape, **wide)) < len(mosaic_ws.candidates(*shape))
    assert mosaic_ws.heuristic(*shape, **wide).epi_tile_n == 16
    x, w, xs, ws = _operands(8, 256, 256)
    with pytest.raises(NotImplementedError, match="declines this config.*shared memory"):
        int8_matmul(x, w, xs, ws, residual=jnp.zeros((8, 256)), out_dtype=jnp.float32,
                    implementation="mosaic_ws", config=config, interpret=True)


@pytest.mark.parametrize("out_dtype, residual_dtype, k, n", [
    (jnp.int32, None, 768, 3072), (jnp.float16, None, 768, 3072),  # FFN in: bias + GELU
    (jnp.float16, jnp.float16, 3072, 768), (jnp.float32, jnp.float32, 3072, 768),  # FFN out + residual
    (jnp.int8, None, 768, 3072), (jnp.int8, jnp.float16, 768, 768)])  # requantized for the next GEMM
def test_the_warp_specialized_kernel_lowers_for_hopper(monkeypatch, out_dtype, residual_dtype, k, n):
    """BERT-base sites at 4,096 tokens lower to the Mosaic GPU kernel (a traced out_scale),
    and the lowering allocates exactly the shared memory `WsConfig.smem_bytes` counts."""
    allocated, tree_size = [], mosaic_gpu_core._smem_tree_size  # the kernel's SMEM bytes
    monkeypatch.setattr(mosaic_gpu_core, "_smem_tree_size",
                        lambda tree: allocated.append(tree_size(tree)) or allocated[-1])
    S = jax.ShapeDtypeStruct
    requant = out_dtype == jnp.int8

    def fn(x, w, b, r, s):
        return int8_matmul(x, w, jnp.ones((4096, 1)), jnp.ones((n,)), bias=b, activation="gelu",
                           residual=r, out_dtype=out_dtype, out_scale=s if requant else None,
                           implementation="mosaic_ws")
    hlo = lower_for_gpu(fn, S((4096, k), jnp.int8), S((k, n), jnp.int8), S((n,), jnp.float32),
                        None if residual_dtype is None else S((4096, n), residual_dtype),
                        S((), jnp.float32))
    assert gpu_kernel_calls(hlo) == ["mosaic_gpu_v2"] and WS_KERNEL_NAME in hlo
    config = mosaic_ws.heuristic(4096, n, k, out_dtype=out_dtype, residual_dtype=residual_dtype)
    assert allocated[-1] == config.smem_bytes(out_dtype, residual_dtype) <= devices.HOPPER_SMEM_PER_BLOCK


@pytest.mark.parametrize("config, out_dtype, residual_dtype", [
    (MosaicConfig(), jnp.float32, jnp.float32),  # 128x128, four buffers: 266,312 bytes
    (MosaicConfig(), jnp.bfloat16, jnp.float32),  # 233,544 bytes
    (MosaicConfig(), jnp.int32, None),
    (MosaicConfig(tile_m=64, tile_n=256, max_concurrent_steps=3), jnp.int8, jnp.float16),
    (MosaicConfig(tile_m=128, tile_n=64, tile_k=64, max_concurrent_steps=2), jnp.float16, jnp.float16)])
def test_the_mosaic_kernel_counts_its_shared_memory_as_the_lowering_allocates_it(
        monkeypatch, config, out_dtype, residual_dtype):
    """`MosaicConfig.smem_bytes` is what the Mosaic GPU lowering allocates (and checks against
    Hopper's 227 KiB), byte for byte, whether or not it fits."""
    allocated, tree_size = [], mosaic_gpu_core._smem_tree_size
    monkeypatch.setattr(mosaic_gpu_core, "_smem_tree_size",
                        lambda tree: allocated.append(tree_size(tree)) or allocated[-1])
    m, n, k = 256, 512, 768
    S = jax.ShapeDtypeStruct
    requant = out_dtype == jnp.int8

    def fn(x, w_t, xs, ws, b, r):
        return mosaic.mosaic_int8_matmul(x, w_t, xs, ws, b, r, out_dtype=out_dtype, activation="gelu",
                                         out_scale=0.05 if requant else None, config=config)
    args = (S((m, k), jnp.int8), S((n, k), jnp.int8), S((m,), jnp.float32), S((n,), jnp.float32),
            S((n,), jnp.float32), None if residual_dtype is None else S((m, n), residual_dtype))
    needed = config.smem_bytes(out_dtype, residual_dtype)
    if needed > devices.HOPPER_SMEM_PER_BLOCK:
        with pytest.raises(ValueError, match=f"smem_bytes={needed} > max_smem_bytes=232448"):
            lower_for_gpu(fn, *args)
        assert "shared memory" in config.refuses(out_dtype, residual_dtype)
    else:
        assert MOSAIC_KERNEL_NAME in lower_for_gpu(fn, *args)
        assert config.refuses(out_dtype, residual_dtype) is None
    assert allocated[-1] == needed


def test_the_mosaic_heuristic_and_candidates_fit_the_calls_dtypes():
    """With an FP32 (or BF16) output and an FP32 residual, 128x128 tiles with four TMA buffers
    exceed Hopper's shared memory: the heuristic drops buffers until the call fits, and the
    candidates offer only configs that fit."""
    assert devices.HOPPER_SMEM_PER_BLOCK == 232448 == devices.by_name("h100").smem_per_block
    shape = (4096, 768, 3072)  # BERT-base's FFN output at 4,096 tokens
    assert mosaic_heuristic(*shape).max_concurrent_steps == 4  # the raw accumulator fits
    for out_dtype, residual_dtype in [(jnp.float32, jnp.float32), (jnp.bfloat16, jnp.float32),
                                      (jnp.float16, jnp.float16), (jnp.int8, jnp.float32),
                                      (jnp.float32, None), (jnp.int32, None)]:
        dtypes = dict(out_dtype=out_dtype, residual_dtype=residual_dtype)
        config = mosaic_heuristic(*shape, **dtypes)
        assert config.refuses(out_dtype, residual_dtype) is None, (config, dtypes)
        assert (config.tile_m, config.tile_n) == (128, 128)
        options = mosaic.candidates(*shape, **dtypes)
        assert options and not any(c.refuses(out_dtype, residual_dtype) for c in options)
    wide = dict(out_dtype=jnp.float32, residual_dtype=jnp.float32)
    assert mosaic_heuristic(*shape, **wide).max_concurrent_steps == 2
    assert len(mosaic.candidates(*shape, **wide)) < len(mosaic.candidates(*shape))


def test_a_mosaic_config_that_does_not_fit_is_declined():
    """An explicit config that cannot fit the call is declined with NotImplementedError naming
    the bytes and the limit (interpreted too: the GPU could not run it)."""
    x, w, xs, ws = _operands(8, 512, 128)
    residual = jnp.zeros((8, 128), jnp.float32)
    with pytest.raises(NotImplementedError, match="declines this config.*needs 266312 bytes.*232448"):
        int8_matmul(x, w, xs, ws, residual=residual, out_dtype=jnp.float32, implementation="mosaic",
                    config=MosaicConfig(), interpret=True)


def test_a_tuned_mosaic_config_that_does_not_fit_the_call_gives_way_to_the_heuristic(tmp_path, monkeypatch):
    """The tuned table is keyed by shape alone: its 128x128, four-buffer entry fits an FP16
    output without a residual, not an FP32 output with an FP32 residual, for which the
    heuristic's config (fewer buffers) runs on Mosaic instead of failing to lower."""
    monkeypatch.setattr(base, "TUNED_DIR", tmp_path)
    m, k, n = 4096, 3072, 768
    record("mosaic", H100, m, n, k, MosaicConfig(), tmp_path)
    S = jax.ShapeDtypeStruct
    args = (S((m, k), jnp.int8), S((k, n), jnp.int8), S((m, 1), jnp.float32), S((n,), jnp.float32),
            S((n,), jnp.float32))
    for out_dtype, residual_dtype, tuned_fits in [
            (jnp.float16, None, True), (jnp.float16, jnp.float16, True),
            (jnp.float32, jnp.float32, False), (jnp.bfloat16, jnp.float32, False)]:
        def fn(x, w, xs, ws, b, r, out_dtype=out_dtype):
            return int8_matmul(x, w, xs, ws, bias=b, activation="gelu", residual=r, out_dtype=out_dtype)
        residual = None if residual_dtype is None else S((m, n), residual_dtype)
        hlo = lower_for_gpu(fn, *args, residual)
        assert gpu_kernel_calls(hlo) == ["mosaic_gpu_v2"], (out_dtype, residual_dtype)
        assert (MosaicConfig().refuses(out_dtype, residual_dtype) is None) == tuned_fits
        # the same config given explicitly is declined (the automatic order then moves on)
        with pytest.raises(NotImplementedError, match="declines this config") if (
                not tuned_fits) else contextlib.nullcontext():
            lower_for_gpu(lambda *a, out_dtype=out_dtype: int8_matmul(
                *a[:4], bias=a[4], residual=a[5], out_dtype=out_dtype, implementation="mosaic",
                config=MosaicConfig()), *args, residual)


def test_heuristics_small_and_large_m():
    assert heuristic(8, 768, 768).block_m == 16
    assert heuristic(32768, 3072, 768).block_m == 128
    assert mosaic_heuristic(16, 768, 768).tile_m == 64
    assert mosaic_heuristic(32768, 3072, 768) == MosaicConfig(tile_m=128, tile_n=128, tile_k=128,
                                                             max_concurrent_steps=4)


# Cross-lowering for CUDA on the CPU: the whole Pallas → Triton IR / Mosaic GPU lowering runs.

_S = jax.ShapeDtypeStruct
_GELU_FFN_IN = (_S((200, 768), jnp.int8), _S((768, 3072), jnp.int8), _S((200, 1), jnp.float32),
                _S((3072,), jnp.float32), _S((3072,), jnp.float32), _S((200, 3072), jnp.float16))


@pytest.mark.parametrize("impl, call_target, name", [("triton", "__gpu$xla.gpu.triton", KERNEL_NAME),
                                                     ("mosaic", "mosaic_gpu_v2", MOSAIC_KERNEL_NAME),
                                                     ("mosaic_ws", "mosaic_gpu_v2", WS_KERNEL_NAME)])
@pytest.mark.parametrize("out_dtype", [jnp.float16, jnp.int8])
def test_kernels_lower_for_cuda(impl, call_target, name, out_dtype):
    """The whole Pallas lowering (Triton IR / Mosaic GPU MLIR) runs for an abstract H100."""
    out_scale = 0.05 if out_dtype == jnp.int8 else None

    def fn(x, w, xs, ws, b, r):
        return int8_matmul(x, w, xs, ws, bias=b, activation="gelu",
                           residual=None if out_scale else r, out_dtype=out_dtype,
                           out_scale=out_scale, requantize_from=jnp.float16, implementation=impl)

    hlo = lower_for_gpu(fn, *_GELU_FFN_IN)
    assert gpu_kernel_calls(hlo) == [call_target] and name in hlo


@pytest.mark.parametrize("impl, call_target", [("triton", "__gpu$xla.gpu.triton"),
                                               ("mosaic", "mosaic_gpu_v2")])
@pytest.mark.parametrize("activation", ["relu", "silu", "quick_gelu", "gelu_tanh"])
def test_other_epilogue_activations_lower_for_cuda(impl, call_target, activation):
    def fn(x, w, xs, ws, b, r):
        return int8_matmul(x, w, xs, ws, bias=b, activation=activation, residual=r,
                           implementation=impl)

    assert gpu_kernel_calls(lower_for_gpu(fn, *_GELU_FFN_IN)) == [call_target]


@pytest.mark.parametrize("device_kind, call_target", [(H100, "mosaic_gpu_v2"),
                                                      ("NVIDIA H800", "mosaic_gpu_v2"),
                                                      ("NVIDIA H200", "mosaic_gpu_v2"),
                                                      (A100, "__gpu$xla.gpu.triton")])
def test_the_automatic_choice_lowers_the_device_default(device_kind, call_target):
    """implementation=None: Mosaic on Hopper, Triton elsewhere (the registry order)."""
    def fn(x, w, xs, ws, b, r):
        return int8_matmul(x, w, xs, ws, bias=b, activation="gelu", residual=r)

    assert gpu_kernel_calls(lower_for_gpu(fn, *_GELU_FFN_IN, device_kind=device_kind)) == [call_target]


# The tuned table and autotuning.


def test_the_shipped_tuned_tables_load():
    """One table per device kind, each named after a device-table entry, each valid."""
    for path in sorted(base.TUNED_DIR.glob("*.json")):
        table = base.load_table(path)
        assert set(table) <= set(IMPLEMENTATIONS), path
        assert any(base.table_path(d.example_kind) == path for d in devices.DEVICES), path
    assert base.table_path(H100).name == "h100.json" and base.table_path("NVIDIA H200").name == "h200.json"
    assert base.table_path("NVIDIA RTX 6000 Ada Generation").name == "nvidia_rtx_6000_ada_generation.json"


def test_a_malformed_tuned_table_raises_naming_the_file(tmp_path, monkeypatch):
    path = base.table_path(H100, tmp_path)
    assert tuned("triton", H100, 64, 768, 768, tmp_path) is None  # no file: no entries
    path.write_text("{not json")
    with pytest.raises(TunedTableError, match=f"{re.escape(str(path))} is not valid JSON"):
        tuned("triton", H100, 64, 768, 768, tmp_path)
    path.write_text('{"triton": []}')
    with pytest.raises(TunedTableError, match="must be a JSON object of objects"):
        tuned("triton", H100, 64, 768, 768, tmp_path)
    path.write_text('{"triton": {"64x768x768": {"block_m": 48}}}')
    with pytest.raises(TunedTableError, match="invalid triton entry 64x768x768.*power of two"):
        tuned("triton", H100, 64, 768, 768, tmp_path)
    path.write_text("{}")  # an empty table is fine: no entries
    assert tuned("triton", H100, 64, 768, 768, tmp_path) is None
    # Through the front door too: the device's table is read, never skipped.
    monkeypatch.setattr(base, "TUNED_DIR", tmp_path)
    base.table_path("cpu", tmp_path).write_text("{broken")
    x, w, xs, ws = _operands(8, 384, 128)
    with pytest.raises(TunedTableError, match="cpu.json is not valid JSON"):
        int8_matmul(x, w, xs, ws, interpret=True)


def test_explicit_config_beats_the_tuned_table_which_beats_the_heuristic(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "TUNED_DIR", tmp_path)
    assert choose("triton", "cpu", 8, 384, 128) == heuristic(8, 384, 128)
    entry = Config(block_m=32, block_n=64, block_k=32)
    assert record("triton", "cpu", 8, 128, 384, entry) == tmp_path / "cpu.json"
    assert choose("triton", "cpu", 8, 128, 384) == entry
    assert choose("triton", H100, 8, 128, 384) == heuristic(8, 128, 384)  # another device's file
    explicit = Config(block_m=16)
    assert choose("triton", "cpu", 8, 128, 384, explicit) == explicit


def test_tuned_tables_are_never_written_into_an_installed_package(tmp_path):
    installed = tmp_path / "lib" / "python3.12" / "site-packages" / "pallas_kernels" / "int8_matmul" / "tuned"
    with pytest.raises(TunedTableError, match="inside an installed package"):
        record("triton", H100, 64, 768, 768, Config(), installed)
    assert not installed.exists()


def test_tuning_picks_the_fastest_and_the_table_round_trips(tmp_path):
    for impl in IMPLS:
        options = candidates(impl, 4096, 768, 3072)
        assert options and all(768 % getattr(c, "tile_n", getattr(c, "block_n", 1)) == 0 for c in options)
        target = options[len(options) // 2]

        def fake_time(config):  # the middle candidate is fastest; one config "fails to compile"
            if config == options[0]:
                raise ValueError("exceeds available shared memory")
            return 1.0 if config == target else 2.0
        found = tune(impl, 4096, 768, 3072, fake_time, check=None)
        assert found.config == target and found.ms == 1.0 and found.complete
        assert found.failed == [(options[0], "ValueError: exceeds available shared memory")]
        record(impl, H100, 3000, 768, 3072, found.config, tmp_path)
        assert tuned(impl, H100, 4096, 768, 3072, tmp_path) == found.config  # 3000 -> 4096
        assert tuned(impl, A100, 4096, 768, 3072, tmp_path) is None
    assert set(json.loads((tmp_path / "h100.json").read_text())) == set(IMPLS)  # one file, both
    with pytest.raises(RuntimeError, match="no triton config ran"):
        tune("triton", 16, 768, 768, lambda c: (_ for _ in ()).throw(RuntimeError("boom")), check=None)
    with pytest.raises(ValueError, match="'cutlass' is not one of"):
        candidates("cutlass", 16, 768, 768)


def test_a_candidate_with_a_wrong_accumulator_or_any_error_cannot_win(monkeypatch):
    """Before it is timed, each candidate's raw int32 accumulator must equal XLA's
    (`accumulator_check`); one that computes a wrong one, or raises anything at all, is
    recorded as failed with the reason, however fast it would be."""
    from pallas_kernels.int8_matmul import tuning
    options = [Config(block_m=16, block_n=64, block_k=64), Config(block_m=16, block_n=128, block_k=64),
               Config(block_m=32, block_n=64, block_k=32)]
    wrong, raises = options[0], options[2]
    monkeypatch.setattr(tuning, "candidates", lambda *_: options)
    x, w, _, _ = _operands(16, 128, 128)
    kernel = tuning.int8_matmul

    def broken(*args, config, **kwargs):  # one config drops a K step, one trips over itself
        if config == raises:
            raise TypeError("unexpected keyword")
        acc = kernel(*args, config=config, **kwargs)
        return acc.at[3, 5].add(1) if config == wrong else acc
    monkeypatch.setattr(tuning, "int8_matmul", broken)
    check = tuning.accumulator_check("triton", x, w, interpret=True)
    found = tune("triton", 16, 128, 128, lambda c: 0.5 if c in (wrong, raises) else 1.0, check=check)
    assert found.config == options[1] and found.ms == 1.0
    assert [(c, r.split(":")[0]) for c, r in found.failed] == [(wrong, "AssertionError"),
                                                               (raises, "TypeError")]
    assert "1 of 2048 values differ" in found.failed[0][1]


def test_tuning_stops_at_its_deadline_with_what_it_has(monkeypatch):
    """No candidate starts after the deadline: the best so far wins, marked incomplete; with
    none run, it says how many were left untried."""
    from pallas_kernels.int8_matmul import tuning
    clock = [0.0]
    monkeypatch.setattr(tuning, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))
    options = candidates("triton", 4096, 768, 3072)

    def slow(config):  # each candidate takes 10 s; later ones would be faster
        clock[0] += 10
        return 100.0 - clock[0]
    found = tune("triton", 4096, 768, 3072, slow, check=None, deadline=25.0)
    assert found.config == options[2] and found.ms == 70.0 and not found.complete
    with pytest.raises(RuntimeError, match=f"0 of 0 tried failed, {len(options)} not tried"):
        tune("triton", 4096, 768, 3072, slow, check=None, deadline=clock[0] - 1)


def test_the_tuned_table_is_written_atomically(tmp_path, monkeypatch):
    """`record` writes a temporary file beside the table and renames it over the table: a
    write that fails leaves the previous table whole, and no temporary file behind."""
    first = Config(block_m=32, block_n=64, block_k=32)
    path = record("triton", H100, 64, 768, 768, first, tmp_path)
    before = path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h100.json"]
    assert path.stat().st_mode & 0o777 == 0o644

    def fail(*_):
        raise OSError("disk full")
    with monkeypatch.context() as patch, pytest.raises(OSError, match="disk full"):
        patch.setattr(base.os, "replace", fail)
        record("triton", H100, 128, 768, 768, Config(), tmp_path)
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["h100.json"]
    record("triton", H100, 128, 768, 768, Config(), tmp_path)
    assert tuned("triton", H100, 64, 768, 768, tmp_path) == first
    assert tuned("triton", H100, 128, 768, 768, tmp_path) == Config()
