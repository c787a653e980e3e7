"""`load(path)`: one call that reads any model folder samp-jax writes, ready to serve.

Three kinds of folder, told apart by their files:

- a quantized model written by `QuantizedModel.save`: `quantization.json` + `model.safetensors`;
- an HF checkpoint folder (what `save_pretrained` and HF transformers write): `config.json` +
  weights, read by `load_pretrained`;
- a PEFT LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`), merged into its
  base model's weights as it loads (`samp_jax.models.peft_adapter`).

Either way the model comes back with its tokenizer attached (`model.tokenizer`, read from the
folder's `tokenizer.json`), so `samp_jax.compile(samp_jax.load(folder))` needs nothing else. A
folder without a tokenizer is refused rather than paired with some default tokenizer: a
tokenizer that does not match the model gives wrong results without any error.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from samp_jax.core.atomic import check_not_interrupted
from samp_jax.core.input_files import broken_link, check_regular
from samp_jax.core.transfers import own_transfers
from samp_jax.models.checkpoint import load_pretrained
from samp_jax.models.head_kinds import SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION
from samp_jax.models.peft_adapter import ADAPTER_CONFIG, find_adapter, is_adapter_folder, load_adapter
from samp_jax.models.st_folder import is_cross_encoder, transformer_folder
from samp_jax.models.model import EncoderModel
from samp_jax.models.tokenizer import TOKENIZER_FILE, Tokenizer, check_fits, has_tokenizer
from samp_jax.ptq.folder import SEAL_KEY, WEIGHTS_FILE, has_sidecar_copy
from samp_jax.ptq.quantized import SIDECAR_FILE, QuantizedModel

HF_CONFIG_FILE = "config.json"
ADAPTER_OPTIONS = ("base_model", "adapter")  # what only an adapter folder takes
FINETUNE_RECORD = "finetune.json"  # what `samp-jax finetune` writes beside its checkpoint
SEARCH_MODEL = "model"  # the subfolder of a search's output that holds its quantized model


@own_transfers
def load(path: str | os.PathLike, *, tokenizer: Tokenizer | str | os.PathLike | None = None,
         prompt_name: str | None = None, **options: Any) -> EncoderModel | QuantizedModel:
    """Loads a model folder written by samp-jax (or an HF BERT checkpoint), tokenizer attached.

    Args:
      path: a folder written by `QuantizedModel.save` (it has `quantization.json`), an HF
        checkpoint folder (`config.json` + `model.safetensors`, `pytorch_model.bin` or
        `flax_model.msgpack`, each possibly sharded, read in that order as HF reads them; the
        pickle without torch and without running it; a sentence-transformers folder may keep
        them in the subfolder its `modules.json` names, `0_Transformer/`), or a PEFT LoRA
        adapter folder (`adapter_config.json`), merged
        into its base model (`base_model_name_or_path` when it is a local folder, absolute,
        relative to the working directory or to the adapter's; else `base_model=`).
      tokenizer: the tokenizer to attach instead of the folder's own: a `Tokenizer`, or a
        folder holding `tokenizer.json`. Needed when `path` has no `tokenizer.json` (an
        adapter's: nor its base).
      prompt_name: a sentence embedder's prompt, put before every text as
        sentence-transformers puts it: one of those its `config_sentence_transformers.json`
        names, '' for none (default: its `default_prompt_name`; for a quantized folder, the
        prompt it was saved with).
      **options: for an HF folder, passed to `load_pretrained` (`head`, `num_labels`, `dtype`,
        `allow_new_head`, ...). An adapter folder takes them too, and `base_model` (the base
        model's folder) and `adapter` (which of several adapters in one folder:
        `peft_adapter.find_adapter`). A quantized folder takes none.

    Returns:
      A `QuantizedModel` or an `EncoderModel`, with `model.tokenizer` set and, for
      classification heads, the class names the folder states (`model.labels`).

    Raises:
      FileNotFoundError: `path` is not a folder, is neither kind of model folder, or has no
        `tokenizer.json` and no `tokenizer=` was given.
      TypeError: `path` is not a path; `tokenizer` is neither a `Tokenizer` nor a folder;
        options for a quantized folder.
      ValueError, CheckpointError, ConfigError: as `QuantizedModel.load` / `load_pretrained`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"samp_jax.load: path is {type(path).__name__} ({path!r:.60}), expected "
                        "a model folder's path (a str or os.PathLike)")
    path = Path(path)
    check_not_interrupted(path)
    if not path.is_dir():
        link = broken_link(path)
        if link is not None:
            raise link
        what = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{path} {what}; samp_jax.load needs a model folder "
                                f"({SIDECAR_FILE} from QuantizedModel.save, an HF "
                                f"{HF_CONFIG_FILE} with weights, or a PEFT {ADAPTER_CONFIG})")
    # a FIFO or /dev/zero under either name is refused, named (`check_regular`), not taken
    # for an absent file
    quantized = check_regular(path / SIDECAR_FILE)
    if not quantized and is_adapter_folder(path):
        return _load_adapter(path, tokenizer, prompt_name, options)
    given = sorted(set(options) & set(ADAPTER_OPTIONS))
    if given:
        raise TypeError(f"{path} is no PEFT adapter folder (it has no {ADAPTER_CONFIG}); "
                        f"options {given} apply to adapter folders only")
    # a sentence-transformers 1.x folder keeps config.json, weights and tokenizer in the
    # subfolder its modules.json names (0_Transformer/)
    model_folder = path if quantized else transformer_folder(path)
    if not quantized and not check_regular(model_folder / HF_CONFIG_FILE):
        if model_folder != path:
            raise FileNotFoundError(
                f"{path / 'modules.json'} puts the sentence-transformers Transformer module in "
                f"{model_folder}, which has no {HF_CONFIG_FILE}")
        inner = path / SEARCH_MODEL
        search = (f"; it holds a search's output, whose model is {inner}"
                  if (inner / SIDECAR_FILE).is_file() or (inner / HF_CONFIG_FILE).is_file()
                  else _trainer_checkpoints(path))
        raise FileNotFoundError(
            f"{path} is not a model folder: it has neither {SIDECAR_FILE} (a quantized model "
            f"written by QuantizedModel.save) nor {HF_CONFIG_FILE} (an HF checkpoint written by "
            f"save_pretrained or HF transformers) nor {ADAPTER_CONFIG} (a PEFT adapter){search}")
    if not quantized and check_regular(model_folder / WEIGHTS_FILE) and \
            has_sidecar_copy(model_folder / WEIGHTS_FILE):
        raise FileNotFoundError(
            f"{path} has no {SIDECAR_FILE}, and its {WEIGHTS_FILE} holds samp-jax quantized "
            f"weights (its header keeps a copy of {SIDECAR_FILE}, metadata {SEAL_KEY!r}), which "
            f"the {HF_CONFIG_FILE} beside them does not describe: copy {SIDECAR_FILE} back from "
            "the folder QuantizedModel.save (calibrate, search) wrote")
    _check_tokenizer(path, tokenizer, quantized=quantized)
    if quantized:
        if options:
            raise TypeError(f"{path} is a quantized model folder ({SIDECAR_FILE}); options "
                            f"{sorted(options)} apply to HF checkpoint folders only")
        # the folder's own tokenizer, its files checked against the manifest
        return QuantizedModel.load(path, prompt_name=prompt_name, tokenizer=None if tokenizer is None
                                   else _resolve_tokenizer(path, tokenizer))
    model = _attach_tokenizer(load_pretrained(path, **options), path, path, tokenizer, prompt_name)
    warn_if_labels_disagree(path, model.labels)
    return model


