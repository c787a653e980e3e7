"""Measures the figures docs/families.md quotes for ModernBERT and DeBERTa, and records them in
docs/results/family_figures.json (rendered into the page by tools/render_docs.py).

- Parity: the largest difference from HF's own outputs, on the goldens `make golden` writes to
  tests/golden/families, compared as the family tests compare them
  (tests/samp_jax/models/test_families.py, test_modernbert.py, test_deberta_v2.py): hidden
  states and token logits on real positions, sequence logits on every row, over the single and
  the pair batch.
- Sensitivity: how far ModernBERT's hidden states miss the goldens when the RoPE bases are
  swapped, the window widened or every layer made global (the goldens must see each).
- A long row: the golden ModernBERT classifier given 1,100 positions, a 1,050-token and a
  700-token row through `samp_jax.compile` (default buckets) against direct calls
  (tests/samp_jax/serving/test_long_inputs.py checks the same on a random model).
- Timings, each pair in the same run: warmed up, then timed in turns, one call per sample
  (`samp_jax.serving.timing.time_interleaved`), the median of `--runs` samples each. One
  ModernBERT local layer's attention at 2,048 tokens, the band mask against the query blocks
  (`samp_jax.models.local_attention`); and DeBERTa-v3-xsmall's FP32 forward at 8 x 128 tokens
  against the same shape with BERT's attention. The record keeps the 1-minute load average
  when the run began and when the timings ended: on a CPU shared with other work the times
  are upper bounds and the ratios noisy.

Usage: PYTHONPATH=. python tools/family_figures.py [--runs 11] [--out docs/results/family_figures.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import samp_jax  # noqa: E402
from samp_jax import load, load_pretrained  # noqa: E402
from samp_jax.core.provenance import provenance  # noqa: E402
from samp_jax.models import EncoderConfig, EncoderModel  # noqa: E402
from samp_jax.models.layers import xla_attention  # noqa: E402
from samp_jax.models.local_attention import band_mask, blockwise_local_attention  # noqa: E402
from samp_jax.serving.forward import jit_forward  # noqa: E402
from samp_jax.serving.timing import (device_description, keep_cpu_buffers_for_timing,  # noqa: E402
                                     time_interleaved)

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "tests" / "golden" / "families"
OUT = ROOT / "docs" / "results" / "family_figures.json"
KEYS = ("input_ids", "attention_mask", "token_type_ids")
BATCHES = ("single", "pair")
# DeBERTa-v3-xsmall's shape (both relative terms over 256 log buckets) and BERT's attention on it
XSMALL = dict(vocab_size=128100, hidden_size=384, num_layers=12, num_heads=6, intermediate_size=1536,
              max_position_embeddings=512, layer_norm_eps=1e-7, type_vocab_size=0)
RELATIVE = dict(model_type="deberta-v2", position_biased_input=False, disentangled_attention=True,
                pos_att_type=("p2c", "c2p"), position_buckets=256, share_att_key=True,
                norm_rel_ebd="layer_norm")


def max_abs(ours, theirs, mask=None) -> float:
    """The largest absolute difference, over the real positions when `mask` is given."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if mask is not None:
        ours, theirs = ours[mask.astype(bool)], theirs[mask.astype(bool)]
    return float(np.abs(ours - theirs).max())


def with_config(folder: Path, into: Path, **changes) -> Path:
    """A copy of checkpoint `folder` under `into` whose config.json has `changes`."""
    copy = into / "-".join([folder.name, *changes])
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text()) | changes
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def against_golden(folder: Path, golden: dict, key: str, *, masked: bool, encode: bool = False,
                   prefix: str = "") -> float:
    """The largest difference of `folder`'s model from golden `key`, over both batches."""
    model = load_pretrained(folder)
    worst = 0.0
    for batch in BATCHES:
        ids, mask, types = (golden[f"{batch}_{name}"] for name in KEYS)
        out = model.encode(ids, mask) if encode else model(ids, mask, types)
        worst = max(worst, max_abs(out, golden[f"{batch}_{prefix}{key}"], mask if masked else None))
    return worst


def modernbert_parity(scratch: Path) -> list[dict]:
    folder = FAMILIES / "modernbert"
    golden = dict(np.load(folder / "golden.npz"))
    cls = with_config(folder / "seqcls", scratch, classifier_pooling="cls")
    checks = [("hidden states", folder / "base", "hidden", True, {}),
              ("sequence logits, mean pooling", folder / "seqcls", "seq_logits", False, {}),
              ("sequence logits, CLS pooling", cls, "seq_cls_logits", False, {}),
              ("token logits", folder / "tokcls", "tok_logits", True, {}),
              ("hidden states, every `*_bias` flag on", folder / "biased", "hidden", True,
               {"encode": True, "prefix": "biased_"}),
              ("sequence logits, every `*_bias` flag on", folder / "biased", "seq_logits", False,
               {"prefix": "biased_"})]
    return [{"check": name, "max_abs": against_golden(path, golden, key, masked=masked, **extra)}
            for name, path, key, masked, extra in checks]


def deberta_parity() -> list[dict]:
    folder = FAMILIES / "deberta-v2"
    golden = dict(np.load(folder / "golden.npz"))
    variant = dict(np.load(folder / "variant" / "golden.npz"))
    return [{"check": "hidden states (v3-shaped)",
             "max_abs": against_golden(folder / "base", golden, "hidden", masked=True)},
            {"check": "sequence logits",
             "max_abs": against_golden(folder / "seqcls", golden, "seq_logits", masked=False)},
            {"check": "token logits",
             "max_abs": against_golden(folder / "tokcls", golden, "tok_logits", masked=True)},
            {"check": "hidden states (v2-shaped variant)",
             "max_abs": against_golden(folder / "variant", variant, "hidden", masked=True)}]


