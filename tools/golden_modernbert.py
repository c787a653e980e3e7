"""ModernBERT's parts of the golden files (tests/golden/families/modernbert), with HF's own code.

`tools/make_golden.py` builds the family folders (base, seqcls, tokcls, sentence) as for every
family, with the tokenizer and config below; `extras` then adds what only ModernBERT has:
CLS-pooled logits beside the mean-pooled ones, and a checkpoint with every `*_bias` flag on.

The tiny config makes each ModernBERT piece visible: 3 layers with `global_attn_every_n_layers=2`
(global, local, global), a local window of 8 tokens (the golden batches are ~30 wide, so the
window cuts), RoPE bases far apart (1000 global, 10 local: mixing them up changes the output),
a gated FFN of odd width, and no biases (the default).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers

SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]  # after the BPE vocab, as ModernBERT's


def tokenizer(corpus, max_length: int):
    """A byte-level BPE trained on the golden texts, with ModernBERT's special tokens at the end
    of the vocabulary and its post-processor: `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]`."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus, trainer)
    backend.add_special_tokens([AddedToken(t, lstrip=t == "[MASK]") for t in SPECIALS])
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]", model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"])


def config(vocab_size: int, pad_token_id: int, **extra):
    return transformers.ModernBertConfig(
        vocab_size=vocab_size, hidden_size=30, num_attention_heads=3, intermediate_size=37,
        num_hidden_layers=3, global_attn_every_n_layers=2, local_attention=8,
        global_rope_theta=1000.0, local_rope_theta=10.0, max_position_embeddings=64,
        classifier_pooling="mean", pad_token_id=pad_token_id, cls_token_id=pad_token_id - 2,
        sep_token_id=pad_token_id - 1, bos_token_id=pad_token_id - 2, eos_token_id=pad_token_id - 1,
        attn_implementation="eager", **extra)


def extras(out: Path, seed: int, randomize_named) -> None:
    """Adds `{batch}_seq_cls_logits` (the seqcls weights pooled by CLS) and a `biased` folder
    (a sequence classifier with every `*_bias` flag on: `{batch}_biased_hidden`,
    `{batch}_biased_seq_logits`) to the family's golden.npz."""
    arrays = dict(np.load(out / "golden.npz"))
    batches = {b: {"input_ids": torch.tensor(arrays[f"{b}_input_ids"]).long(),
                   "attention_mask": torch.tensor(arrays[f"{b}_attention_mask"]).long()}
               for b in ("single", "pair")}
    seq = transformers.ModernBertForSequenceClassification.from_pretrained(
        out / "seqcls", attn_implementation="eager").eval()
    seq.config.classifier_pooling = "cls"
    base_config = json.loads((out / "base" / "config.json").read_text())
    biased_config = config(base_config["vocab_size"], base_config["pad_token_id"], num_labels=3,
                           attention_bias=True, mlp_bias=True, norm_bias=True, classifier_bias=True)
    torch.manual_seed(seed)
    biased = transformers.ModernBertForSequenceClassification(biased_config).eval()
    randomize_named(biased, {n for n, _ in biased.named_parameters()}, seed)
    shutil.rmtree(out / "biased", ignore_errors=True)
    biased.save_pretrained(out / "biased", safe_serialization=True)
    for batch, enc in batches.items():
        with torch.no_grad():
            arrays[f"{batch}_seq_cls_logits"] = seq(**enc).logits.numpy().astype(np.float32)
            arrays[f"{batch}_biased_hidden"] = biased.model(**enc).last_hidden_state.numpy().astype(np.float32)
            arrays[f"{batch}_biased_seq_logits"] = biased(**enc).logits.numpy().astype(np.float32)
    assert not np.allclose(arrays["pair_seq_cls_logits"], arrays["pair_seq_logits"], atol=1e-3)
    np.savez_compressed(out / "golden.npz", **arrays)
    print(f"modernbert extras: cls-pooled logits, biased checkpoint "
          f"|logits| {np.abs(arrays['pair_biased_seq_logits']).max():.2f}")
