"""A small DeBERTa-v3-shaped classifier for polarity, randomly initialised, with a SentencePiece
tokenizer trained on the polarity train split only (no dev/test text reaches the vocabulary).
No DeBERTa checkpoint ships inside a package samp-jax can install, so the accuracy table in
docs/families.md fine-tunes this from scratch.

Two venvs (as `make golden`):

    .venv/bin/python -c "from samp_jax.data.polarity import polarity_splits; \
        open('OUT/train.txt', 'w').write('\\n'.join(e.text for e in polarity_splits().train))"
    .golden-venv/bin/python tools/deberta_polarity_init.py OUT      # writes OUT/init
    samp-jax finetune --model OUT/init --data polarity --out OUT/ft --epochs 4 --batch-size 32 \
        --learning-rate 3e-4
"""

import shutil
import sys
from pathlib import Path

import sentencepiece as spm
import torch
import transformers


def main(out: Path) -> None:
    init = out / "init"
    shutil.rmtree(init, ignore_errors=True)
    texts = (out / "train.txt").read_text().split("\n")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(out / "spm"), vocab_size=4000,
        model_type="unigram", character_coverage=1.0, num_threads=1, pad_id=0, bos_id=1, eos_id=2,
        unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
        minloglevel=2)
    tokenizer = transformers.DebertaV2TokenizerFast(vocab_file=str(out / "spm.model"), model_max_length=128)
    config = transformers.DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=512, max_position_embeddings=128, type_vocab_size=0,
        relative_attention=True, position_buckets=32, max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"], share_att_key=True, position_biased_input=False,
        norm_rel_ebd="layer_norm", layer_norm_eps=1e-7, hidden_act="gelu",
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    torch.manual_seed(0)
    model = transformers.DebertaV2ForSequenceClassification(config)
    model.save_pretrained(init, safe_serialization=True)
    tokenizer.save_pretrained(init)
    print(f"{init}: vocab {len(tokenizer)}, {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
