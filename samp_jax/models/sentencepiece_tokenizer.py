"""Builds the fast tokenizer HF's `DebertaV2Converter`, `XLMRobertaConverter` and
`CamembertConverter` (transformers' `SpmConverter`s) build from a SentencePiece model, read by
`samp_jax.models.sentencepiece_model`.

`slow_tokenizer.convert_slow_tokenizer` calls `sentencepiece_backend` for the tokenizer classes
that read a SentencePiece model (`SPM_CONVERTERS`), then adds the special and added tokens as
HF's fast class does and sets `post_processor`. As transformers 4.57 builds it:

- the model: a `Unigram` of the pieces and their scores (unknown id `TrainerSpec.unk_id`), or
  for a BPE model a `BPE` whose merges are every split of a piece into two pieces, ordered by
  the piece's score (`generate_merges`), with `fuse_unk`; no byte fallback;
- XLM-R's fairseq ids: `<s> <pad> </s> <unk>` are ids 0-3, the pieces after the model's first
  three follow (a piece's id is its SentencePiece id + 1), and `<mask>` comes last;
  CamemBERT's: `<s>NOTUSED <pad> </s>NOTUSED <unk> <unk>NOTUSED` (the last scored -100) are ids
  0-4, the pieces after the model's first (its `<unk>`) follow (`<s>` = 5, `</s>` = 6), and
  `<mask>` comes last; the unknown id is 3 in both;
- the control pieces as special added tokens and the user-defined ones as added tokens, neither
  normalized;
- the normalizer: DeBERTa's `[Lowercase] Strip Precompiled Replace(" {2,}", " ")`, XLM-R's
  `Precompiled Strip(right) Replace(" {2,}", "▁")`, `Precompiled` holding the model's
  `precompiled_charsmap` (left out when the model has none);
- `Metaspace("▁", prepend_scheme="always")` to pre-tokenize (after DeBERTa's
  `Punctuation("isolated")` with `split_by_punct`) and to decode;
- the post-processor: `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` (type 1 on B) for DeBERTa,
  `<s> A </s>` / `<s> A </s></s> B </s>` (all type 0) for XLM-R and CamemBERT.

Refused, the message naming the file: a WORD or CHAR model (HF converts UNIGRAM and BPE
models only); settings HF's converter ignores, so that its tokenizer would not split text as
the SentencePiece model the checkpoint was trained with does (`byte_fallback`, no
`add_dummy_prefix`, `remove_extra_whitespaces` or `escape_whitespaces` switched off,
`treat_whitespace_as_suffix`); a `TrainerSpec` whose unknown id or piece is not the model's
UNKNOWN piece; for XLM-R (CamemBERT), first three pieces (first piece) that are not
`<unk> <s> </s>`-like (UNKNOWN or CONTROL) or a fairseq token among the pieces after them;
and a `cls_token` or `sep_token` other than the literal tokens the converter's post-processor puts around the text.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from tokenizers import Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from samp_jax.models.added_tokens import Token, text_of
from samp_jax.models.sentencepiece_model import (
    BPE,
    CONTROL,
    MODEL_TYPES,
    UNIGRAM,
    UNKNOWN,
    USER_DEFINED,
    SentencePieceModel,
)

SPM_MODEL = "spm.model"
XLM_ROBERTA_MODEL = "sentencepiece.bpe.model"
SENTENCEPIECE_FILES = (SPM_MODEL, XLM_ROBERTA_MODEL)
REPLACEMENT = "\u2581"  # ▁, SentencePiece's whitespace
FAIRSEQ_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
# CamembertConverter's tokens before the pieces, with their scores (its `<unk>NOTUSED` is
# down-graded so that the Unigram model never picks it)
CAMEMBERT_TOKENS = (("<s>NOTUSED", 0.0), ("<pad>", 0.0), ("</s>NOTUSED", 0.0), ("<unk>", 0.0),
                    ("<unk>NOTUSED", -100.0))
FAIRSEQ_MASK = "<mask>"
# NormalizerSpec / TrainerSpec settings HF's converter ignores: field -> the value it assumes.
ASSUMED = {"add_dummy_prefix": True, "remove_extra_whitespaces": True, "escape_whitespaces": True,
           "treat_whitespace_as_suffix": False, "byte_fallback": False}


@dataclasses.dataclass(frozen=True)
class SpmConverter:
    """One of HF's `SpmConverter` subclasses.

    Attributes:
      name: the HF converter, e.g. `DebertaV2Converter`.
      cls, sep: the tokens its post-processor puts around the text (literals, not the
        tokenizer's `cls_token` / `sep_token`).
      fairseq: a fairseq layout of ids (`fairseq_tokens`, the pieces, `<mask>`).
      fairseq_tokens: the tokens (with scores) before the pieces: XLM-R's `FAIRSEQ_TOKENS`,
        CamemBERT's `CAMEMBERT_TOKENS`.
      replaced: how many of the model's first pieces they replace (XLM-R 3, CamemBERT 1).
    """

    name: str
    cls: str
    sep: str
    fairseq: bool
    fairseq_tokens: tuple[tuple[str, float], ...] = tuple((t, 0.0) for t in FAIRSEQ_TOKENS)
    replaced: int = 3

    @property
    def unk_id(self) -> int:
        """The fairseq layout's unknown id: where `<unk>` sits among `fairseq_tokens` (3)."""
        return [token for token, _ in self.fairseq_tokens].index("<unk>")


SPM_CONVERTERS = {
    "DebertaV2Tokenizer": SpmConverter("DebertaV2Converter", "[CLS]", "[SEP]", fairseq=False),
    "XLMRobertaTokenizer": SpmConverter("XLMRobertaConverter", "<s>", "</s>", fairseq=True),
    "CamembertTokenizer": SpmConverter("CamembertConverter", "<s>", "</s>", fairseq=True,
                                       fairseq_tokens=CAMEMBERT_TOKENS, replaced=1),
}


def sentencepiece_backend(converter: SpmConverter, model: SentencePieceModel,
                          options: Mapping, file: Path) -> tuple[HFTokenizer, dict, list[Token]]:
    """The tokenizer `converter` builds from `model` (read from `file`), before HF's fast class
    adds its special tokens and before its post-processor is set.

    Args:
      converter: the HF converter (`SPM_CONVERTERS`).
      model: the SentencePiece model.
      options: the tokenizer class's options (DeBERTa's `do_lower_case`, `split_by_punct`).
      file: the model file, named in errors.

    Returns:
      The backend, its model's vocabulary (token -> id), and the added tokens the converter
      gave it (the control and user-defined pieces), in order.

    Raises:
      ValueError: the model is one the converter would not convert exactly (module docstring).
    """
    _check_model(converter, model, file)
    scores = _vocab_scores(converter, model)
    vocab = {piece: index for index, (piece, _) in enumerate(scores)}
    if model.model_type == UNIGRAM:
        unk_id = converter.unk_id if converter.fairseq else model.unk_id
        backend = HFTokenizer(models.Unigram(scores, unk_id=unk_id, byte_fallback=False))
    else:
        backend = HFTokenizer(models.BPE(vocab, generate_merges(model, scores),
                                         unk_token=model.unk_piece, fuse_unk=True,
                                         byte_fallback=False, dropout=None))
    added = [Token(p.piece, normalized=False, special=p.type == CONTROL)
             for p in model.pieces if p.type in (CONTROL, USER_DEFINED)]
    backend.add_tokens([token.added_token() for token in added])
    backend.normalizer = _normalizer(converter, model, options)
    metaspace = pre_tokenizers.Metaspace(replacement=REPLACEMENT, prepend_scheme="always")
    if converter.fairseq:
        backend.pre_tokenizer = metaspace
    else:
        split = [pre_tokenizers.Punctuation(behavior="isolated")] if options["split_by_punct"] else []
        backend.pre_tokenizer = pre_tokenizers.Sequence([*split, metaspace])
    backend.decoder = decoders.Metaspace(replacement=REPLACEMENT, prepend_scheme="always")
    return backend, vocab, added


def sentencepiece_post_processor(converter: SpmConverter, backend: HFTokenizer,
                                 special: Mapping, where: Path):
    """The converter's post-processor, with the ids its tokens have in `backend`.

    Raises:
      ValueError: the tokenizer's `cls_token` or `sep_token` (in `special`, the tokens of the
        folder `where`) is not the token the converter's template uses.
    """
    for key, literal in (("cls_token", converter.cls), ("sep_token", converter.sep)):
        text = text_of(special[key])
        if text != literal:
            raise ValueError(
                f"{where}: the tokenizer's {key} is {text!r}, but HF's {converter.name} puts "
                f"{literal!r} around every text whatever the {key}, so its tokenizer would not "
                f"give the {key} the model was trained with; expected {literal!r}, or a "
                "tokenizer.json")
    if converter.fairseq:  # <s> A </s></s> B </s>, every token of type 0
        return cls_sep_template(converter.cls, converter.sep, backend, separators=2, pair_type_id=0)
    return cls_sep_template(converter.cls, converter.sep, backend)


def cls_sep_template(cls: str, sep: str, backend: HFTokenizer, *, separators: int = 1,
                     pair_type_id: int = 1) -> processors.TemplateProcessing:
    """The converters' template: `cls A sep` for one text and `cls A sep... B sep` for a pair,
    with `separators` seps between the texts and the second text and its sep of type
    `pair_type_id` (the ids of `cls` and `sep` looked up in `backend`)."""
    between = " ".join([f"{sep}:0"] * separators)
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {between} $B:{pair_type_id} {sep}:{pair_type_id}",
        special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))])


