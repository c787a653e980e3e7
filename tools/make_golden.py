"""Writes tests/golden/ with Hugging Face's own code (torch + transformers 4.57, Flax for msgpack).

Run through `make golden` (tools/make_golden.sh), which builds the separate Python 3.11 venv
this needs; torch never becomes a dependency of samp-jax itself.

Usage: python tools/make_golden.py --minilm MODEL_DIR --out tests/golden
       python tools/make_golden.py --families-only --out tests/golden   (tests/golden/families only)
       python tools/make_golden.py --family ernie --out tests/golden    (one family folder only)
       python tools/make_golden.py --st-dense-only --out tests/golden   (tests/golden/st_dense only)
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import golden_deberta_v2
import transformers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
)

SENTENCES = [
    "A man is playing a guitar.",
    "Two dogs run across a snowy field while their owner watches from the porch.",
    "Hi",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates.",
    "A woman is slicing tomatoes in a small kitchen.",
    "Children are playing soccer in the park.",
    "Quantization makes inference cheaper without retraining.",
    "The quick brown fox jumps over the lazy dog.",
    "Nobody is outside.",
    "An old photograph of a crowded train station in the rain, taken from a balcony above the tracks, black and white.",
    "She didn't like the movie at all; it was far too long and rather dull.",
    "Élodie's café serves crème brûlée — naïve façade!",
    "1234 5678 90",
    "What time does the museum open on Sundays?",
    "A cat sleeps.",
    "Researchers measured the latency of the encoder on a GPU.",
]
PAIRS = [
    ("A man is playing a guitar.", "A person plays an instrument."),
    ("A man is playing a guitar.", "Nobody is playing music."),
    ("Two women are walking on the beach.", "Two people are outdoors."),
    ("A child is eating ice cream.", "A kid sleeps in his bed at night, dreaming of a long trip."),
    ("A dog catches a frisbee.", "An animal is playing."),
    ("The sky is blue.", "The sky is green."),
]


def minilm(model_dir: Path, out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    arrays = {}
    for name, batch in (
        ("single", tokenizer(SENTENCES, padding=True, return_tensors="pt")),
        ("pair", tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True,
                           return_tensors="pt")),
    ):
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        # sentence-transformers' Pooling(mean) + Normalize modules, written out.
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        embedding = torch.nn.functional.normalize(pooled, p=2, dim=1)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            arrays[f"{name}_{key}"] = batch[key].numpy().astype(np.int32)
        arrays[f"{name}_hidden"] = hidden.numpy().astype(np.float32)
        arrays[f"{name}_embedding"] = embedding.numpy().astype(np.float32)
    try:  # cross-check the written-out pooling against sentence-transformers itself
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer(str(model_dir), device="cpu")
        st_emb = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
        assert np.allclose(st_emb, arrays["single_embedding"], atol=1e-5), "ST disagrees"
        print("sentence-transformers agrees with the written-out pooling")
    except ImportError:
        print("sentence-transformers not installed; skipped its cross-check")
    np.savez_compressed(out / "minilm.npz", **arrays)
    (out / "minilm_texts.json").write_text(
        json.dumps({"sentences": SENTENCES, "pairs": PAIRS}, indent=1, ensure_ascii=False))


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights large enough that every parameter visibly moves the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "LayerNorm.weight" in name:
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.2 * noise)


def tiny_head(cls, flax_cls_name: str, num_labels: int, out: Path, seed: int) -> None:
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
                        num_labels=num_labels, hidden_act="gelu", attn_implementation="eager")
    torch.manual_seed(seed)
    model = cls(config).eval()
    randomize(model, seed)
    st_dir, mp_dir = out / "safetensors", out / "msgpack"
    for d in (st_dir, mp_dir):
        shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(st_dir, safe_serialization=True)
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, config.vocab_size, size=(4, 12)).astype(np.int64)
    lengths = np.array([12, 9, 5, 1])
    attention_mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int64)
    token_type_ids = ((np.arange(12)[None] >= (lengths[:, None] // 2)) & (attention_mask == 1)).astype(np.int64)
    input_ids = np.where(attention_mask == 1, input_ids, 0)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(attention_mask),
                       token_type_ids=torch.tensor(token_type_ids)).logits.numpy()
    # The HF Flax class converts the torch weights and writes flax_model.msgpack.
    flax_cls = getattr(transformers, flax_cls_name)
    flax_model = flax_cls.from_pretrained(st_dir, from_pt=True)
    flax_logits = np.asarray(flax_model(input_ids=input_ids, attention_mask=attention_mask,
                                        token_type_ids=token_type_ids).logits)
    assert np.allclose(flax_logits, logits, atol=1e-4), np.abs(flax_logits - logits).max()
    flax_model.save_pretrained(mp_dir)
    (mp_dir / "model.safetensors").unlink(missing_ok=True)
    torch_copies(cls, st_dir, out)
    np.savez(out / "golden.npz", input_ids=input_ids.astype(np.int32),
             attention_mask=attention_mask.astype(np.int32),
             token_type_ids=token_type_ids.astype(np.int32), logits=logits.astype(np.float32))
    print(f"{out.name}: logits {logits.shape}, |logits| max {np.abs(logits).max():.3f}")


# ---------------------------------------------------------------------------------------------
# Model families: tiny random checkpoints of six HF encoder families, each with its own kind of
# tokenizer, written and run by Hugging Face's (and sentence-transformers') own code.
# ---------------------------------------------------------------------------------------------

FAMILY_MAX_LEN = 40
SEQ_LABELS = {0: "neg", 1: "neu", 2: "pos"}
TOK_LABELS = {0: "O", 1: "B-X", 2: "I-X", 3: "B-Y", 4: "I-Y"}
# The pooling each family's sentence-transformers folder declares (all modes are covered).
FAMILY_POOLING = {"bert": "cls", "roberta": "mean", "xlm-roberta": "max",
                  "distilbert": "mean_sqrt_len_tokens", "electra": "mean", "mpnet": "cls",
                  "modernbert": "mean", "deberta-v2": "mean",
                  # RoBERTa's and BERT's model under other model types
                  "camembert": "cls", "data2vec-text": "max", "ernie": "mean"}
# golden.npz key suffix -> sentence-transformers Pooling mode.
POOL_MODES = {"cls": "cls", "mean": "mean", "max": "max", "mean_sqrt_len": "mean_sqrt_len_tokens"}
# The HF Flax sequence classifier of each family (MPNet has none).
FLAX_SEQCLS = {"bert": "FlaxBertForSequenceClassification",
               "roberta": "FlaxRobertaForSequenceClassification",
               "xlm-roberta": "FlaxXLMRobertaForSequenceClassification",
               "distilbert": "FlaxDistilBertForSequenceClassification",
               "electra": "FlaxElectraForSequenceClassification"}
FAMILY_SEEDS = {"bert": 100, "roberta": 200, "xlm-roberta": 300, "distilbert": 400,
                "electra": 500, "mpnet": 600, "modernbert": 700, "deberta-v2": 700,
                "camembert": 900, "data2vec-text": 1000, "ernie": 1100}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model")


def _corpus() -> list[str]:
    return SENTENCES + [text for pair in PAIRS for text in pair]


def _wordpiece_tokenizer(family: str, work: Path):
    """A WordPiece vocab.txt built (deterministically) from the golden texts: the characters, each
    as `##` continuation too, the words seen twice or more, and frequent 2-3 character
    continuation pieces; wrapped in the family's fast tokenizer (uncased, accents stripped).
    The em dash is left out so that [UNK] occurs."""
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in _corpus()
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word} - {"\u2014"})
    pieces = Counter()
    for word, n in counts.items():
        for k in (2, 3):
            for i in range(1, len(word) - k + 1):
                pieces[word[i:i + k]] += n
    words = sorted((w for w, n in counts.items() if n >= 2 and len(w) > 1), key=lambda w: (-counts[w], w))
    subs = sorted((p for p, n in pieces.items() if n >= 4), key=lambda p: (-pieces[p], p))
    if family == "mpnet":  # MPNet's vocab: <s> <pad> </s> <unk> first, [UNK] is its unk, <mask> last
        specials, last = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"], ["<mask>"]
    else:
        specials, last = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], []
    vocab = specials + chars + ["##" + c for c in chars] + words + ["##" + p for p in subs] + last
    vocab = list(dict.fromkeys(vocab))
    vocab_file = work / "vocab.txt"
    vocab_file.write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    cls = {"bert": transformers.BertTokenizerFast, "distilbert": transformers.DistilBertTokenizerFast,
           "electra": transformers.ElectraTokenizerFast, "mpnet": transformers.MPNetTokenizerFast,
           "ernie": transformers.BertTokenizerFast}[family]  # AutoTokenizer's class for ernie
    return cls(vocab_file=str(vocab_file), model_max_length=FAMILY_MAX_LEN)


def _roberta_tokenizer(work: Path):
    """A byte-level BPE (vocab.json + merges.txt) trained on the golden texts."""
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(_corpus(), vocab_size=300, min_frequency=2, show_progress=False,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    trainer.save_model(str(work))
    return transformers.RobertaTokenizerFast(vocab_file=str(work / "vocab.json"),
                                             merges_file=str(work / "merges.txt"),
                                             model_max_length=FAMILY_MAX_LEN)


def _xlm_roberta_tokenizer():
    """A SentencePiece-style Unigram model trained on the golden texts, with XLM-R's specials
    (<s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last) and its post-processor (as HF's converter
    writes it): `<s> A </s>` and `<s> A </s></s> B </s>`."""
    from tokenizers import SentencePieceUnigramTokenizer, Tokenizer, processors

    trainer = SentencePieceUnigramTokenizer()
    trainer.train_from_iterator(_corpus(), vocab_size=200, show_progress=False,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>")
    # The trainer's piece set is reproducible, its scores and order are not (hash-order ties):
    # rescore each piece by its log frequency as a substring of the pre-tokenized texts.
    state = json.loads(trainer._tokenizer.to_str())
    specials, trained = state["model"]["vocab"][:4], [p for p, _ in state["model"]["vocab"][4:]]
    assert [p for p, _ in specials] == ["<s>", "<pad>", "</s>", "<unk>"], specials
    words = [word for text in _corpus() for word, _ in trainer._tokenizer.pre_tokenizer.pre_tokenize_str(
        trainer._tokenizer.normalizer.normalize_str(text))]
    counts = {p: sum(w.count(p) for w in words) for p in trained}
    total = sum(counts.values())
    scored = sorted(((p, float(np.log(max(n, 1) / total))) for p, n in counts.items()),
                    key=lambda item: (-item[1], item[0]))
    state["model"]["vocab"] = specials + [[p, s] for p, s in scored]
    backend = Tokenizer.from_str(json.dumps(state))
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", backend.token_to_id("<s>")), ("</s>", backend.token_to_id("</s>"))])
    return transformers.XLMRobertaTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=FAMILY_MAX_LEN)


def _camembert_tokenizer(work: Path):
    """A SentencePiece unigram model in CamemBERT's layout (`sentencepiece.bpe.model` with
    <unk>=0 <s>=1 </s>=2, as camembert-base's; no normalization rule), trained on the golden texts and converted by
    HF's own `CamembertConverter` (fairseq ids <s>NOTUSED=0 <pad>=1 </s>NOTUSED=2 <unk>=3
    <unk>NOTUSED=4, then the pieces from <s>=5, <mask> last); the slow and the fast tokenizer
    must give the same ids."""
    import sentencepiece as spm

    prefix = work / "spm_camembert"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_prefix=str(prefix), vocab_size=180,
        model_type="unigram", character_coverage=1.0, num_threads=1, seed_sentencepiece_size=100000,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
        # no precompiled_charsmap: nmt_nfkc's (~240 kB, copied into every tokenizer.json) would
        # make the folder several times the others' size; tests/golden/slow_tokenizers.json
        # checks the charsmap normalizer
        normalization_rule_name="identity")
    model_file = work / "sentencepiece.bpe.model"
    model_file.write_bytes(prefix.with_suffix(".model").read_bytes())
    slow = transformers.CamembertTokenizer(vocab_file=str(model_file), model_max_length=FAMILY_MAX_LEN)
    fast = transformers.CamembertTokenizerFast(vocab_file=str(model_file),
                                               model_max_length=FAMILY_MAX_LEN)
    assert fast.convert_ids_to_tokens([0, 1, 2, 3, 5, 6]) == [
        "<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<s>", "</s>"], fast.convert_ids_to_tokens(range(7))
    for text in _corpus():
        assert slow(text)["input_ids"] == fast(text)["input_ids"], text
    for a, b in PAIRS:
        assert slow(a, b)["input_ids"] == fast(a, b)["input_ids"], (a, b)
    return fast


def build_tokenizer(name: str, work: Path):
    """The family's tokenizer, trained on the golden texts (`work`: a scratch folder)."""
    if name in ("roberta", "data2vec-text"):  # AutoTokenizer's class for data2vec-text
        return _roberta_tokenizer(work)
    if name == "camembert":
        return _camembert_tokenizer(work)
    if name == "xlm-roberta":
        return _xlm_roberta_tokenizer()
    if name == "modernbert":
        import golden_modernbert
        return golden_modernbert.tokenizer(_corpus(), FAMILY_MAX_LEN)
    if name == "deberta-v2":
        return golden_deberta_v2.tokenizer(_corpus(), work, FAMILY_MAX_LEN)
    return _wordpiece_tokenizer(name, work)


