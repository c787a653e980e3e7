"""Mutation check of the quantization core and of what feeds it or reads its outputs (PyTorch
weights, slow tokenizers, multi-label readouts, entities, sentence-transformers projections,
the search's proxy): deliberate faults, one at a time, each run against the fast tests that
should catch it. Every mutant must be killed (some selected test fails).

The tree is never modified: the packages and tests are copied to a temporary folder, each
mutant is a source-text patch applied there (the original text must occur exactly once, so a
patch that no longer matches the code fails loudly instead of testing nothing) and undone
after its run. The unmutated copy runs every selected test first: all must pass, or a "kill"
would mean nothing.

    python tools/mutation_check.py            # all mutants; writes docs/results/mutation.{json,md}
    python tools/mutation_check.py --only floor_instead_of_round --no-write

Exit status: 0 when every mutant is killed, 1 otherwise (or when the baseline fails).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from samp_jax.core.provenance import code_commit  # noqa: E402  (standard library only)

COPIED = ("pallas_kernels", "samp_jax", "calibrate", "tests", "pyproject.toml")
RESULTS = ROOT / "docs" / "results"
SITE = "tests/samp_jax/ops/test_site_numerics.py"
FUSED = "tests/samp_jax/ops/test_fused_numerics.py"
PTQ_SITE = "tests/samp_jax/ptq/test_site_reference.py"
EXECUTED = "tests/samp_jax/ops/test_executed.py"
MULTI_LABEL = "tests/samp_jax/tasks/test_multi_label.py"
TORCH_PICKLE = "tests/samp_jax/models/test_torch_pickle.py"
SLOW_TOKENIZER = "tests/samp_jax/models/test_slow_tokenizer.py"
SENTENCEPIECE = "tests/samp_jax/models/test_sentencepiece.py"
INT8_ATTENTION = "tests/samp_jax/models/test_int8_attention.py"
PRECISION_MAP = "tests/samp_jax/core/test_precision.py"


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A fault: `old` replaced by `new` in `path`; `tests` are pytest arguments (files, `-k`)."""

    name: str
    description: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant("static_scale_ignored",
           "static INT8 sites silently quantize with per-token dynamic scales",
           "samp_jax/ops/dispatch.py",
           'static = precision.activation == "per_tensor_static"', "static = False",
           (SITE, "-k", "static and not smooth_dynamic")),
    Mutant("floor_instead_of_round", "INT8 rounding floors instead of rounding half to even",
           "pallas_kernels/numerics.py",
           "jnp.clip(jnp.round(x), -INT8_MAX, INT8_MAX)", "jnp.clip(jnp.floor(x), -INT8_MAX, INT8_MAX)",
           (SITE, "-k", "weights or activation_quantization")),
    Mutant("floor_instead_of_round_family_presets",
           "the same fault, against the family preset tests alone (BERT, every preset)",
           "pallas_kernels/numerics.py",
           "jnp.clip(jnp.round(x), -INT8_MAX, INT8_MAX)", "jnp.clip(jnp.floor(x), -INT8_MAX, INT8_MAX)",
           ("tests/samp_jax/ptq/test_families.py", "-k", "stays_close_to_fp32 and bert")),
    Mutant("saturation_clip_removed", "INT8 values beyond +-127 wrap instead of saturating",
           "pallas_kernels/numerics.py",
           "jnp.clip(jnp.round(x), -INT8_MAX, INT8_MAX)", "jnp.round(x)",
           (SITE, "-k", "activation_quantization and static")),
    Mutant("calibrated_clip_ignored",
           "static INT8 scales come from max|x| instead of the calibrator's clip (amax)",
           "samp_jax/ptq/quantized.py",
           'field = "absmax" if precision.precision == "fp8_e4m3" else "amax"', 'field = "absmax"',
           (PTQ_SITE, "-k", "quantized_site")),
    Mutant("weight_scale_wrong_axis", "INT8 weight scales over the input axis instead of the output",
           "samp_jax/core/primitives.py",
           "jnp.max(jnp.abs(w), axis=0) * INV_INT8_MAX", "jnp.max(jnp.abs(w), axis=1) * INV_INT8_MAX",
           (SITE, "-k", "weights")),
    Mutant("weight_scale_per_tensor", "INT8 weights share one scale instead of one per channel",
           "samp_jax/core/primitives.py",
           "jnp.max(jnp.abs(w), axis=0) * INV_INT8_MAX", "jnp.max(jnp.abs(w)) * INV_INT8_MAX",
           (SITE, "-k", "weights")),
    Mutant("smoothing_factor_dropped", "the SmoothQuant 1/s is not applied to the activations",
           "pallas_kernels/numerics.py",
           "x = x * input_scale.astype(jnp.float32)", "x = x",
           (SITE, "-k", "smooth and activation_quantization")),
    Mutant("smoothing_not_folded", "the SmoothQuant s is not folded into the weights",
           "samp_jax/ptq/quantized.py",
           "w = w / jnp.asarray(input_scale, jnp.float32)[:, None]", "w = w",
           (PTQ_SITE, "-k", "quantized_site")),
    Mutant("fp8_scale_ignored", "FP8 activations are cast without their static scale",
           "samp_jax/ops/dispatch.py",
           "quantize_fp8(jnp.where(finite, x, 0.0), act_scale)",
           "quantize_fp8(jnp.where(finite, x, 0.0), 1.0)",
           (SITE, "-k", "fp8")),
    Mutant("fp8_saturation_removed", "FP8 casts without clipping to +-448 (overflow becomes NaN)",
           "samp_jax/core/primitives.py",
           "jnp.clip(scaled, -FP8_E4M3_MAX, FP8_E4M3_MAX).astype(jnp.float8_e4m3fn)",
           "scaled.astype(jnp.float8_e4m3fn)",
           (SITE, "-k", "fp8")),
    Mutant("nan_row_turned_finite", "a row holding NaN/Inf quantizes to finite values",
           "pallas_kernels/numerics.py",
           "return jnp.sum(x - x, axis=-1, keepdims=True)",
           "return jnp.zeros((*x.shape[:-1], 1), jnp.float32)",
           (SITE, "-k", "non_finite")),
    Mutant("pallas_site_run_by_xla", "the Pallas GEMM declines every site, so XLA silently runs them",
           "samp_jax/ops/pallas.py",
           "if precision.precision not in PRECISIONS:", "if True:",
           (EXECUTED, "-k", "record_names or pinned", "tests/samp_jax/ops/test_pallas.py", "-k",
            "runs_the_named_kernel")),
    Mutant("handoff_requantized_twice",
           "an INT8 input handed over from upstream is dequantized and quantized again",
           "samp_jax/ops/dispatch.py",
           "    if isinstance(x, QArray):\n        return x.qvalue, x.scale",
           "    if isinstance(x, QArray):\n        x = x.dequantize()",
           (SITE, "-k", "handed_off")),
    Mutant("float32_accumulator", "the INT8 GEMM accumulates in float32 instead of int32",
           "pallas_kernels/int8_matmul/reference.py",
           "preferred_element_type=jnp.int32)",
           "preferred_element_type=jnp.float32).astype(jnp.int32)",
           (SITE, "-k", "beyond_float32")),
    Mutant("residual_before_activation", "the epilogue adds the residual before the activation",
           "pallas_kernels/numerics.py",
           "    y = apply_activation(y, activation)\n    if residual is not None:\n"
           "        y = y + residual.astype(jnp.float32)\n",
           "    if residual is not None:\n        y = y + residual.astype(jnp.float32)\n"
           "    y = apply_activation(y, activation)\n",
           (SITE, "-k", "epilogue_matches and xla and dynamic")),
    Mutant("requantize_multiplies", "a requantizing epilogue multiplies by its scale",
           "pallas_kernels/numerics.py",
           "return round_clip_int8(divide_by_scale(y, out_scale))",
           "return round_clip_int8(y * out_scale)",
           (SITE, "-k", "requantizing and xla")),
    Mutant("fused_layernorm_ignores_static_scale",
           "the fused LayerNorm+quant kernel quantizes static sites per token",
           "pallas_kernels/layernorm_quant/triton.py",
           "    if act_scale is None:\n        scale = jnp.maximum(",
           "    if True:\n        scale = jnp.maximum(",
           (FUSED, "-k", "layernorm and static")),
    Mutant("fused_kernel_drops_smoothing",
           "the fused LayerNorm/embedding+quant kernels ignore the SmoothQuant 1/s",
           "pallas_kernels/layernorm_quant/triton.py",
           "        yq = yq * input_scale\n", "        yq = yq\n",
           (FUSED, "-k", "smooth_static")),
    Mutant("label_sets_read_by_argmax",
           "a multi-label head predicts only its top label, as a softmax head would",
           "samp_jax/models/head_kinds.py",
           "            return sigmoid(logits) >= threshold\n",
           "            return np.eye(logits.shape[-1], dtype=bool)[np.argmax(logits, axis=-1)]\n",
           (MULTI_LABEL, "-k", "readout or f1 or engine_predicts")),
    Mutant("label_threshold_ignored", "label sets are read at 0.5 whatever threshold is given",
           "samp_jax/models/head_kinds.py",
           "            return sigmoid(logits) >= threshold\n",
           "            return sigmoid(logits) >= LABEL_THRESHOLD\n",
           (MULTI_LABEL, "-k", "threshold")),
    Mutant("label_kl_over_rows", "the search's label KL is averaged over rows instead of labels",
           "samp_jax/tasks/proxies.py",
           "(log_not_p - log_not_q), axis=-1)", "(log_not_p - log_not_q), axis=0)",
           (MULTI_LABEL, "-k", "label_kl")),
    Mutant("torch_stride_ignored",
           "PyTorch tensors are read as contiguous whatever their stride (a transposed view)",
           "samp_jax/models/torch_pickle.py",
           "strides=[s * itemsize for s in stride]", "strides=None",
           (TORCH_PICKLE, "-k", "every_dtype")),
    Mutant("torch_offset_ignored",
           "PyTorch tensors are read from the start of their storage whatever their offset",
           "samp_jax/models/torch_pickle.py",
           "elements[offset:] if all(size)", "elements if all(size)",
           (TORCH_PICKLE, "-k", "every_dtype")),
    Mutant("dense_activation_skipped",
           "a sentence-transformers Dense projection runs without its activation",
           "samp_jax/models/heads.py",
           "    y = site(x, activation=epilogue)\n", "    y = site(x, activation=None)\n",
           ("tests/samp_jax/models/test_st_dense.py", "-k", "sentence_transformers or activation_is")),
    Mutant("entity_continues_across_types",
           "a change of type does not end the open entity (B-PER I-LOC: no PER entity)",
           "samp_jax/models/bio_tags.py",
           "            or (before != OUTSIDE and before_kind != kind))", "            or False)",
           ("tests/samp_jax/app/test_predict_entities.py", "tests/samp_jax/models/test_bio_tags.py")),
    Mutant("bioes_end_tag_ignored",
           'an "E-" tag does not end its entity (BIOES: B-PER E-PER I-PER is read as one entity)',
           "samp_jax/models/bio_tags.py",
           "return (before in (END, SINGLE)\n", "return (before in (SINGLE,)\n",
           ("tests/samp_jax/models/test_bio_tags.py", "-k", "seqeval")),
    Mutant("bilou_last_and_unit_swapped",
           'BILOU\'s "L-" read as a single-word entity and "U-" as an entity\'s last word',
           "samp_jax/models/bio_tags.py",
           '"L": END, "U": SINGLE}', '"L": SINGLE, "U": END}',
           ("tests/samp_jax/models/test_bio_tags.py", "-k", "bilou")),
    Mutant("fast_tokenizer_options_ignored",
           "tokenizer.json is read as it is, without the tokenizer_config.json options HF's fast "
           "classes write into it (do_lower_case, strip_accents, add_prefix_space, ...)",
           "samp_jax/models/fast_tokenizer_options.py",
           "    if not changed:\n        return text\n", "    if True:\n        return text\n",
           ("tests/samp_jax/models/test_fast_tokenizer_options.py",)),
    Mutant("wordpiece_lowercase_ignored",
           "a vocab.txt-only folder tokenizes without the lowercasing its config asks for",
           "samp_jax/models/slow_tokenizer.py",
           'lowercase=options["do_lower_case"])', "lowercase=False)",
           (SLOW_TOKENIZER, "-k", "tokenizer_json_hf_wrote or minilm")),
    Mutant("unigram_scores_flattened",
           "a SentencePiece Unigram model is converted with every piece's score equal",
           "samp_jax/models/sentencepiece_tokenizer.py",
           "models.Unigram(scores, unk_id=unk_id",
           "models.Unigram([(piece, 0.0) for piece, _ in scores], unk_id=unk_id",
           (SLOW_TOKENIZER, "-k", "deberta or xlm")),
    Mutant("cut_rows_not_marked",
           "a row cut at the length is not marked truncated (counts and predictions say nothing "
           "was cut)",
           "samp_jax/models/token_rows.py",
           "truncated = np.array([bool(e.overflowing) for e in encodings], bool)",
           "truncated = np.array([False for e in encodings], bool)",
           ("tests/samp_jax/models/test_tokenizer.py",)),
    Mutant("truncation_side_ignored",
           "a tokenizer whose truncation_side is left keeps a long row's first tokens",
           "samp_jax/models/tokenizer.py",
           "direction=self.truncation_side)", 'direction="right")',
           ("tests/samp_jax/models/test_fast_tokenizer_options.py", "-k", "truncation_left")),
    Mutant("modernbert_layer_types_ignored",
           "a ModernBERT config.json written by transformers 5 is read with 4.57's layer pattern "
           "(its layer_types ignored)",
           "samp_jax/models/families/modernbert.py",
           '    types = hf.get("layer_types")\n', "    types = None\n",
           ("tests/samp_jax/models/test_modernbert.py", "-k", "transformers5")),
    Mutant("modernbert_rope_parameters_ignored",
           "a ModernBERT config.json written by transformers 5 is read with 4.57's default RoPE "
           "bases (its rope_parameters ignored)",
           "samp_jax/models/families/modernbert.py",
           '    parameters = hf.get("rope_parameters")\n', "    parameters = None\n",
           ("tests/samp_jax/models/test_modernbert.py", "-k", "transformers5")),
    Mutant("histogram_counts_float32",
           "calibration histograms count in float32, which stops adding at 2^24 a bin",
           "calibrate/calibration/observers.py",
           "values.shape).astype(jnp.int32)\n    return jnp.zeros((bins,), jnp.int32)",
           "values.shape).astype(jnp.float32)\n    return jnp.zeros((bins,), jnp.float32)",
           ("tests/calibrate/test_calibrators.py",)),
    Mutant("quick_gelu_slope_dropped",
           "the kernels' quick GELU computes x sigmoid(x) (SiLU) instead of x sigmoid(1.702 x)",
           "pallas_kernels/epilogue.py",
           '"quick_gelu": lambda y: y / (1.0 + jnp.exp(-QUICK_GELU_SLOPE * y)),',
           '"quick_gelu": lambda y: y / (1.0 + jnp.exp(-y)),',
           ("tests/pallas_kernels/test_numerics.py",)),
    Mutant("nan_outputs_read_as_answers",
           "a row of NaN logits is scored as its argmax (class 0) instead of making the metric NaN",
           "samp_jax/tasks/types.py",
           "    return int((~finite.reshape(len(finite), -1)).any(-1).sum())",
           "    return 0",
           ("tests/faults/test_non_finite_outputs.py", "-k", "nan_logits or labelled_positions")),
    Mutant("latency_other_from_the_default_alone",
           "the latency table's time outside the sites is the FP32 forward minus its sites "
           "(INT8 sites floored when their forward is shorter)",
           "calibrate/search/latency.py",
           "        if slope > 0:\n            other = intercept\n",
           "        if False:\n            other = intercept\n",
           ("tests/calibrate/test_search.py", "-k", "fitted")),
    Mutant("handoff_requantizes_unrounded_float32",
           "the kernels' requantizing epilogue quantizes float32 values, not the 16-bit values the "
           "next site would have read (a static INT8 model served on a GPU differs from the XLA "
           "path the search judged)",
           "pallas_kernels/epilogue.py",
           "        y = y.astype(rounded_to).astype(jnp.float32)\n",
           "        pass\n",
           ("tests/pallas_kernels/test_int8_matmul.py", "-k", "TestInterpret and requantizing")),
    Mutant("accuracy_margin_plain_standard_error",
           "the accuracy margin is the plain paired standard error (zero when no row changed), "
           "not Bonett and Price's adjusted one",
           "samp_jax/tasks/metrics.py",
           "    adjusted = np.concatenate([diff, [1.0, -1.0]])\n",
           "    adjusted = diff\n",
           ("tests/calibrate/test_targets.py", "-k", "guarded_difference")),
    Mutant("f1_bootstrap_without_pseudo_rows",
           "the entity-F1 bootstrap margin leaves out its pseudo-rows (zero when no sentence changed)",
           "samp_jax/tasks/metrics.py",
           "    pseudo_rows=_entity_pseudo_rows)",
           "    pseudo_rows=None)",
           ("tests/calibrate/test_targets.py", "-k", "entity_f1_guarded_drop or few_sentences")),
    Mutant("word_accuracy_counts_ignored_words",
           "word accuracy counts every position of a sentence, ignored words, later pieces and "
           "padding among them, as a word scored",
           "samp_jax/tasks/metrics.py",
           "    scored = gold != IGNORE\n", "    scored = np.ones(gold.shape, bool)\n",
           ("tests/samp_jax/tasks/test_word_accuracy.py",)),
    Mutant("every_word_piece_labelled",
           "a tagger's gold tag is put at every piece of a word, so later pieces are scored "
           "(and trained on) too",
           "samp_jax/data/wnut16.py",
           "        if word not in seen:\n", "        if True:\n",
           ("tests/samp_jax/tasks/test_word_accuracy.py", "-k", "first_piece")),
    Mutant("word_bootstrap_without_pseudo_rows",
           "the word-accuracy bootstrap margin leaves out its pseudo-rows",
           "samp_jax/tasks/metrics.py",
           "    pseudo_rows=_word_pseudo_rows,", "    pseudo_rows=None,",
           ("tests/samp_jax/tasks/test_word_accuracy.py", "-k", "guarded_drop")),
    Mutant("engine_ignores_the_models_threshold",
           "the engine reads a multi-label model's label sets at 0.5 whatever threshold the "
           "model was searched or fine-tuned at",
           "samp_jax/serving/engine.py",
           "            label_threshold = own if self.readout is Readout.LABELS else None\n",
           "            label_threshold = None\n",
           (MULTI_LABEL, "-k", "own_threshold")),
    Mutant("multi_hot_read_as_ids",
           "a multi-hot label column ([0, 1, 1]) is read as label ids, not as the labels where it "
           "holds 1",
           "samp_jax/tasks/files.py",
           "    hot = target == \"labels\" and _multi_hot(\n",
           "    hot = False and _multi_hot(\n",
           (MULTI_LABEL, "-k", "multi_hot")),
    Mutant("attention_context_normalised_by_float_sum",
           "INT8 attention divides the context by the float sum of the probabilities, not by "
           "the sum of the dequantized ones (rows no longer sum to 1)",
           "samp_jax/models/int8_attention.py",
           "    return normalised_context(acc, p_sum, p_scale, v_scale)\n",
           "    return acc.astype(jnp.float32) * p_scale * v_scale / jnp.sum(unnormalised, -1, keepdims=True)\n",
           (INT8_ATTENTION, "-k", "sums_to_one")),
    Mutant("attention_v_scale_per_tensor",
           "INT8 attention quantizes V with one scale per (batch, head) instead of one per channel",
           "samp_jax/models/int8_attention.py",
           "    q, scale = quantize_rows(moved)\n",
           "    q, scale = quantize_rows(moved, act_scale=jnp.max(jnp.abs(moved)) * INV_INT8_MAX)\n",
           (INT8_ATTENTION, "-k", "context_accumulates")),
    Mutant("attention_v_scale_over_padding",
           "INT8 attention takes V's channel scales over the padding keys too",
           "samp_jax/models/int8_attention.py",
           "v = jnp.where(key_mask.reshape(shape), v.astype(jnp.float32), 0.0)", "v = v.astype(jnp.float32)",
           (INT8_ATTENTION, "-k", "padding_keys")),
    Mutant("attention_probability_scale",
           "INT8 attention quantizes the probabilities at 1/100 instead of 1/127",
           "samp_jax/models/int8_attention.py",
           "PROBABILITY_SCALE = INV_INT8_MAX", "PROBABILITY_SCALE = 0.01",
           (INT8_ATTENTION, "-k", "context_accumulates")),
    Mutant("int8_attention_on_cudnn",
           "automatic choice sends an INT8 attention to cuDNN on a GPU",
           "samp_jax/models/layers.py",
           "if any(int8) and implementation is None:", "if False:",
           (INT8_ATTENTION, "-k", "off_cudnn")),
    Mutant("star_reaches_attention_sites",
           'a rule\'s sites "*" also sets the attention matmuls',
           "samp_jax/core/precision.py",
           "return (self.layers is None or layer in self.layers) and site in SITES",
           "return self.layers is None or layer in self.layers",
           (PRECISION_MAP, "-k", "reached_only_by_naming")),
    Mutant("int8_attention_flops_counted_as_float",
           "the INT8 FLOP share counts INT8 attention matmuls as float",
           "calibrate/search/latency.py",
           "        add(pair.scores, per)\n", "        add(None, per)\n",
           ("tests/calibrate/test_search.py", "-k", "flop_fraction")),
)