def generate_merges(model: SentencePieceModel, scores: list[tuple[str, float]]) -> list[tuple[str, str]]:
    """HF's `generate_merges` for a BPE model: each split of a piece of `scores` into two of
    the model's pieces (ordered by their SentencePiece ids), all of them ordered by the piece's
    score, then the lengths of the two parts, highest first (a stable sort)."""
    vocab = {piece.piece: index for index, piece in enumerate(model.pieces)}
    merges = []
    for merge, score in dict(scores).items():
        local = [(merge[:i], merge[i:], score) for i in range(1, len(merge))
                 if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges.sort(key=lambda x: (x[2], len(x[0]), len(x[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def _vocab_scores(converter: SpmConverter, model: SentencePieceModel) -> list[tuple[str, float]]:
    pieces = [(piece.piece, piece.score) for piece in model.pieces]
    if converter.fairseq:
        return [*converter.fairseq_tokens, *pieces[converter.replaced:], (FAIRSEQ_MASK, 0.0)]
    return pieces


def _normalizer(converter: SpmConverter, model: SentencePieceModel, options: Mapping):
    # read_sentencepiece_model checked that the tokenizers library reads the charsmap
    charsmap = ([normalizers.Precompiled(model.precompiled_charsmap)]
                if model.precompiled_charsmap else [])
    if converter.fairseq:
        return normalizers.Sequence([*charsmap, normalizers.Strip(left=False, right=True),
                                     normalizers.Replace(Regex(" {2,}"), REPLACEMENT)])
    lower = [normalizers.Lowercase()] if options["do_lower_case"] else []
    return normalizers.Sequence([*lower, normalizers.Strip(left=True, right=True), *charsmap,
                                 normalizers.Replace(Regex(" {2,}"), " ")])


def _check_model(converter: SpmConverter, model: SentencePieceModel, file: Path) -> None:
    if model.model_type not in (UNIGRAM, BPE):
        raise ValueError(f"{file} is a SentencePiece {MODEL_TYPES[model.model_type]} model; HF's "
                         f"{converter.name} converts UNIGRAM and BPE models only")
    for field, assumed in ASSUMED.items():
        if getattr(model, field) != assumed:
            why = ("it has no byte fallback, and gives the unknown token where the model gives "
                   "byte pieces" if field == "byte_fallback" else f"it assumes {assumed}")
            raise ValueError(
                f"{file} sets {field} to {getattr(model, field)}, which HF's {converter.name} "
                f"ignores ({why}): its tokenizer would not split text as the SentencePiece "
                "model the checkpoint was trained with does")
    unknown = next(index for index, piece in enumerate(model.pieces) if piece.type == UNKNOWN)
    stated = (model.unk_id, model.unk_piece)
    if stated != (unknown, model.pieces[unknown].piece):
        raise ValueError(f"{file}: its trainer_spec names the unknown token {stated[1]!r} with id "
                         f"{stated[0]}, but its UNKNOWN piece is {model.pieces[unknown].piece!r}, "
                         f"id {unknown}; expected the two to agree")
    if converter.fairseq:
        n = converter.replaced
        first = model.pieces[:n]
        if len(first) < n or any(p.type not in (UNKNOWN, CONTROL) for p in first):
            replaced, expected = (("the first three pieces", "<unk> <s> </s>") if n == 3
                                  else ("the first piece", "<unk>"))
            raise ValueError(
                f"{file} starts with the pieces {[(p.piece, p.type) for p in first]}; "
                f"{converter.name} replaces {replaced} with its fairseq tokens, "
                f"so it expects the unknown and control pieces {expected} there")
        names = {token for token, _ in converter.fairseq_tokens} | {FAIRSEQ_MASK}
        clash = [p.piece for p in model.pieces[n:] if p.piece in names]
        if clash:
            after = "its first three" if n == 3 else "its first"
            raise ValueError(f"{file} has the piece {clash[0]!r} after {after}; "
                             f"{converter.name} gives it its own fairseq id, so the piece would "
                             "get two ids")