def _family_config(family: str, vocab_size: int, **extra):
    if family == "modernbert":  # tools/golden_modernbert.py; [PAD] is the 4th special from the end
        import golden_modernbert
        return golden_modernbert.config(vocab_size, vocab_size - 2, **extra)
    common = dict(vocab_size=vocab_size, attn_implementation="eager", **extra)
    layers = dict(num_hidden_layers=2, hidden_size=30, num_attention_heads=3, intermediate_size=37)
    if family == "bert":
        return transformers.BertConfig(**common, **layers, max_position_embeddings=40,
                                       type_vocab_size=2, hidden_act="gelu")
    if family in ("roberta", "xlm-roberta", "camembert", "data2vec-text"):
        cls = {"roberta": transformers.RobertaConfig, "xlm-roberta": transformers.XLMRobertaConfig,
               "camembert": transformers.CamembertConfig,
               "data2vec-text": transformers.Data2VecTextConfig}[family]
        return cls(**common, **layers, max_position_embeddings=40 + 1 + 1, type_vocab_size=1,
                   hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if family == "ernie":  # ERNIE 3.0's layout: a task-type table (row 0 is added), 4 token types
        return transformers.ErnieConfig(**common, **layers, max_position_embeddings=40,
                                        type_vocab_size=4, use_task_id=True, task_type_vocab_size=3,
                                        hidden_act="gelu", layer_norm_eps=1e-5)
    if family == "distilbert":
        return transformers.DistilBertConfig(**common, dim=30, n_layers=2, n_heads=3, hidden_dim=37,
                                             max_position_embeddings=40, activation="gelu",
                                             sinusoidal_pos_embds=False, pad_token_id=0)
    if family == "electra":
        return transformers.ElectraConfig(**common, **layers, embedding_size=18,
                                          max_position_embeddings=40, type_vocab_size=2,
                                          hidden_act="gelu_new")
    if family == "mpnet":
        return transformers.MPNetConfig(**common, **layers, max_position_embeddings=40 + 1 + 1,
                                        relative_attention_num_buckets=32, hidden_act="gelu",
                                        pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if family == "deberta-v2":
        return golden_deberta_v2.config(vocab_size, **extra)
    raise ValueError(family)


def _randomize_named(model: torch.nn.Module, names, seed: int, scale: float = 0.2) -> None:
    """Like `randomize`, for the parameters in `names` only; finds LayerNorms by module type
    (DistilBERT names its own `sa_layer_norm` / `output_layer_norm`)."""
    ln_weights = {f"{mod_name}.weight" for mod_name, module in model.named_modules()
                  if isinstance(module, torch.nn.LayerNorm)}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name not in names:
                continue
            noise = torch.randn(param.shape, generator=gen)
            param.copy_(1.0 + scale * noise if name in ln_weights else scale * noise)


def _head_model(auto_cls, config, base: torch.nn.Module, seed: int) -> torch.nn.Module:
    """An `auto_cls` model whose backbone is `base`'s weights and whose head is random."""
    torch.manual_seed(seed)
    model = auto_cls.from_config(config).eval()
    prefix = model.base_model_prefix
    missing, unexpected = getattr(model, prefix).load_state_dict(base.state_dict(), strict=False)
    assert not missing, missing
    assert all(k.startswith("pooler.") for k in unexpected), unexpected
    head = {n for n, _ in model.named_parameters() if not n.startswith(prefix + ".")}
    assert head, "no head parameters"
    _randomize_named(model, head, seed)
    return model


def _check_tokenizer(tokenizer, folder: Path) -> None:
    """tokenizer.json read by the `tokenizers` library (what samp-jax reads) must give the HF
    fast tokenizer's ids, for single texts and for pairs."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in _corpus():
        assert raw.encode(text).ids == tokenizer(text, verbose=False)["input_ids"], text
    for a, b in PAIRS:
        assert raw.encode(a, b).ids == tokenizer(a, b, verbose=False)["input_ids"], (a, b)


def _write_st_folder(base_dir: Path, st_dir: Path, hidden: int, mode: str) -> None:
    """A sentence-transformers folder in the format of the Hub's models (e.g. all-MiniLM-L6-v2):
    the base checkpoint at the root, then Pooling and Normalize. sentence-transformers 5.x's own
    `save` writes renamed module types (`sentence_transformers.base.modules...`) and a
    `pooling_mode` string instead; it still loads this classic format, which is checked below."""
    import sentence_transformers

    shutil.copytree(base_dir, st_dir)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]
    (st_dir / "modules.json").write_text(json.dumps(modules, indent=2))
    (st_dir / "1_Pooling").mkdir()
    (st_dir / "2_Normalize").mkdir()
    pooling = {"word_embedding_dimension": hidden}
    keys = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
            "max": "pooling_mode_max_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
            "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    pooling |= {key: m == mode for m, key in keys.items()}
    pooling |= {"include_prompt": True}
    (st_dir / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=4))
    (st_dir / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": FAMILY_MAX_LEN, "do_lower_case": False}, indent=4))
    (st_dir / "config_sentence_transformers.json").write_text(json.dumps(
        {"__version__": {"sentence_transformers": sentence_transformers.__version__,
                         "transformers": transformers.__version__, "pytorch": torch.__version__},
         "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))


# A cased tokenizer (byte-level BPE) lowercased by sentence-transformers, and a max_seq_length
# shorter than the tokenizer's limit (the golden texts run up to ~30 tokens).
ST_SETTINGS = {"max_seq_length": 12, "do_lower_case": True}


def _sentence_settings(out: Path, texts: list[str]) -> None:
    """`out/sentence_settings/`: a `sentence_bert_config.json` with `ST_SETTINGS`, to lay over
    the family's `sentence/` folder, and what SentenceTransformer encodes `texts` to with it
    (`golden.npz`); the weights and tokenizer are `sentence/`'s, not copied."""
    import tempfile

    from sentence_transformers import SentenceTransformer

    folder = out / "sentence_settings"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    settings = json.loads((out / "sentence" / "sentence_bert_config.json").read_text()) | ST_SETTINGS
    (folder / "sentence_bert_config.json").write_text(json.dumps(settings, indent=4))
    with tempfile.TemporaryDirectory() as tmp:
        layered = Path(tmp) / "sentence"
        shutil.copytree(out / "sentence", layered)
        shutil.copy(folder / "sentence_bert_config.json", layered / "sentence_bert_config.json")
        st = SentenceTransformer(str(layered), device="cpu")
        assert st.max_seq_length == ST_SETTINGS["max_seq_length"], st.max_seq_length
        embedding = st.encode(texts, convert_to_numpy=True).astype(np.float32)
        plain = SentenceTransformer(str(out / "sentence"), device="cpu").encode(texts, convert_to_numpy=True)
    assert not np.allclose(embedding, plain, atol=1e-3), "the settings should change the embeddings"
    np.savez_compressed(folder / "golden.npz", single_sentence=embedding)
    print(f"{out.name} sentence_settings: {ST_SETTINGS}")


def _st_pooling_cls():
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
    except ImportError:  # older sentence-transformers
        from sentence_transformers.models import Normalize, Pooling
    return Pooling, Normalize


def family(name: str, out: Path) -> None:
    from sentence_transformers import SentenceTransformer

    Pooling, Normalize = _st_pooling_cls()
    seed = FAMILY_SEEDS[name]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    work = out / "_work"
    work.mkdir()
    built = build_tokenizer(name, work)
    # Save once before any call (calls leave padding/truncation state in the backend), then use
    # the tokenizer as loaded back from disk, as users (and samp-jax) see it.
    tok_dir = work / "tokenizer"
    built.save_pretrained(tok_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    assert type(tokenizer).__name__ == type(built).__name__, type(tokenizer)
    _check_tokenizer(tokenizer, tok_dir)
    # Pre-split words (token classification), as a tagger is trained on them: RoBERTa's class
    # refuses is_split_into_words unless loaded with add_prefix_space=True (run_ner.py loads it
    # so: every word then follows a space); the other classes (ModernBERT's) take them as set.
    words = [sentence.split() for sentence in SENTENCES]
    options = dict(is_split_into_words=True, padding=True, truncation=True,
                   max_length=FAMILY_MAX_LEN, return_tensors="np")
    try:
        encoded_words = tokenizer(words, **options)
    except (AssertionError, ValueError):
        encoded_words = transformers.AutoTokenizer.from_pretrained(
            tok_dir, add_prefix_space=True)(words, **options)
    word_arrays = {}
    word_arrays["words_input_ids"] = encoded_words["input_ids"].astype(np.int32)
    word_arrays["words_word_ids"] = np.array(
        [[-1 if w is None else w for w in encoded_words.word_ids(i)] for i in range(len(words))], np.int32)
    vocab_size = len(tokenizer)

    base_config = _family_config(name, vocab_size)
    torch.manual_seed(seed)
    base = transformers.AutoModel.from_config(base_config).eval()
    assert base.config._attn_implementation == "eager"
    _randomize_named(base, {n for n, _ in base.named_parameters()}, seed)
    seq = _head_model(transformers.AutoModelForSequenceClassification,
                      _family_config(name, vocab_size, id2label=SEQ_LABELS,
                                     label2id={v: k for k, v in SEQ_LABELS.items()}), base, seed + 1)
    tokm = _head_model(transformers.AutoModelForTokenClassification,
                       _family_config(name, vocab_size, id2label=TOK_LABELS,
                                      label2id={v: k for k, v in TOK_LABELS.items()}), base, seed + 2)
    dirs = {"base": base, "seqcls": seq, "tokcls": tokm}
    for sub, model in dirs.items():
        model.save_pretrained(out / sub, safe_serialization=True)
        for file in TOKENIZER_FILES:
            if (tok_dir / file).is_file():
                shutil.copy(tok_dir / file, out / sub / file)
    hidden_size = base.config.hidden_size if name != "distilbert" else base.config.dim
    st_mode = FAMILY_POOLING[name]
    _write_st_folder(out / "base", out / "sentence", hidden_size, st_mode)
    shutil.rmtree(work)

    st = SentenceTransformer(str(out / "sentence"), device="cpu")
    assert len(st) == 3 and isinstance(st[2], Normalize), st
    assert st[1].pooling_mode == st_mode, st[1].pooling_mode
    assert st.max_seq_length == FAMILY_MAX_LEN, st.max_seq_length

    arrays = {}
    pair_texts = [a for a, _ in PAIRS]
    batches = {
        "single": (tokenizer(SENTENCES, padding=True, truncation=True, max_length=FAMILY_MAX_LEN,
                             return_tensors="pt"), SENTENCES),
        "pair": (tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True,
                           truncation=True, max_length=FAMILY_MAX_LEN, return_tensors="pt"),
                 pair_texts),
    }
    expects_tt = name in ("bert", "electra", "deberta-v2", "ernie")
    summary = []
    for batch_name, (enc, texts) in batches.items():
        assert ("token_type_ids" in enc) == expects_tt, (name, list(enc))
        assert enc["attention_mask"].min() == 0, "padding should sit inside the batch"
        with torch.no_grad():
            hidden = base(**enc).last_hidden_state
            seq_logits = seq(**enc).logits
            tok_logits = tokm(**enc).logits
        arrays[f"{batch_name}_input_ids"] = enc["input_ids"].numpy().astype(np.int32)
        arrays[f"{batch_name}_attention_mask"] = enc["attention_mask"].numpy().astype(np.int32)
        tt = enc["token_type_ids"] if expects_tt else torch.zeros_like(enc["input_ids"])
        arrays[f"{batch_name}_token_type_ids"] = tt.numpy().astype(np.int32)
        arrays[f"{batch_name}_hidden"] = hidden.numpy().astype(np.float32)
        arrays[f"{batch_name}_seq_logits"] = seq_logits.numpy().astype(np.float32)
        arrays[f"{batch_name}_tok_logits"] = tok_logits.numpy().astype(np.float32)
        for key, mode in POOL_MODES.items():
            features = {"token_embeddings": hidden.clone(), "attention_mask": enc["attention_mask"]}
            with torch.no_grad():
                pooled = Pooling(hidden_size, pooling_mode=mode)(features)["sentence_embedding"]
            arrays[f"{batch_name}_pool_{key}"] = pooled.numpy().astype(np.float32)
        sentence = st.encode(texts, convert_to_numpy=True)
        arrays[f"{batch_name}_sentence"] = sentence.astype(np.float32)
        # Cross-check: ST's embedding = declared pooling + L2 normalisation of the base model's
        # hidden states (only exactly so for the single batch, whose texts are the batch).
        if batch_name == "single":
            key = {v: k for k, v in POOL_MODES.items()}[st_mode]
            ref = arrays[f"single_pool_{key}"]
            ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
            assert np.allclose(sentence, ref, atol=1e-5), np.abs(sentence - ref).max()
        summary.append(f"{batch_name} ids {tuple(enc['input_ids'].shape)} "
                       f"|hidden| {hidden.abs().max():.2f} |seq| {seq_logits.abs().max():.2f} "
                       f"|tok| {tok_logits.abs().max():.2f}")

    if name in FLAX_SEQCLS:  # HF's Flax class converts the torch weights, writes flax_model.msgpack
        flax_cls = getattr(transformers, FLAX_SEQCLS[name])
        flax_model = flax_cls.from_pretrained(out / "seqcls", from_pt=True)
        for batch_name, (enc, _) in batches.items():
            inputs = {k: v.numpy() for k, v in enc.items()}
            flax_logits = np.asarray(flax_model(**inputs).logits)
            torch_logits = arrays[f"{batch_name}_seq_logits"]
            assert np.allclose(flax_logits, torch_logits, atol=1e-4), \
                np.abs(flax_logits - torch_logits).max()
        mp_dir = out / "seqcls_msgpack"
        flax_model.save_pretrained(mp_dir)
        (mp_dir / "model.safetensors").unlink(missing_ok=True)
        for file in TOKENIZER_FILES:
            if (out / "seqcls" / file).is_file():
                shutil.copy(out / "seqcls" / file, mp_dir / file)

    if name == "deberta-v2":  # a v2-style config beside the v3-style folders, and one without
        golden_deberta_v2.variant(out, batches, vocab_size, _randomize_named, seed + 3)  # relative
        golden_deberta_v2.nonrelative(out, batches, vocab_size, _randomize_named, seed + 4)  # attention
    if name == "roberta":  # sentence_bert_config.json settings, over the sentence folder
        _sentence_settings(out, texts=batches["single"][1])
    arrays |= word_arrays
    np.savez_compressed(out / "golden.npz", **arrays)
    (out / "texts.json").write_text(json.dumps(
        {"single": SENTENCES, "pairs": PAIRS, "pair_sentence_texts": pair_texts, "words": words,
         "max_length": FAMILY_MAX_LEN, "sentence_pooling": st_mode}, indent=1, ensure_ascii=False))
    print(f"{name}: vocab {vocab_size}, pooling {st_mode}; " + "; ".join(summary))
    if name == "roberta":  # prompts, over the sentence folder and its settings
        import golden_st_prompts
        golden_st_prompts.write(out)
        golden_st_prompts.write_cross_encoder(out)
    if name == "modernbert":
        import golden_modernbert
        golden_modernbert.extras(out, seed + 3, _randomize_named)


def torch_copies(cls, st_dir: Path, out: Path) -> None:
    """The safetensors checkpoint in `st_dir` as PyTorch pickles: `out/torch` (HF's
    save_pretrained with safe_serialization=False: torch's zip archive) and `out/torch_legacy`
    (torch's legacy stream, as old checkpoints have it)."""
    model = cls.from_pretrained(st_dir).eval()
    zip_dir, legacy_dir = out / "torch", out / "torch_legacy"
    for d in (zip_dir, legacy_dir):
        shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(zip_dir, safe_serialization=False)
    legacy_dir.mkdir()
    shutil.copy(st_dir / "config.json", legacy_dir / "config.json")
    torch.save(model.state_dict(), legacy_dir / "pytorch_model.bin",
               _use_new_zipfile_serialization=False)


def torch_pickles(out: Path) -> None:
    """`out/zip.bin` and `out/legacy.bin`: one state dict in torch's two layouts, with every
    storage dtype, views that share a storage (transposed, offset, strided), an empty and a
    0-d tensor and a parameter; `out/expected.npz` holds each tensor (bfloat16 as float32)."""
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(4, 6, generator=gen)
    state = {"f32": torch.randn(3, 5, generator=gen), "f64": torch.randn(4, generator=gen).double(),
             "f16": torch.randn(2, 3, generator=gen).half(),
             "bf16": torch.randn(5, generator=gen).bfloat16(),
             "i64": torch.arange(-3, 9).reshape(3, 4), "i32": torch.arange(6, dtype=torch.int32),
             "i16": torch.tensor([-7, 300], dtype=torch.int16),
             "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
             "u8": torch.tensor([0, 255], dtype=torch.uint8),
             "bool": torch.tensor([True, False, True]),
             "base": base, "transposed": base.t(), "row": base[2], "every_other": base[:, ::2],
             "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5),
             "parameter": torch.nn.Parameter(torch.randn(2, 2, generator=gen))}
    torch.save(state, out / "zip.bin")
    torch.save(state, out / "legacy.bin", _use_new_zipfile_serialization=False)
    np.savez(out / "expected.npz", **{k: v.detach().float().numpy() if v.dtype == torch.bfloat16
                                      else v.detach().numpy() for k, v in state.items()})
    print(f"{out.name}: {len(state)} tensors in both layouts")


# A sentence-transformers model with Dense projections (as LaBSE's or distiluse's): cls and mean
# pooling of a tiny BERT -> Dense(tanh, sentence-transformers 5.x's own save, safetensors) ->
# Dense(identity, no bias, narrower; the classic type and config, weights as torch.save's
# pytorch_model.bin) -> Normalize.
ST_DENSE_POOLING = ("cls", "mean")
ST_DENSE_WIDTHS = (20, 12)


def st_dense(out: Path) -> None:
    """`out/sentence/` (the model), `out/golden.npz` (what SentenceTransformer.encode gives for
    the golden texts: `single_sentence`, `pair_sentence`) and `out/texts.json`."""
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.base.modules import Dense
    except ImportError:  # older sentence-transformers
        from sentence_transformers.models import Dense

    seed = 800
    shutil.rmtree(out, ignore_errors=True)
    work = out / "_work"
    work.mkdir(parents=True)
    built = _wordpiece_tokenizer("bert", work)
    built.save_pretrained(work / "tokenizer")
    vocab_size = len(transformers.AutoTokenizer.from_pretrained(work / "tokenizer"))
    torch.manual_seed(seed)
    base = transformers.AutoModel.from_config(_family_config("bert", vocab_size)).eval()
    _randomize_named(base, {n for n, _ in base.named_parameters()}, seed)
    base.save_pretrained(work / "base", safe_serialization=True)
    for file in TOKENIZER_FILES:
        if (work / "tokenizer" / file).is_file():
            shutil.copy(work / "tokenizer" / file, work / "base" / file)
    folder = out / "sentence"
    hidden = base.config.hidden_size
    _write_st_folder(work / "base", folder, hidden, "cls")
    shutil.rmtree(work)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling["pooling_mode_mean_tokens"] = True
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=4))
    torch.manual_seed(seed + 1)
    tanh = Dense(hidden * len(ST_DENSE_POOLING), ST_DENSE_WIDTHS[0], activation_function=torch.nn.Tanh())
    (folder / "2_Dense").mkdir()
    tanh.save(str(folder / "2_Dense"))
    identity = Dense(ST_DENSE_WIDTHS[0], ST_DENSE_WIDTHS[1], bias=False,
                     activation_function=torch.nn.Identity())
    (folder / "3_Dense").mkdir()
    (folder / "3_Dense" / "config.json").write_text(json.dumps(
        {"in_features": ST_DENSE_WIDTHS[0], "out_features": ST_DENSE_WIDTHS[1], "bias": False,
         "activation_function": "torch.nn.modules.linear.Identity"}, indent=4))
    torch.save(identity.state_dict(), folder / "3_Dense" / "pytorch_model.bin")
    shutil.move(folder / "2_Normalize", folder / "4_Normalize")
    modules = json.loads((folder / "modules.json").read_text())[:2] + [
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.base.modules.dense.Dense"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 4, "name": "4", "path": "4_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))

    st = SentenceTransformer(str(folder), device="cpu")
    assert len(st) == 5 and [type(m).__name__ for m in st][2:] == ["Dense", "Dense", "Normalize"], st
    assert tuple(st[1].pooling_mode) == ST_DENSE_POOLING, st[1].pooling_mode
    assert isinstance(st[3].activation_function, torch.nn.Identity) and st[3].linear.bias is None
    assert torch.equal(st[3].linear.weight, identity.linear.weight)
    texts = {"single": SENTENCES, "pair_sentence_texts": [a for a, _ in PAIRS]}
    arrays = {}
    for batch, rows in (("single", texts["single"]), ("pair", texts["pair_sentence_texts"])):
        arrays[f"{batch}_sentence"] = st.encode(rows, convert_to_numpy=True).astype(np.float32)
    assert arrays["single_sentence"].shape == (len(SENTENCES), ST_DENSE_WIDTHS[1])
    np.savez_compressed(out / "golden.npz", **arrays)
    (out / "texts.json").write_text(json.dumps(
        texts | {"pooling": list(ST_DENSE_POOLING), "widths": list(ST_DENSE_WIDTHS)}, indent=1,
        ensure_ascii=False))
    print(f"{out.name}: vocab {vocab_size}, pooling {ST_DENSE_POOLING}, Dense widths "
          f"{ST_DENSE_WIDTHS}, |embedding| max {np.abs(arrays['single_sentence']).max():.3f}")