def copy_tree(target: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
        else:
            shutil.copy2(source, target / name)


def run_tests(tree: Path, groups: list[list[str]], report: Path,
              stop_first: bool) -> tuple[bool, list[str], float]:
    """One pytest run per group of arguments (`[file, "-k", expr]`) in `tree`, tests marked
    slow deselected; returns (all passed, failed test ids, seconds)."""
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
            f"--junitxml={report}", *(["-x"] if stop_first else [])]
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    start = time.perf_counter()
    failed: list[str] = []
    ok = True
    for selection in groups:
        report.unlink(missing_ok=True)
        done = subprocess.run([*base, *selection], cwd=tree, env=env, capture_output=True,
                              text=True, timeout=900)
        failed += failures(report)
        ok = ok and done.returncode == 0
        if done.returncode not in (0, 1):  # collection errors, interrupted, nothing selected
            failed.append(f"pytest exit {done.returncode}: {done.stdout.strip().splitlines()[-1:]}")
        if failed and stop_first:
            break
    return ok, failed, time.perf_counter() - start


def baseline_selection(mutants) -> tuple[str, ...]:
    """One pytest run covering every mutant's tests: their files, and their `-k` expressions
    or'ed (a superset of the selected tests)."""
    files, expressions = [], []
    for mutant in mutants:
        for selection in split_runs(mutant.tests):
            files.append(selection[0])
            expressions.append(selection[2] if len(selection) > 2 else None)
    if None in expressions:  # some file runs whole: run the files whole
        return tuple(dict.fromkeys(files))
    return (*dict.fromkeys(files), "-k", " or ".join(f"({e})" for e in dict.fromkeys(expressions)))


