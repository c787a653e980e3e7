"""The DeBERTa-v2/v3 pieces of `tools/make_golden.py` (run in the golden venv): a SentencePiece
tokenizer trained on the golden texts and converted by HF's own DeBERTa-v2 fast tokenizer, the
tiny configs, and a second, v2-style variant checked beside the v3-style family folder.

v3-style (the family folder): disentangled attention with both terms through the shared
query/key projections (`share_att_key`), log buckets (`position_buckets` 8 over 40 positions, so
sequences of the golden length reach the log range), a layer-normed relative table, no
absolute positions and no token types.
v2-style (`variant/`): separate `pos_key_proj` / `pos_query_proj`, exact relative distances up
to 12 (so longer distances clip to the span), absolute positions, two token types and the
older `pos_att_type: "c2p|p2c"` string.
Without relative attention (`nonrelative/`, a sequence classifier): the v3 config with
`relative_attention: false`, so HF still divides the scores by `sqrt(3 head_dim)` (its scale
follows `pos_att_type` alone) and still writes the unused `encoder.LayerNorm` of
`norm_rel_ebd`; absolute positions, and a `tanh` ContextPooler (`pooler_hidden_act`).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")


def tokenizer(corpus: list[str], work: Path, max_length: int):
    """A SentencePiece unigram model (DeBERTa-v3's layout: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3,
    [MASK] appended) trained on `corpus`, loaded by HF's slow tokenizer and converted to
    `tokenizer.json` by its fast one; both must give the same ids."""
    import sentencepiece as spm

    prefix = work / "spm"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_prefix=str(prefix), vocab_size=180,
        model_type="unigram", character_coverage=1.0, num_threads=1, seed_sentencepiece_size=100000,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", minloglevel=2)
    model_file = work / "spm.model"
    (work / "spm.model").write_bytes(prefix.with_suffix(".model").read_bytes())
    slow = transformers.DebertaV2Tokenizer(vocab_file=str(model_file), model_max_length=max_length)
    fast = transformers.DebertaV2TokenizerFast(vocab_file=str(model_file), model_max_length=max_length)
    assert fast.convert_ids_to_tokens([0, 1, 2, 3]) == list(SPECIALS), fast.convert_ids_to_tokens([0, 1, 2, 3])
    for text in corpus:
        assert slow(text)["input_ids"] == fast(text)["input_ids"], text
    return fast


def config(vocab_size: int, variant: str = "v3", **extra):
    """The tiny DeBERTa config of `variant` ('v3' or 'v2', see the module doc); `extra` keys
    override it."""
    common = dict(vocab_size=vocab_size, attn_implementation="eager", num_hidden_layers=2,
                  hidden_size=30, num_attention_heads=3, intermediate_size=37,
                  max_position_embeddings=40, hidden_act="gelu", layer_norm_eps=1e-7,
                  relative_attention=True, pad_token_id=0)
    if variant == "v3":
        common |= dict(type_vocab_size=0, position_biased_input=False, share_att_key=True,
                       pos_att_type=["p2c", "c2p"], position_buckets=8, max_relative_positions=-1,
                       norm_rel_ebd="layer_norm")
    else:
        common |= dict(type_vocab_size=2, position_biased_input=True, share_att_key=False,
                       pos_att_type="c2p|p2c", position_buckets=-1, max_relative_positions=12,
                       norm_rel_ebd="none")
    return transformers.DebertaV2Config(**(common | extra))


def variant(out: Path, batches: dict, vocab_size: int, randomize, seed: int) -> None:
    """`out/variant/`: the v2-style base model, and its hidden states on the family's batches
    (with token types 1 on the second segment of pairs) in `out/variant/golden.npz`."""
    folder = out / "variant"
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config(vocab_size, "v2")).eval()
    randomize(model, {n for n, _ in model.named_parameters()}, seed)
    model.save_pretrained(folder, safe_serialization=True)
    arrays = {}
    for name, (enc, _) in batches.items():
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            arrays[f"{name}_{key}"] = enc[key].numpy().astype(np.int32)
        arrays[f"{name}_hidden"] = hidden.numpy().astype(np.float32)
    assert arrays["pair_token_type_ids"].max() == 1, "pairs should carry token type 1"
    np.savez_compressed(folder / "golden.npz", **arrays)
    (folder / "README.json").write_text(json.dumps(
        {"what": "v2-style DeBERTa (see tools/golden_deberta_v2.py)", "seed": seed}, indent=1))
    print(f"deberta-v2 variant: |hidden| {np.abs(arrays['single_hidden']).max():.2f}")


def nonrelative(out: Path, batches: dict, vocab_size: int, randomize, seed: int) -> None:
    """`out/nonrelative/`: the sequence classifier without relative attention (see the module
    doc), with its logits on the family's batches and its backbone's hidden states on the pair
    batch in `out/nonrelative/golden.npz`."""
    folder = out / "nonrelative"
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_config(
        config(vocab_size, relative_attention=False, position_biased_input=True,
               pooler_hidden_act="tanh", num_labels=2)).eval()
    randomize(model, {n for n, _ in model.named_parameters()}, seed)
    model.save_pretrained(folder, safe_serialization=True)
    arrays = {}
    for name, (enc, _) in batches.items():
        with torch.no_grad():
            arrays[f"{name}_logits"] = model(**enc).logits.numpy().astype(np.float32)
            if name == "pair":
                arrays["pair_hidden"] = model.deberta(**enc).last_hidden_state.numpy().astype(np.float32)
    np.savez_compressed(folder / "golden.npz", **arrays)
    (folder / "README.json").write_text(json.dumps(
        {"what": "DeBERTa without relative attention (see tools/golden_deberta_v2.py); the inputs "
                 "are ../golden.npz's", "seed": seed}, indent=1))
    print(f"deberta-v2 nonrelative: |logits| {np.abs(arrays['pair_logits']).max():.2f}")