def warn_if_labels_disagree(folder: Path, labels) -> None:
    """Warns, in one line naming both files, when the `finetune.json` that `samp-jax finetune`
    wrote in `folder` names other classes, or the same in another order, than its
    `config.json`'s `id2label` (`labels`, which the model reads): one of them comes from
    another run (a mixed copy), and each row would be labelled as the other class. A folder
    without that file, or whose record names no classes, is not checked."""
    record = folder / FINETUNE_RECORD
    if labels is None or not record.is_file():
        return
    try:
        trained = json.loads(record.read_text(encoding="utf-8")).get("labels")
    except (OSError, ValueError, AttributeError):  # not the JSON object finetune writes
        return
    names = [str(name) for name in labels]
    if not isinstance(trained, list) or [str(name) for name in trained] == names:
        return
    warnings.warn(f"{folder / HF_CONFIG_FILE} names the classes {names} (id2label, read in that "
                  f"order), but {record} says the weights were fine-tuned with {trained}: one of "
                  "the two files comes from another run, and predictions may name the wrong "
                  "class; copy both from one fine-tune", UserWarning, stacklevel=2)


def _load_adapter(path: Path, tokenizer, prompt_name: str | None, options: dict) -> EncoderModel:
    """A PEFT adapter folder: its base model with the adapter merged in, and the adapter's
    tokenizer (else the base's)."""
    found = find_adapter(path, **{key: options.pop(key) for key in ADAPTER_OPTIONS if key in options})
    _check_tokenizer(found.tokenizer, tokenizer, quantized=False)
    return _attach_tokenizer(load_adapter(found, **options), found.tokenizer, found.files,
                             tokenizer, prompt_name)