def split_runs(args: tuple[str, ...]) -> list[list[str]]:
    """`(file, -k, expr, file2, -k, expr2)` -> one pytest run per `file -k expr` group."""
    runs, current = [], []
    for arg in args:
        if arg.endswith(".py") and current and current[-1] != "-k":
            runs.append(current)
            current = []
        current.append(arg)
    return runs + [current]


def failures(report: Path) -> list[str]:
    if not report.is_file():
        return []
    out = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(f"{case.get('classname')}::{case.get('name')}")
    return out


def apply(tree: Path, mutant: Mutant) -> str:
    """Patches the copy; returns the original text to restore."""
    path = tree / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.name}: {mutant.path} holds the text to replace {count} "
                         "times, expected exactly once (update the mutant to the code)")
    path.write_text(text.replace(mutant.old, mutant.new))
    return text


def render(result: dict) -> str:
    p = result["provenance"]
    lines = ["# Mutation check of the quantization core", "",
             f"Rendered from `mutation.json` (commit `{p['commit']}`, {p['date']}, "
             f"{p['device']}); produced by `{p['command']}`.", "",
             "Each mutant is one deliberate fault, applied alone to a copy of the tree; the "
             "selected fast tests run against it and must fail. The unmutated copy passed "
             f"every selected test first ({result['baseline_seconds']:.0f} s).", "",
             "| mutant | fault | killed | killing test | seconds |", "|---|---|---|---|---|"]
    for row in result["mutants"]:
        killer = row["killing_tests"][0] if row["killing_tests"] else "-"
        description = row["description"].replace("|", "\\|")  # a pipe would end the cell
        lines.append(f"| `{row['name']}` | {description} | "
                     f"{'yes' if row['killed'] else '**no**'} | `{killer}` | {row['seconds']:.0f} |")
    killed = sum(row["killed"] for row in result["mutants"])
    lines += ["", f"{killed} of {len(result['mutants'])} mutants killed; total "
              f"{result['total_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="mutant names to run (default: all)")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/results")
    parser.add_argument("--render", action="store_true",
                        help="only re-render mutation.md from the committed mutation.json")
    args = parser.parse_args(argv)
    if args.render:
        (RESULTS / "mutation.md").write_text(render(json.loads((RESULTS / "mutation.json").read_text())))
        return 0
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown mutants {sorted(unknown)}; choose from {[m.name for m in MUTANTS]}")
    start, commit = time.perf_counter(), code_commit()  # the code copied, not HEAD at the end
    with tempfile.TemporaryDirectory(prefix="samp-mutation-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        report = tree / "report.xml"
        ok, failed, baseline_seconds = run_tests(tree, [list(baseline_selection(mutants))], report,
                                                 stop_first=False)
        print(f"baseline: {'pass' if ok else 'FAIL'} ({baseline_seconds:.0f} s)", flush=True)
        if not ok:
            print("the unmutated tree fails:", *failed, sep="\n  ")
            return 1
        rows = []
        for mutant in mutants:
            original = apply(tree, mutant)
            try:
                passed, failed, seconds = run_tests(tree, split_runs(mutant.tests), report,
                                                    stop_first=True)
            finally:
                (tree / mutant.path).write_text(original)
            killed = not passed
            rows.append({"name": mutant.name, "description": mutant.description, "file": mutant.path,
                         "tests": list(mutant.tests), "killed": killed, "killing_tests": failed,
                         "seconds": round(seconds, 1)})
            print(f"{mutant.name:<40} {'killed' if killed else 'SURVIVED'} by "
                  f"{failed[0] if failed else '-'} ({seconds:.0f} s)", flush=True)
    result = {"provenance": {
                  "command": "python tools/mutation_check.py", "commit": commit,
                  "device": f"{platform.machine()}, {os.cpu_count()} cores, JAX on CPU",
                  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")},
              "baseline_seconds": round(baseline_seconds, 1),
              "total_seconds": round(time.perf_counter() - start, 1), "mutants": rows}
    if not args.no_write and not args.only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "mutation.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "mutation.md").write_text(render(result))
    return 0 if all(row["killed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