def families(out: Path) -> None:
    for name in FAMILY_POOLING:
        family(name, out / name)


# The tiny BERT heads: (HF class, its Flax twin, labels, golden folder, seed).
TINY_HEADS = (
    (BertForSequenceClassification, "FlaxBertForSequenceClassification", 3, "tiny_seqcls", 1),
    (BertForTokenClassification, "FlaxBertForTokenClassification", 5, "tiny_tokcls", 2),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minilm", type=Path, help="MiniLM checkpoint folder (required unless "
                        "--families-only)")
    parser.add_argument("--out", type=Path, default=Path("tests/golden"))
    parser.add_argument("--families-only", action="store_true",
                        help="only (re)write OUT/families/ (and VERSIONS.json)")
    parser.add_argument("--family", action="append", choices=sorted(FAMILY_POOLING),
                        help="only (re)write OUT/families/FAMILY (repeatable)")
    parser.add_argument("--torch-pickles-only", action="store_true",
                        help="only (re)write OUT/torch_pickle/ and the tiny heads' PyTorch copies")
    parser.add_argument("--st-dense-only", action="store_true",
                        help="only (re)write OUT/st_dense/ (a sentence-transformers model with Dense "
                        "projections)")
    args = parser.parse_args()
    if args.family:
        torch.set_num_threads(2)
        for name in args.family:
            family(name, args.out / "families" / name)
        return
    if args.st_dense_only:
        torch.set_num_threads(2)
        st_dense(args.out / "st_dense")
        return
    if args.torch_pickles_only:
        torch_pickles(args.out / "torch_pickle")
        for cls, _, _, name, _ in TINY_HEADS:
            torch_copies(cls, args.out / name / "safetensors", args.out / name)
        return
    if args.minilm is None and not args.families_only:
        parser.error("--minilm is required unless --families-only is given")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    if not args.families_only:
        minilm(args.minilm, args.out)
        for cls, flax_name, labels, name, seed in TINY_HEADS:
            folder = args.out / name
            folder.mkdir(exist_ok=True)
            tiny_head(cls, flax_name, labels, folder, seed)
        torch_pickles(args.out / "torch_pickle")
    families(args.out / "families")
    if not args.families_only:
        st_dense(args.out / "st_dense")
    import sentence_transformers
    import tokenizers
    (args.out / "VERSIONS.json").write_text(json.dumps(
        {"torch": torch.__version__, "transformers": transformers.__version__,
         "sentence_transformers": sentence_transformers.__version__,
         "tokenizers": tokenizers.__version__,
         "generator": "tools/make_golden.py"}, indent=1))


if __name__ == "__main__":
    main()