def modernbert_sensitivity(scratch: Path) -> list[dict]:
    """Each change must miss the goldens (test_modernbert's `test_each_piece_changes_the_output`)."""
    folder = FAMILIES / "modernbert"
    golden = dict(np.load(folder / "golden.npz"))
    ids, mask, _ = (golden[f"single_{name}"] for name in KEYS)
    changes = [("the two RoPE bases swapped", {"global_rope_theta": 10.0, "local_rope_theta": 1000.0}),
               ("the window widened past the batch (64)", {"local_attention": 64}),
               ("every layer global", {"global_attn_every_n_layers": 1})]
    rows = []
    for name, change in changes:
        model = load_pretrained(with_config(folder / "base", scratch, **change))
        rows.append({"change": name, "max_abs": max_abs(model(ids, mask), golden["single_hidden"], mask)})
    return rows


def long_input(scratch: Path) -> dict:
    """Long rows through the engine's default buckets against direct calls."""
    length = 1100
    folder = with_config(FAMILIES / "modernbert" / "seqcls", scratch, max_position_embeddings=length)
    model = load(folder)
    tokenizer = samp_jax.Tokenizer.from_pretrained(folder, max_length=length)
    engine = samp_jax.compile(model, tokenizer=tokenizer, batch_size=2, batch_buckets=(2,))
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 300, n).astype(np.int32) for n in (1050, 700)]
    out = engine(rows).logits
    worst = max(max_abs(logits, model(row[None], np.ones((1, len(row)), np.int32))[0])
                for row, logits in zip(rows, out))
    return {"positions": length, "row_tokens": [len(r) for r in rows],
            "seq_buckets": list(engine.seq_buckets), "max_abs": worst}


def local_attention_timing(runs: int) -> dict:
    """One local layer's attention at 2,048 tokens: band mask against query blocks."""
    shape = {"batch": 1, "seq": 2048, "heads": 12, "head_dim": 64, "window": 128}
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(shape["batch"], shape["seq"], shape["heads"],
                                            shape["head_dim"])), jnp.float32) for _ in range(3))
    mask = jnp.ones((shape["batch"], shape["seq"]), bool)
    window = shape["window"]
    band = jax.jit(lambda q, k, v, mask: xla_attention(
        q, k, v, mask[:, None, None, :] & band_mask(q.shape[1], window)[None, None]))
    blocks = jax.jit(lambda q, k, v, mask: blockwise_local_attention(q, k, v, mask, window=window))
    ms = time_interleaved({"band_mask": lambda: band(q, k, v, mask),
                           "query_blocks": lambda: blocks(q, k, v, mask)},
                          warmup=2, repeats=runs, inner=1)
    return shape | {"dtype": "float32", "runs": runs, "band_mask_ms": ms["band_mask"],
                    "query_blocks_ms": ms["query_blocks"],
                    "ratio": ms["band_mask"] / ms["query_blocks"],
                    "max_abs": max_abs(band(q, k, v, mask), blocks(q, k, v, mask))}


def relative_cost_timing(runs: int) -> dict:
    """DeBERTa-v3-xsmall's FP32 forward against the same shape with BERT's attention."""
    batch, seq = 8, 128
    inputs = {"input_ids": np.ones((batch, seq), np.int32), "attention_mask": np.ones((batch, seq), np.int32),
              "token_type_ids": np.zeros((batch, seq), np.int32)}
    forwards = {name: jit_forward(EncoderModel(config, rngs=nnx.Rngs(0))) for name, config in
                (("deberta", EncoderConfig(**XSMALL, **RELATIVE)), ("bert_attention", EncoderConfig(**XSMALL)))}
    ms = time_interleaved({name: (lambda f=f: f(inputs)) for name, f in forwards.items()},
                          warmup=2, repeats=runs, inner=1)
    return {"batch": batch, "seq": seq, "layers": XSMALL["num_layers"], "hidden": XSMALL["hidden_size"],
            "position_buckets": RELATIVE["position_buckets"], "runs": runs,
            "deberta_ms": ms["deberta"], "bert_attention_ms": ms["bert_attention"],
            "ratio": ms["deberta"] / ms["bert_attention"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="timed samples per contender (after warm-up)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    keep_cpu_buffers_for_timing("family_figures")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        record = {"parity": {"modernbert": modernbert_parity(scratch), "deberta-v2": deberta_parity()},
                  "sensitivity": modernbert_sensitivity(scratch), "long_input": long_input(scratch)}
    print(json.dumps(record, indent=1), flush=True)
    record["local_attention"] = local_attention_timing(args.runs)
    print(json.dumps(record["local_attention"]), flush=True)
    record["relative_cost"] = relative_cost_timing(args.runs)
    print(json.dumps(record["relative_cost"]), flush=True)
    record["conditions"] = {"platform": jax.default_backend(), "cores": len(os.sched_getaffinity(0)),
                          "load_average_at_start": load_at_start,
                          "load_average_after_timings": os.getloadavg()[0]}
    command = "python tools/family_figures.py " + shlex.join(sys.argv[1:])
    record = {"provenance": provenance(command.strip(), device_description())} | record
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
