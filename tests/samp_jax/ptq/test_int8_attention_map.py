"""A precision map's INT8 attention (`attn_scores`, `attn_context`) through `quantize`, the
families' attention variants, and a saved model."""

import jax
import numpy as np
import pytest
from flax import nnx

from samp_jax import EncoderModel, PrecisionMap, PrecisionMapError, QuantizedModel, load_pretrained, quantize
from samp_jax.core.precision import AttentionPrecision, SitePrecision
from samp_jax.models.heads import make_head
from tests.helpers import GOLDEN, TINY_CONFIG


def with_attention(pmap: PrecisionMap, precision: str = "int8",
                   sites=("attn_scores", "attn_context")) -> PrecisionMap:
    data = pmap.to_dict()
    data["rules"].append({"layers": "*", "sites": list(sites), "precision": precision})
    return PrecisionMap.from_dict(data)


def inputs(config, seq: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, min(config.vocab_size, 100), (2, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, seq // 2:] = 0
    return ids, mask, np.zeros_like(ids)


_encode = nnx.jit(lambda model, *batch: model.encode(*batch))  # one compilation per graph


def hidden(model, batch):
    return np.asarray(_encode(model.model, *batch), np.float32)


def program(model, batch) -> str:
    """The traced forward (no compilation): equal programs give equal numbers."""
    graph, state = nnx.split(model.model)
    return str(jax.make_jaxpr(lambda s, *b: nnx.merge(graph, s).encode(*b))(state, *batch))


def check_int8_attention(family: str, seq: int, bound: float) -> None:
    """INT8 attention on every layer moves the hidden states of the real tokens by a small
    amount (relative to their largest), and attention named at the compute dtype (fp16) is
    the same program as the map without attention rules."""
    model = load_pretrained(GOLDEN / "families" / family / "seqcls")
    full = PrecisionMap.preset("fully_quant", model.config.num_layers)
    batch = inputs(model.config, seq)
    plain = quantize(model, full)
    q = quantize(model, with_attention(full))
    assert all(layer.attention_precision == AttentionPrecision(SitePrecision("int8"), SitePrecision("int8"))
               for layer in q.model.encoder.layers)
    base, moved = hidden(plain, batch), hidden(q, batch)
    real = batch[1].astype(bool)
    error = np.abs(moved - base)[real].max() / np.abs(base[real]).max()
    assert 1e-5 < error < bound, error
    assert program(quantize(model, with_attention(full, "fp16")), batch) == program(plain, batch)


def test_int8_attention_on_every_layer_moves_the_hidden_states_a_little():
    check_int8_attention("bert", 12, 0.05)  # measured 0.017


# seq 40 puts ModernBERT's local layers (window 8) on the blockwise path; DeBERTa adds its
# relative terms, MPNet its relative bias, to the dequantized scores (about 1.5 s each)
@pytest.mark.parametrize("family, seq, bound", [("deberta-v2", 12, 0.07), ("mpnet", 12, 0.05),
                                                 ("modernbert", 40, 0.12)])  # measured 0.023, 0.016, 0.040
def test_int8_attention_in_the_families_attention_variants(family, seq, bound):
    check_int8_attention(family, seq, bound)


def test_a_saved_model_keeps_its_attention_precisions(tmp_path):
    model = load_pretrained(GOLDEN / "families" / "bert" / "seqcls")
    pmap = with_attention(PrecisionMap.preset("quant_ffn_only", model.config.num_layers))
    q = quantize(model, pmap)
    q.save(tmp_path / "q")
    loaded = QuantizedModel.load(tmp_path / "q")
    assert loaded.precision_map == pmap and loaded.precision_map.sets_attention
    assert [layer.attention_precision for layer in loaded.model.encoder.layers] == \
        [layer.attention_precision for layer in q.model.encoder.layers]
    batch = inputs(model.config, 12)
    np.testing.assert_array_equal(hidden(loaded, batch), hidden(q, batch))
    # what ran: each named product, recorded beside the GEMM sites
    sites = q.executed_implementations()["sites"]
    assert sites["1.attn_scores"] == sites["1.attn_context"] == "xla" and sites["1.qkv"] == "xla"
    plain = quantize(model, PrecisionMap.preset("quant_ffn_only", model.config.num_layers))
    assert not {"0.attn_scores", "0.attn_context"} & set(plain.executed_implementations()["sites"])


def test_int8_attention_in_a_model_pinned_to_cudnn_is_refused_before_quantizing():
    rngs = nnx.Rngs(0)
    model = EncoderModel(TINY_CONFIG, make_head("sequence_classification", TINY_CONFIG, num_labels=2,
                                                rngs=rngs), attention_impl="cudnn", rngs=rngs)
    with pytest.raises(PrecisionMapError, match="layer 0's attention at attn_scores=int8-dynamic"):
        quantize(model, with_attention(PrecisionMap.preset("fp16", TINY_CONFIG.num_layers)))
    # cuDNN takes q, k and v of one 16-bit dtype: fp32, or two precisions, are refused too
    with pytest.raises(PrecisionMapError, match="products in fp32, where cuDNN takes one of fp16 or bf16"):
        quantize(model, with_attention(PrecisionMap.preset("fp16", 3), "fp32"))
    with pytest.raises(PrecisionMapError, match="products in bf16 and fp16"):
        quantize(model, with_attention(PrecisionMap.preset("fp16", 3), "bf16", sites=["attn_scores"]))
    float_attention = quantize(model, with_attention(PrecisionMap.preset("fp16", 3), "fp16"))
    assert float_attention.model.encoder.layers[2].attention_precision.scores == SitePrecision("fp16")
