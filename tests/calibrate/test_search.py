"""The candidate program, the latency model, the allocation and the report."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from flax import nnx

from calibrate.search import latency
from calibrate.search.candidates import SwitchableModel
from calibrate.search.latency import (DEFAULT_PRECISIONS, check_against_forward, estimate_table,
                                      flops_by_precision, int8_flop_fraction, measure_table, site_shapes)
from calibrate.search.objectives import SEARCH_BATCH_SIZE, UnlabelledObjective, task_objective
from calibrate.search.report import sensitivity_table, tolerance_table, write_report
from calibrate.search.result import ToleranceCheck, pareto_entries, pareto_front
from calibrate.search.runner import Evaluated, Kind
from calibrate.search.config import SearchConfig, validate_tolerance
from calibrate.search.driver import search
from samp_jax import (EncoderConfig, EncoderModel, PrecisionMap, SentenceEmbedder, Tokenizer,
                      quantize)
from samp_jax.core.precision import SITES, SitePrecision, as_precision
from samp_jax.serving.forward import jit_forward
from tests.helpers import TINY_CONFIG, random_batches


@pytest.mark.slow
def test_one_compilation_serves_many_candidates_and_matches_the_real_path(tiny, calibration):
    switch = SwitchableModel(tiny, ("fp16", "int8-dynamic", "fp8_e4m3", "int8-static"), calibration)
    rng = np.random.default_rng(0)
    choices = rng.integers(0, 4, size=(21, 3, 4)).astype(np.int32)
    batch = random_batches()[0]
    out = switch.evaluate(choices, batch, chunk=8)  # 3 calls: 8 + 8 + 5 (padded)
    again = switch.evaluate(choices[:2], batch, chunk=8)
    assert switch.traces == 1
    assert out.shape == (21, 8, 3)
    np.testing.assert_array_equal(again, out[:2])
    for i in (0, 7, 20):
        real = jit_forward(quantize(tiny, switch.map_for(choices[i]), calibration))(batch)
        np.testing.assert_array_equal(np.asarray(real), out[i])  # bit-exact with quantize()
    vmapped = switch.evaluate(choices[:8], batch, mode="vmap", chunk=8)
    np.testing.assert_allclose(vmapped, out[:8], atol=1e-6)


def test_choices_and_maps_round_trip(tiny):
    switch = SwitchableModel(tiny, ("fp16", "int8-dynamic"))
    pmap = PrecisionMap.preset("quant_ffn_only", 3)
    assert switch.map_for(switch.choices_for(pmap)) == pmap
    with pytest.raises(ValueError, match="not one of the options"):
        switch.choices_for(PrecisionMap.preset("fp8", 3))
    with pytest.raises(ValueError, match="need calibration"):
        SwitchableModel(tiny, ("fp16", "fp8_e4m3"))
    with pytest.raises(ValueError, match=r"choices must be \[candidates, 3, 4\]"):
        switch.evaluate(np.zeros((2, 3), np.int32), random_batches()[0])


def test_latency_estimate_and_flop_fraction():
    base = EncoderConfig.bert_base()
    table = estimate_table(base, 256, 128)
    fp16, full = PrecisionMap.preset("fp16", 12), PrecisionMap.preset("fully_quant", 12)
    assert table.source == "estimated"
    assert table.map_ms(full) < table.map_ms(fp16)
    manual = table.other_ms + 12 * sum(table.site(s, full[0, s]) for s in SITES) + sum(
        table.attention(layer, "float") for layer in range(12))  # attention: float
    assert table.map_ms(full) == pytest.approx(manual)
    seq = 128
    layer = 2 * 768 * (3 * 768 + 768 + 2 * 3072)  # the GEMM FLOPs of a layer, per token
    attention = 2 * (2 * seq * 768)  # per token: Q K^T and P V, 2 s h d each
    total = 12 * (layer + attention)
    ffn = lambda: PrecisionMap.preset("quant_ffn_only", 12)  # noqa: E731
    assert int8_flop_fraction(ffn(), base, seq_len=seq) == pytest.approx(12 * 2 * 768 * 2 * 3072 / total)
    # attention the map does not name runs in float: fully_quant is all but attention's share
    assert int8_flop_fraction(full, base, seq_len=seq) == pytest.approx(12 * layer / total)
    assert int8_flop_fraction(fp16, base, seq_len=seq) == 0.0
    assert flops_by_precision(fp16, base, seq) == {"fp16": 12 * layer, "float": 12 * attention}
    # named in INT8, they count as INT8 (the scores alone: half of them)
    assert int8_flop_fraction(with_attention(full), base, seq_len=seq) == 1.0
    scores = with_attention(full, sites=["attn_scores"])
    assert int8_flop_fraction(scores, base, seq_len=seq) == pytest.approx(1 - 6 * attention / total)
    assert flops_by_precision(with_attention(fp16, "fp32"), base, seq) == {"fp16": 12 * layer,
                                                                           "fp32": 12 * attention}
    # ELECTRA-small's embedding projection (128 -> 256): counted, INT8 only when the map says
    electra = base.replace(hidden_size=256, intermediate_size=1024, num_heads=4,
                           embedding_size=128)
    layer = 2 * 256 * (3 * 256 + 256 + 2 * 1024)
    projection = 2 * 128 * 256
    attention = 2 * (2 * 8 * 256)
    assert int8_flop_fraction(full, electra, seq_len=8) == pytest.approx(
        12 * layer / (12 * (layer + attention) + projection))
    with_projection = dataclasses.replace(with_attention(full), embedding_project="int8-dynamic")
    assert int8_flop_fraction(with_projection, electra, seq_len=8) == 1.0


def test_debertas_relative_terms_count_as_float_matmuls():
    """c2p and p2c multiply each token's query or key by the relative table's rows its row
    reaches: `2 * min(2 seq - 1, 2 span) * h * d` each, in float whatever the map says."""
    base = EncoderConfig.bert_base()
    deberta = base.replace(model_type="deberta-v2", disentangled_attention=True,
                           pos_att_type=("c2p", "p2c"), max_relative_positions=256,
                           position_buckets=256, type_vocab_size=0)
    assert deberta.relative_span == 256
    layer = 2 * 768 * (3 * 768 + 768 + 2 * 3072)
    for seq, rows in ((128, 2 * 128 - 1), (512, 2 * 256)):
        attention = 2 * (2 * seq * 768)
        relative = 2 * (2 * rows * 768)
        full = with_attention(PrecisionMap.preset("fully_quant", 12))
        assert flops_by_precision(full, deberta, seq) == {"int8-dynamic": 12 * (layer + attention),
                                                          "float": 12 * relative}
        assert int8_flop_fraction(full, deberta, seq_len=seq) == pytest.approx(
            (layer + attention) / (layer + attention + relative))
    one_term = deberta.replace(pos_att_type=("c2p",))
    assert flops_by_precision(PrecisionMap.preset("fp16", 12), one_term, 128)["float"] == \
        12 * (2 * (2 * 128 * 768) + 2 * 255 * 768)


def with_attention(pmap, precision="int8", sites=("attn_scores", "attn_context")):
    data = pmap.to_dict()
    data["rules"].append({"layers": "*", "sites": list(sites), "precision": precision})
    return PrecisionMap.from_dict(data)


def test_a_local_layer_counts_the_keys_its_window_sees():
    config = EncoderConfig.bert_base().replace(local_attention=8, global_attn_every_n_layers=3)
    fp16 = PrecisionMap.preset("fp16", 12)
    local = [layer for layer in range(12) if config.is_local_layer(layer)]
    assert len(local) == 8
    per_token = lambda keys: 2 * 2 * keys * 768  # noqa: E731
    assert flops_by_precision(fp16, config, 100)["float"] == 4 * per_token(100) + 8 * per_token(9)
    assert flops_by_precision(fp16, config, 5)["float"] == 12 * per_token(5)


@pytest.mark.parametrize("family", ["bert", "modernbert", "deberta-v2", "electra"])
def test_the_latency_model_prices_the_sites_the_model_has(family):
    """`site_shapes` (the FLOPs, the INT8 share, the shapes a table times) is each site's
    kernel shape, ModernBERT's gated `ffn_in` twice as wide included: quant_ffn_only's INT8
    share is the FFN's share of the real GEMM FLOPs (ELECTRA's projection included)."""
    from samp_jax import load_pretrained
    from tests.helpers import GOLDEN

    model = load_pretrained(GOLDEN / "families" / family / "seqcls")
    config = model.config
    layer = model.encoder.layers[0]
    assert site_shapes(config) == {s: tuple(getattr(layer, s).kernel.shape) for s in SITES}
    flops = {s: k * n for s, (k, n) in site_shapes(config).items()}
    # ELECTRA's embedding projection runs at the compute dtype: in the total, not in INT8
    projection = config.embedding_size * config.hidden_size if config.embedding_size else 0
    layers = config.num_layers
    # and the attention matmuls, in float: 2 products of 2 s h d per token, s the keys a query sees
    keys = [min(16, config.local_attention + 1) if config.is_local_layer(i) else 16 for i in range(layers)]
    attention = sum(2 * 2 * k * config.num_heads * config.head_dim for k in keys)
    # and DeBERTa's relative terms, in float: each 2 * (2 s - 1) h d per token (a short row)
    if config.disentangled_attention:
        attention += layers * len(config.pos_att_type) * 2 * min(2 * 16 - 1, 2 * config.relative_span) \
            * config.num_heads * config.head_dim
    expected = layers * (flops["ffn_in"] + flops["ffn_out"]) / (layers * sum(flops.values())
                                                                 + projection + attention / 2)
    assert int8_flop_fraction(PrecisionMap.preset("quant_ffn_only", config.num_layers),
                              config, seq_len=16) == pytest.approx(expected)


FIT_CASES = {  # timed sites' total per precision, measured forwards (ms)
    # the INT8 forwards shorter than the FP32 forward minus its timed sites: sites timed alone
    # ran twice as fast as in the forward (a cached MiniLM table's figures)
    "sites faster alone": ({"fp32": 948.0, "int8-dynamic": 300.0, "int8-static": 250.0},
                           {"fp32": 1942.0, "int8-dynamic": 695.8, "int8-static": 476.9}),
    "one forward below the default's rest": ({"fp32": 100.0, "int8-dynamic": 60.0, "int8-static": 55.0},
                                             {"fp32": 500.0, "int8-dynamic": 350.0, "int8-static": 300.0}),
    "sites slower alone": ({"fp32": 900.0, "int8-dynamic": 500.0, "int8-static": 450.0},
                           {"fp32": 600.0, "int8-dynamic": 380.0, "int8-static": 350.0}),
    "a line that falls": ({"fp32": 100.0, "int8-dynamic": 50.0, "int8-static": 40.0},
                          {"fp32": 200.0, "int8-dynamic": 230.0, "int8-static": 260.0}),
}


@pytest.mark.parametrize("sites, forwards", FIT_CASES.values(), ids=FIT_CASES.keys())
def test_the_fitted_table_reproduces_every_measured_forward(sites, forwards):
    """Whatever the timed sites, each uniform map's table time is its measured forward, and
    the time outside the sites is shared (never above 90% of the fastest forward)."""
    names = ("fp32", "int8-dynamic", "int8-static")
    precisions = tuple(as_precision(n) for n in names)
    site_ms = {f"{s}/{n}": sites[n] / 2 / len(SITES) for n in names for s in SITES}  # 2 layers
    other = latency._fit_to_forwards(site_ms, forwards, precisions, 2)
    assert 0 <= other <= 0.9 * min(forwards.values())
    for n in names:
        assert other + 2 * sum(site_ms[f"{s}/{n}"] for s in SITES) == pytest.approx(forwards[n])
    rising = forwards["int8-static"] < forwards["int8-dynamic"] < forwards["fp32"]
    if rising and forwards["fp32"] > 1.5 * sites["fp32"]:  # the gap is shared by the sites,
        # not put on other_ms alone (which would reach the 90% bound here)
        assert other < 0.45 * min(forwards.values())


@pytest.mark.slow
def test_measured_table_and_end_to_end_check_run_on_this_device(tiny):
    table = measure_table(tiny, 4, 16, repeats=3)
    assert table.source == "measured" and all(v > 0 for v in table.site_ms.values())
    # every precision's sites are scaled to reproduce its own measured whole forward
    for name, ms in table.forward_ms.items():
        uniform = PrecisionMap.from_table({}, 3, default=as_precision(name))
        assert table.map_ms(uniform) == pytest.approx(ms, rel=1e-9), name
    assert 0 <= table.other_ms <= 0.9 * min(table.forward_ms.values())
    assert set(table.forward_ms) == {str(p) for p in DEFAULT_PRECISIONS}
    rows = check_against_forward(tiny, table, {"fp16": PrecisionMap.preset("fp16", 3)}, repeats=3)
    assert rows[0]["measured_ms"] > 0 and np.isfinite(rows[0]["relative_error"])


@pytest.mark.parametrize("tolerance, mode, message", [
    (-0.01, "relative", "must be a finite number >= 0"),
    (float("nan"), "relative", "must be a finite number >= 0"),
    (0.7, "relative", "would allow losing half"),
    (0.01, "percent", "tolerance_mode='percent'"),
])
def test_bad_tolerances_are_refused(tolerance, mode, message):
    with pytest.raises(ValueError, match=message):
        validate_tolerance(tolerance, mode)


def test_an_absolute_tolerance_is_checked_against_the_metrics_range():
    """Half a built-in metric's range (bound 1) is refused in metric points; a metric whose
    range is not known (a plugin's, in units of its own) takes any finite tolerance >= 0."""
    validate_tolerance(0.49, "absolute", 1.0)
    with pytest.raises(ValueError, match=r"tolerance=0.5 \(absolute\) would allow losing half "
                                         r"or more of the largest value accuracy takes \(1\); use "
                                         r"a value below 0.5 in accuracy points"):
        validate_tolerance(0.5, "absolute", 1.0, "accuracy")
    validate_tolerance(25.0, "absolute", None)
    validate_tolerance(0.9, "absolute")  # the metric not known yet: checked again when it is
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        validate_tolerance(float("inf"), "absolute", None)


def test_a_search_refuses_half_its_metrics_range_before_the_model_runs(monkeypatch, tiny):
    from calibrate.search import session
    from samp_jax.tasks import load_task
    from samp_jax.tasks.metrics import ACCURACY
    task = load_task([{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(20)])
    reached = []
    monkeypatch.setattr(session, "task_objective", lambda *a, **k: reached.append(a) or "objective")
    loose = SearchConfig(tolerance=0.6, tolerance_mode="absolute")  # no metric yet: accepted
    with pytest.raises(ValueError, match=r"tolerance=0.6 \(absolute\) would allow losing half"):
        session.make_objective(tiny, task, None, loose)
    assert not reached
    from calibrate.search import driver  # search() refuses it before its plan times the model
    monkeypatch.setattr(driver, "plan_search", lambda *a, **k: pytest.fail("planned"))
    with pytest.raises(ValueError, match=r"largest value accuracy takes"):
        search(tiny, task, tolerance=0.6, tolerance_mode="absolute", measure_again=True)
    objective = SimpleNamespace(metric_name="accuracy")  # an Objective's metric, by name
    monkeypatch.setattr(session, "Objective", SimpleNamespace)
    assert session.data_metric(objective) is ACCURACY
    unbounded = dataclasses.replace(ACCURACY, name="toy_points", bound=None)
    monkeypatch.setattr(type(task), "task_metric", property(lambda self: unbounded))
    assert session.make_objective(tiny, task, None, loose) == "objective" and reached
    timed = SearchConfig(latency_target_ms=5.0, tolerance=0.6, tolerance_mode="absolute")
    monkeypatch.setattr(type(task), "task_metric", property(lambda self: ACCURACY))
    assert session.make_objective(tiny, task, None, timed) == "objective"  # tolerance unused


@pytest.mark.slow
def test_search_extremes_with_unlabelled_data(tiny, calibration):
    batches = random_batches(3, seed=2)
    table = estimate_table(TINY_CONFIG, 32, 128)
    strict = search(tiny, batches, tolerance=0.0, target="h100", calibration=calibration, latency_table=table,
                    progress=False, sensitivity_batches=1)
    assert all(p.precision == "fp16" for _, p in strict.precision_map.items())
    loose = search(tiny, batches, tolerance=0.4, objective="int8_fraction", target="h100", calibration=calibration,
                   latency_table=table, progress=False)
    assert all(p.precision == "int8" for _, p in loose.precision_map.items())  # attention: float
    assert loose.chosen.int8_fraction == int8_flop_fraction(loose.precision_map, TINY_CONFIG, seq_len=128)
    assert loose.compilations <= 2  # one per batch shape, however many maps were evaluated
    assert len(loose.evaluated) > 12
    assert set(loose.sensitivity) == {f"{l}.{s}/int8-{scheme}" for l in range(3) for s in SITES
                                      for scheme in ("dynamic", "static")}


@pytest.mark.slow
def test_latency_target_mode(tiny, calibration):
    table = estimate_table(TINY_CONFIG, 32, 128)
    fp16 = table.map_ms(PrecisionMap.preset("fp16", 3))
    options = [SitePrecision(p) for p in ("fp16", "int8", "fp8_e4m3")]
    floor = table.other_ms + 3 * sum(min(table.site(s, p) for p in options) for s in SITES) + sum(
        table.attention(layer, "float") for layer in range(3))  # a latency target's attention: float
    target = (fp16 + floor) / 2
    result = search(tiny, random_batches(2), latency_target_ms=target, target="h100", calibration=calibration,
                    latency_table=table, progress=False)
    assert result.chosen.latency_ms <= target and result.mode == "latency_target"
    with pytest.raises(ValueError, match="below the fastest possible map"):
        search(tiny, random_batches(1), latency_target_ms=floor * 0.5, target="h100", calibration=calibration,
               latency_table=table, progress=False)


def test_empty_search_set_is_refused(tiny):
    with pytest.raises(ValueError, match="empty search set"):
        UnlabelledObjective(tiny, [])


@pytest.mark.slow
def test_report_files(tiny, calibration, tmp_path):
    result = search(tiny, random_batches(2), tolerance=0.05, target="h100", calibration=calibration,
                    latency_table=estimate_table(TINY_CONFIG, 32, 128), progress=False)
    summary = write_report(result, tmp_path, test_metrics={"fp32": 0.9, "chosen": 0.89}, command="pytest")
    assert PrecisionMap.from_json(tmp_path / "precision_map.json") == result.precision_map
    assert json.loads((tmp_path / "summary.json").read_text())["int8_flop_fraction"] == summary["int8_flop_fraction"]
    report = (tmp_path / "report.md").read_text()
    assert "## Sensitivity" in report and "| 2 |" in report and "chosen (test)" in report
    # a preset passes and no map is faster: no single-site map ran, and the report says why
    assert result.stopped_early and not result.sensitivity
    assert f"Not measured: the search stopped after the presets ({result.stopped_early})" in report
    # without a metric the tolerance bounds the proxy: each preset's and the chosen map's
    checks = json.loads((tmp_path / "summary.json").read_text())["tolerance_checks"]
    assert [c["map"] for c in checks] == [e.name for e in result.evaluated if e.kind == "preset"] + ["chosen"]
    for check in checks:
        entry = next(e for e in result.evaluated if e.name == check["map"])
        assert check["bounded"] == pytest.approx(entry.proxy) and check["allowed"] == 0.05
        assert check["passes"] is (entry.proxy <= 0.05) and check["drop"] is None
        assert f"| {check['map']} | {entry.proxy:.4g} | 0.05 | yes |" in report
    # the Pareto front as data: fastest first, no map beaten on both latency and proxy, each
    # with the precision map the search would write for it
    front = json.loads((tmp_path / "summary.json").read_text())["pareto_front"]
    assert front and [p["estimated_latency_ms"] for p in front] == sorted(p["estimated_latency_ms"] for p in front)
    assert all(a["proxy"] > b["proxy"] for a, b in zip(front, front[1:]))
    assert sorted(p.name for p in (tmp_path / "pareto").iterdir()) == [
        f"{i:02d}.json" for i in range(1, len(front) + 1)]
    stale = tmp_path / "pareto" / f"{len(front) + 1:02d}.json"  # an earlier, longer front's
    stale.write_text("{}")
    write_report(result, tmp_path)
    assert not stale.exists() and len(list((tmp_path / "pareto").iterdir())) == len(front)
    for point in front:
        entry = next(e for e in result.evaluated if e.name == point["map"])
        pmap = PrecisionMap.from_dict(point["precision_map"])
        assert [p for _, p in pmap.items()] == [p for _, p in entry.precision_map.items()]
        assert PrecisionMap.from_json(tmp_path / point["file"]) == pmap
        assert (f"| {point['map']} | {entry.proxy:.4g} |" in report.split("## Pareto front")[1]
                and f"`{point['file']}` |" in report)
    fastest = min((e for e in result.evaluated if e.kind != "reference"), key=lambda e: e.latency_ms)
    assert front[0]["estimated_latency_ms"] == fastest.latency_ms
    assert (tmp_path / "pareto.png").stat().st_size > 10_000


def test_the_proxy_is_named_by_the_objective_not_guessed_from_the_metric(tiny):
    """Without labels there is no metric, but a classifier's proxy is still the KL of its
    logits; an embedder's is 1 - cosine where it compares embeddings by cosine, the relative
    squared change of each (its length included) where by a dot product."""
    classifier = UnlabelledObjective(tiny, random_batches(1))
    rngs = nnx.Rngs(0)
    embedder = UnlabelledObjective(EncoderModel(TINY_CONFIG, SentenceEmbedder(), rngs=rngs),
                                   random_batches(1))
    # an embedder compared by a dot product: a change of length moves its scores
    dot = UnlabelledObjective(EncoderModel(TINY_CONFIG, SentenceEmbedder(normalize=False,
                                                                         similarity="dot"),
                                           rngs=nnx.Rngs(0)), random_batches(1))
    assert (classifier.proxy_kind.name, embedder.proxy_kind.name, dot.proxy_kind.name) == \
        ("kl", "cosine", "embedding_change")
    longer = [1.1 * out for out in dot.reference]
    assert embedder.proxy([1.1 * out for out in embedder.reference]) < 1e-6
    assert dot.proxy(longer) == pytest.approx(0.01, rel=1e-5)
    for objective, label in ((classifier, "KL to FP32"), (embedder, "1 − cosine to FP32"),
                             (dot, "‖change‖² / ‖FP32‖²")):
        result = SimpleNamespace(options=("fp16", "int8-dynamic"), metric_name=None,
                                 proxy_name=objective.proxy_kind.name,
                                 sensitivity={"0.qkv/int8-dynamic": {"proxy": 1e-3}},
                                 precision_map=PrecisionMap.preset("fp16", 3))
        assert sensitivity_table(result).startswith(f"Proxy ({label}) when only that site")


def test_the_tolerance_table_shows_the_drop_margin_and_allowed_drop_behind_each_verdict():
    checks = (ToleranceCheck("fp16", 0.0, 0.0, 0.009), ToleranceCheck("fully_quant", 0.004, 0.0105, 0.009),
              ToleranceCheck("chosen", -0.002, 0.0061, 0.009))
    result = SimpleNamespace(metric_name="accuracy", tolerance_checks=checks)
    table = tolerance_table(result)
    assert "| fully_quant | 0.004 | 0.0065 | 0.0105 | 0.009 | **no** |" in table
    assert "| chosen | -0.002 | 0.0081 | 0.0061 | 0.009 | yes |" in table
    assert "accuracy drop against FP32" in table


def test_the_pareto_entries_follow_the_direction_of_the_metric_or_the_proxy():
    pmap = PrecisionMap.preset("fp16", 3)
    def entry(name, metric, proxy, ms, kind=Kind.GREEDY):
        return Evaluated(name, kind, pmap, metric, proxy, ms, 0.5)
    evaluated = [entry("fp32", 0.9, 0.0, 9.0, Kind.REFERENCE), entry("slow_good", 0.89, 0.01, 5.0),
                 entry("fast_bad", 0.80, 0.20, 2.0), entry("dominated", 0.85, 0.3, 6.0),
                 entry("mid", 0.86, 0.02, 3.0)]
    assert [e.name for e in pareto_entries(evaluated, "accuracy")] == ["fast_bad", "mid", "slow_good"]
    # without a metric, lower proxy is better: "dominated" (slower, higher proxy) stays off
    assert [e.name for e in pareto_entries(evaluated, None)] == ["fast_bad", "mid", "slow_good"]
    evaluated.append(entry("lucky", 0.70, 0.001, 4.0))  # the best proxy, the worst metric
    assert [e.name for e in pareto_entries(evaluated, None)] == ["fast_bad", "mid", "lucky"]
    assert [e.name for e in pareto_entries(evaluated, "accuracy")] == ["fast_bad", "mid", "slow_good"]
    # the chosen map ties a preset recorded before it (same latency and metric): the chosen
    # one stands on the front (the first recorded did, leaving the returned map off it)
    evaluated.append(entry("chosen", 0.80, 0.20, 2.0, Kind.CHOSEN))
    assert [e.name for e in pareto_entries(evaluated, "accuracy")] == ["chosen", "mid", "slow_good"]


def test_pareto_front():
    points = [(1.0, 0.5), (2.0, 0.9), (1.5, 0.4), (3.0, 0.95), (2.5, 0.8)]
    assert pareto_front(points) == [0, 1, 3]


def test_the_search_runs_its_maps_on_balanced_batches(minilm, minilm_dir):
    """A search split of 20 pairs (at most 40 unique texts) is one batch of its texts rounded up
    to 8 rows, not one of 64: every map the search runs pads no more than that."""
    objective = task_objective(minilm, "snli-embed", Tokenizer.from_pretrained(minilm_dir),
                               max_examples=20)
    texts = len(objective.evaluation.texts)
    assert texts <= 40 < SEARCH_BATCH_SIZE
    assert [len(b["input_ids"]) for b in objective.batches] == [-(-texts // 8) * 8]
    assert [len(r) for r in objective.reference] == [-(-texts // 8) * 8]


def test_the_search_calibrates_on_the_calibration_rows_it_is_given(minilm, minilm_dir):
    """`calibration_examples` (`search --calibration-examples`): the first rows of the
    calibration split, all their real tokens and no more."""
    from calibrate.search.static_clips import search_calibration
    from samp_jax.tasks import get_task
    tokenizer, task = Tokenizer.from_pretrained(minilm_dir), get_task("snli-embed")
    static = (as_precision("int8-static"),)
    for rows in (8, 24):
        calibration, candidates = search_calibration(minilm, task, tokenizer, None, static,
                                                     method="minmax", examples=rows)
        batches = task.calibration_batches(tokenizer, max_examples=rows)
        assert candidates is None and calibration.method == "minmax"
        assert calibration.tokens == sum(int(b["attention_mask"].sum()) for b in batches)
    with pytest.raises(ValueError, match="calibration_examples=0 must be a positive integer"):
        SearchConfig(calibration_examples=0)