def _attach_tokenizer(model: EncoderModel, folder: Path, files: Path, tokenizer,
                      prompt_name: str | None) -> EncoderModel:
    """`model` with its tokenizer (`tokenizer`, else `folder`'s); `files` holds its
    sentence-transformers files."""
    # a sentence embedder tokenizes as its sentence-transformers folder says (max_seq_length,
    # do_lower_case, its prompt), a sentence-transformers CrossEncoder with its prompt; other
    # heads as the HF tokenizer does
    cross = model.head_kind == SEQUENCE_CLASSIFICATION.name and is_cross_encoder(files)
    tokenizer = _resolve_tokenizer(folder, tokenizer, prompt_name, cross_encoder=cross,
                                   sentence=model.head_kind == SENTENCE_EMBEDDING.name)
    check_fits(tokenizer, model.config, str(folder))
    model.tokenizer = tokenizer
    return model


def _resolve_tokenizer(path: Path, tokenizer, prompt_name: str | None = None, *,
                       sentence: bool = False, cross_encoder: bool = False) -> Tokenizer:
    """The tokenizer to attach: `tokenizer` (a `Tokenizer` or a folder), else the folder's."""
    if isinstance(tokenizer, Tokenizer):
        if prompt_name is not None:
            raise ValueError("prompt_name picks a prompt of a tokenizer samp-jax reads; give the "
                             "Tokenizer you pass its prompt (Tokenizer.from_pretrained(..., "
                             "prompt_name=...)) instead")
        return tokenizer
    return Tokenizer.from_pretrained(path if tokenizer is None else tokenizer,
                                     sentence_transformers=sentence,
                                     prompts=sentence or cross_encoder, prompt_name=prompt_name)


def _check_tokenizer(path: Path, tokenizer, *, quantized: bool) -> None:
    """Refuses, before anything loads, a `tokenizer` of the wrong type or a folder without one."""
    if isinstance(tokenizer, (Tokenizer, str, os.PathLike)):
        return
    if tokenizer is not None:
        raise TypeError(f"tokenizer must be a samp_jax.Tokenizer or a folder with {TOKENIZER_FILE}, "
                        f"got {type(tokenizer).__name__}")
    # an HF folder may carry a slow tokenizer's vocabulary instead (Tokenizer.from_pretrained
    # builds tokenizer.json from it); a quantized folder holds the tokenizer.json samp-jax wrote
    if not quantized:
        path = transformer_folder(path)
    if not (check_regular(path / TOKENIZER_FILE) if quantized else has_tokenizer(path)):
        slow = "" if quantized else (", or a slow tokenizer's vocab.txt, vocab.json + merges.txt, "
                                     "spm.model or sentencepiece.bpe.model")
        raise FileNotFoundError(
            f"{path} has no {TOKENIZER_FILE}: copy the tokenizer files of the model you fine-tuned "
            f"({TOKENIZER_FILE}{slow}; tokenizer_config.json, special_tokens_map.json) into "
            "it, or pass tokenizer=samp_jax.Tokenizer.from_pretrained(folder) or "
            "tokenizer='folder/with/tokenizer.json'")


def _trainer_checkpoints(path: Path) -> str:
    """'; it holds HF Trainer checkpoints ...' for an `output_dir` whose model is only in its
    `checkpoint-N` folders, naming the latest; else ''."""
    steps = sorted((int(m.group(1)), child) for child in path.iterdir()
                   if (m := re.fullmatch(r"checkpoint-(\d+)", child.name))
                   and (child / HF_CONFIG_FILE).is_file())
    if not steps:
        return ""
    return (f"; it holds HF Trainer checkpoints ({', '.join(c.name for _, c in steps[:4])}"
            f"{', ...' if len(steps) > 4 else ''}): give one of them, e.g. the latest, "
            f"{steps[-1][1]}")
