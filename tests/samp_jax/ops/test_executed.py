"""What ran: `gemm` records the implementation that executed each site (Pallas Mosaic, Pallas
Triton, XLA), logs a site's first fallback once, and the record reaches a quantized model's
`executed_implementations`, its saved sidecar, and a measured latency table."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import samp_jax.ops
from calibrate.search.latency import LatencyTable, measure_table
from pallas_kernels.int8_matmul import ENV_VAR, default_order
from samp_jax import EncoderModel, PrecisionMap, gemm, quantize
from samp_jax.core.precision import SitePrecision
from samp_jax.core.primitives import quantize_weight_int8
from samp_jax.ops import record_executions
from tests.helpers import FAMILY_CONFIGS, TINY_CONFIG

ON_GPU = jax.default_backend() == "gpu"


@pytest.fixture(autouse=True)
def _no_kernel_override(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def _automatic_kernel() -> str:
    return "pallas_" + default_order(jax.devices()[0].device_kind)[0]


def _int8_call(site, n=128, **kwargs):
    rng = np.random.default_rng(0)
    w = quantize_weight_int8(rng.normal(size=(128, n)).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(4, 128)), jnp.float32)
    return gemm(x, w, precision="int8-dynamic", site=site, **kwargs)


def test_the_record_names_the_kernel_that_ran():
    with record_executions() as records:
        _int8_call("a.int8")
        with samp_jax.ops.interpret():
            _int8_call("b.int8")
            _int8_call("c.untileable", n=100)  # N=100: no Pallas kernel tiles it
        gemm(jnp.ones((2, 16)), jnp.ones((16, 8)), precision="fp16", site="d.fp16")
    by_site = {r.site: r for r in records}
    assert by_site["a.int8"].executed == (_automatic_kernel() if ON_GPU else "xla")
    assert by_site["b.int8"].executed == _automatic_kernel() and not by_site["b.int8"].declined
    assert by_site["c.untileable"].executed == "xla"
    assert "cannot tile" in by_site["c.untileable"].declined[0]
    # the Pallas GEMM handles INT8 only: an FP16 site going to XLA is no fallback
    assert by_site["d.fp16"].executed == "xla" and by_site["d.fp16"].declined == ()
    assert (by_site["c.untileable"].k, by_site["c.untileable"].n) == (128, 100)
    assert by_site["c.untileable"].precision == "int8-dynamic"


def test_a_pinned_kernel_is_recorded_as_itself():
    with samp_jax.ops.interpret(), record_executions() as records:
        for name in ("pallas_triton", "pallas_mosaic", "xla"):
            _int8_call(f"pinned.{name}", implementation=name)
    assert [r.executed for r in records] == ["pallas_triton", "pallas_mosaic", "xla"]


def test_the_first_fallback_of_each_site_is_logged_once(caplog):
    with caplog.at_level(logging.INFO, logger="samp_jax.ops"), samp_jax.ops.interpret():
        for _ in range(3):
            _int8_call("logged.once", n=100)
        _int8_call("logged.other", n=100)
        _int8_call("logged.runs", n=128)  # the kernel runs: nothing to log
    messages = [r.getMessage() for r in caplog.records if r.name == "samp_jax.ops"]
    assert len(messages) == 2
    assert "logged.once" in messages[0] and "ran on xla after pallas" in messages[0]
    assert "cannot tile" in messages[0] and "logged.other" in messages[1]
    level = {r.levelno for r in caplog.records if r.name == "samp_jax.ops"}
    assert level == {logging.WARNING if ON_GPU else logging.INFO}


def test_a_quantized_model_and_its_sidecar_say_what_ran(tmp_path):
    config = FAMILY_CONFIGS["bert"].replace(hidden_size=64, intermediate_size=128)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    pmap = PrecisionMap.from_dict({"num_layers": 2, "default": {"precision": "int8"}, "rules": [
        {"layers": [1], "sites": ["attn_out"], "precision": "fp16"}]})
    q = quantize(model, pmap)
    with samp_jax.ops.interpret():
        executed = q.executed_implementations()
    kernel = _automatic_kernel()
    expected = {f"{layer}.{site}": kernel for layer in (0, 1)
                for site in ("qkv", "attn_out", "ffn_in", "ffn_out")}
    expected["1.attn_out"] = "xla"  # FP16
    assert executed["sites"] == expected and executed["interpret"] is True
    precisions = {label: "int8-dynamic" for label in expected} | {"1.attn_out": "fp16"}
    assert executed["precisions"] == precisions  # what ran it, and at which precision
    pinned = quantize(model, pmap, implementation="xla")
    with samp_jax.ops.interpret():
        assert set(pinned.executed_implementations()["sites"].values()) == {"xla"}
    q.save(tmp_path / "q")
    sidecar = json.loads((tmp_path / "q" / "quantization.json").read_text())
    here = "xla" if not ON_GPU else kernel
    assert sidecar["executed"]["sites"]["0.qkv"] == here
    assert sidecar["executed"]["sites"]["1.attn_out"] == "xla"
    assert sidecar["executed"]["device"] == jax.devices()[0].device_kind


def test_a_measured_table_records_what_ran_each_entry():
    model = EncoderModel(TINY_CONFIG, rngs=nnx.Rngs(0))
    precisions = (SitePrecision("fp16"), SitePrecision("int8", "per_token_dynamic"))
    table = measure_table(model, 2, 8, precisions=precisions, repeats=1)
    int8 = "int8-dynamic"
    for site in ("qkv", "attn_out", "ffn_in", "ffn_out"):
        assert table.executed[f"{site}/fp16"] == "xla"
        # hidden 32: no Pallas kernel tiles it, so XLA ran the INT8 sites even on a GPU
        assert table.executed[f"{site}/{int8}"] == "xla"
    assert table.executed[f"forward/{int8}"] == "xla x12"
    assert table.executed_by_precision() == {"fp16": ["xla"], int8: ["xla"]}
    again = LatencyTable.from_json(table.to_json())
    assert again.executed == table.executed
    estimated = LatencyTable("H100", "estimated", 1, 8, 3, {}, 0.0)
    assert estimated.executed_by_precision() == {}


def test_what_one_thread_traces_is_never_recorded_in_another_threads_block():
    """A server tracing two models in two threads: each `record_executions` block (and so each
    `executed_implementations`) sees only its own thread's traces, and interpret mode opened
    in one thread is not on in another."""
    import threading
    config = FAMILY_CONFIGS["bert"].replace(hidden_size=64, intermediate_size=128)
    model = EncoderModel(config, rngs=nnx.Rngs(0))
    int8 = quantize(model, PrecisionMap.preset("fully_quant", config.num_layers))
    attention = quantize(model, PrecisionMap.from_dict({
        "num_layers": config.num_layers, "default": {"precision": "fp16"}, "rules": [
            {"layers": [0], "sites": ["attn_scores", "attn_context"], "precision": "int8"}]}))
    stop, seen_interpret = threading.Event(), []

    def trace_the_other_model():
        with samp_jax.ops.interpret():
            while not stop.is_set():
                attention.executed_implementations()
                seen_interpret.append(samp_jax.ops.interpreting())
    other = threading.Thread(target=trace_the_other_model)
    other.start()
    try:
        reports = [int8.executed_implementations() for _ in range(15)]
    finally:
        stop.set()
        other.join()
    own = {f"{layer}.{site}" for layer in range(config.num_layers)
           for site in ("qkv", "attn_out", "ffn_in", "ffn_out")}
    assert seen_interpret and all(seen_interpret)
    for report in reports:
        assert set(report["sites"]) == own and report["interpret"] is False
        assert set(report["precisions"].values()) == {"int8-dynamic"}
