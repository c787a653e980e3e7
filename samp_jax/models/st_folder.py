"""Reads and writes sentence-transformers folders: `modules.json`, `1_Pooling/config.json`,
any `N_Dense/` projections, `N_Normalize`, and what the `Transformer` module does to texts
(`sentence_bert_config.json`).

A sentence-transformers model is an HF checkpoint at the folder root (the `Transformer`
module; or in the subfolder `modules.json` names, `0_Transformer/` in the layout
sentence-transformers 1.x wrote: `transformer_folder`), a `Pooling` module, zero or more
`Dense` projections (`samp_jax.models.st_dense`) and optionally `Normalize`, in that order.
samp-jax pools, projects and normalises as the folder declares; a module it does not implement
(an `LSTM`, a `LayerNorm`, a Dense with an activation it does not run, say) or another order is
refused by name rather than skipped, since skipping it would give different embeddings without
any error. A sentence embedder's tokenizer follows
`sentence_bert_config.json` (`read_text_settings`): it truncates at `max_seq_length` and
lowercases texts when `do_lower_case` is set; and it puts the prompt in use before every text
(`parse_prompts`: `config_sentence_transformers.json`'s `default_prompt_name`, or the one
chosen), as sentence-transformers' `encode` does. A pooling that leaves the prompt's tokens out
(`include_prompt` false) is run only without a prompt, where it changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from samp_jax.core import strict_json
from samp_jax.core.input_files import check_regular
from samp_jax.models.config import ConfigError, read_json
from samp_jax.models.heads import POOLING_MODES, DenseLayer
from samp_jax.models.similarity import SIMILARITY_FILE
from samp_jax.models.st_dense import DENSE, DeclaredDense, read_dense_config, write_dense

MODULES_FILE = "modules.json"
TEXT_SETTINGS_FILE = "sentence_bert_config.json"
PROMPTS_FILE = SIMILARITY_FILE  # config_sentence_transformers.json: prompts and similarity
# Prompts sentence-transformers 5 names for every model, empty unless the file states them.
DEFAULT_PROMPTS = {"query": "", "document": ""}
# Module types as sentence-transformers 2-4 write them; 5.x writes longer paths that end in the
# same class names (`sentence_transformers.sentence_transformer.modules.pooling.Pooling`).
TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
MODULE_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")
# The order samp-jax runs them in (the transformer may be left out of `modules.json`).
MODULE_ORDER = re.compile(r"(Transformer )?Pooling( Dense)*( Normalize)?")
# sentence-transformers 5.x's names for the pooling modes where they differ from samp-jax's.
MODE_ALIASES = {"mean_sqrt_len_tokens": "mean_sqrt_len"}
# Pooling config key of each mode in the 2-4 format (`pooling_mode_*` booleans).
POOLING_KEYS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                "mean": "pooling_mode_mean_tokens", "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
                "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}


@dataclasses.dataclass(frozen=True)
class DeclaredPooling:
    """The pooling a sentence-transformers folder declares, with the Dense projections after
    it (in order) and whether Normalize ends it. `unlisted` is the pooling config of a folder
    without `modules.json`, which samp-jax reads and sentence-transformers ignores (it
    mean-pools such a folder); None when `modules.json` lists the modules."""

    modes: tuple[str, ...]
    normalize: bool
    dense: tuple[DeclaredDense, ...] = ()
    include_prompt: bool = True
    unlisted: Path | None = None


def read_pooling(folder: str | Path) -> DeclaredPooling | None:
    """The folder's declared pooling, or None when it is not a sentence-transformers folder.

    Raises:
      ConfigError: `modules.json`, the pooling config or a Dense config is malformed, a
        module's path leads outside the folder, a module samp-jax does not implement is
        declared, or the modules are not in the order Transformer, Pooling, Dense..., Normalize.
    """
    folder = Path(folder)
    file = folder / MODULES_FILE
    if not check_regular(file):
        return _legacy_pooling(folder)
    modules = read_json(file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{file} must be a JSON list of module objects")
    kinds = [_module_kind(m.get("type")) for m in modules]
    unknown = [m.get("type") for m, kind in zip(modules, kinds) if kind is None]
    if unknown:
        raise ConfigError(f"{file} declares modules {unknown} that samp-jax does not implement "
                          f"(it runs sentence-transformers' {', '.join(MODULE_KINDS)})")
    if "Transformer" in kinds:  # at the root, or in a folder inside it (`transformer_folder`)
        transformer = modules[kinds.index("Transformer")]
        if transformer.get("path", "") not in ("", "."):
            _module_path(file, transformer)
    if "Pooling" not in kinds:
        raise ConfigError(f"{file} declares no Pooling module")
    if not MODULE_ORDER.fullmatch(" ".join(kinds)):
        raise ConfigError(f"{file} declares the modules {kinds}; samp-jax runs them in the order "
                          "Transformer, Pooling, any Dense, then Normalize (each once, Dense any "
                          "number of times)")
    pooling = modules[kinds.index("Pooling")]
    pooling_dir = folder / (_module_path(file, pooling) if "path" in pooling else "1_Pooling")
    dense = tuple(read_dense_config(folder / _module_path(file, m))
                  for m, kind in zip(modules, kinds) if kind == "Dense")
    modes, include_prompt = _modes(pooling_dir / "config.json")
    return DeclaredPooling(modes, "Normalize" in kinds, dense, include_prompt)


def transformer_folder(folder: str | Path) -> Path:
    """The folder the `Transformer` module of a sentence-transformers folder lives in:
    `folder` itself (the usual layout, and any folder that is not a sentence-transformers
    one), or the subfolder `modules.json` names for it. That is the layout
    sentence-transformers 1.x wrote and still loads: `0_Transformer/` holds `config.json`, the
    weights, the tokenizer and `sentence_bert_config.json`; the root holds `modules.json`,
    the other modules' folders and `config_sentence_transformers.json` (its `config.json`, if
    any, states only `__version__`). `load_pretrained`, `Tokenizer.from_pretrained` and
    `samp_jax.load` read the model and its tokenizer from here, the other modules from
    `folder`.

    Raises:
      ConfigError: `modules.json` names a Transformer path outside the folder (a malformed
        `modules.json` is left to `read_pooling`, which names it).
    """
    folder = Path(folder)
    file = folder / MODULES_FILE
    if not check_regular(file):
        return folder
    try:
        modules = read_json(file)
    except ConfigError:
        return folder
    for module in modules if isinstance(modules, list) else ():
        if isinstance(module, dict) and _module_kind(module.get("type")) == "Transformer":
            path = module.get("path", "")
            return folder if path in ("", ".") else folder / _module_path(file, module)
    return folder


def _module_path(file: Path, module: dict) -> str:
    """A module's folder, relative to the model folder."""
    path = module.get("path")
    if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise ConfigError(f"{file}: module {module.get('name')!r} has path={path!r}; expected a "
                          "folder inside the model folder (such as '1_Pooling' or '2_Dense')")
    return path


@dataclasses.dataclass(frozen=True)
class TextSettings:
    """What sentence-transformers' `Transformer` module does to texts before tokenizing.

    Attributes:
      max_seq_length: the truncation length, in tokens, in place of the tokenizer's
        `model_max_length` (None: the folder states none).
      lowercase: lowercase every text (`do_lower_case`).
    """

    max_seq_length: int | None = None
    lowercase: bool = False


def read_text_settings(folder: str | Path) -> TextSettings:
    """The folder's `sentence_bert_config.json` settings (defaults when it has none).

    Raises:
      ConfigError: the file is not a JSON object, or a setting has the wrong type.
    """
    file = Path(folder) / TEXT_SETTINGS_FILE
    if not check_regular(file):
        return TextSettings()
    config = read_json(file)
    if not isinstance(config, dict):
        raise ConfigError(f"{file} must hold a JSON object")
    length, lowercase = config.get("max_seq_length"), config.get("do_lower_case", False)
    if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
        raise ConfigError(f"{file}: max_seq_length={length!r} must be a positive integer")
    if not isinstance(lowercase, bool):
        raise ConfigError(f"{file}: do_lower_case={lowercase!r} must be true or false")
    return TextSettings(length, lowercase)


@dataclasses.dataclass(frozen=True)
class Prompts:
    """The prompts a sentence-transformers folder names (`config_sentence_transformers.json`)
    and the one in use. sentence-transformers' `encode` puts the prompt in use before every
    text, or before the first text of a pair (`prompt + text`, then lowercases and truncates
    the whole), and so does `Tokenizer`.

    Attributes:
      named: prompt name -> prompt text: `DEFAULT_PROMPTS`, then those the file states.
      active: the name of the prompt in use, or None for none.
    """

    named: Mapping[str, str]
    active: str | None

    @property
    def text(self) -> str:
        """The text put before every input ('' without a prompt)."""
        return "" if self.active is None else self.named[self.active]


def parse_prompts(text: str, file: Path, prompt_name: str | None = None) -> Prompts:
    """The prompts of `config_sentence_transformers.json` (its `text`, read from `file`) and
    the one in use: `prompt_name` when given ('' for no prompt), else the file's
    `default_prompt_name` (null: no prompt), as sentence-transformers 5 picks it (a prompt
    stated as null is empty; `DEFAULT_PROMPTS` are always named).

    Raises:
      ConfigError: the text is not a JSON object, `prompts` is not an object of texts,
        `default_prompt_name` is neither null nor one of them, or `prompt_name` is not one of
        them.
    """
    try:
        config = strict_json.parse(text)
    except strict_json.BeyondReader as e:
        raise ConfigError(f"{file}: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{file} is not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{file} must hold a JSON object")
    stated = config.get("prompts") or {}
    if not isinstance(stated, dict) or not all(isinstance(v, (str, type(None))) for v in stated.values()):
        raise ConfigError(f"{file}: prompts={stated!r} must be an object of prompt texts by name")
    named = DEFAULT_PROMPTS | {name: text or "" for name, text in stated.items()}
    default = config.get("default_prompt_name")
    if default is not None and default not in named:
        raise ConfigError(f"{file}: default_prompt_name={default!r} is not one of its prompts "
                          f"{sorted(named)}")
    if prompt_name is None:
        return Prompts(named, default)
    if prompt_name and prompt_name not in named:
        raise ConfigError(f"prompt name {prompt_name!r} is not one of the prompts of {file}: "
                          f"{sorted(named)} ('' for no prompt)")
    return Prompts(named, prompt_name or None)


def is_cross_encoder(folder: str | Path) -> bool:
    """Whether `folder` is a sentence-transformers `CrossEncoder` (its
    `config_sentence_transformers.json` says so), whose prompt goes before each pair's first
    text."""
    file = Path(folder) / PROMPTS_FILE
    if not check_regular(file):
        return False
    config = read_json(file)
    return isinstance(config, dict) and config.get("model_type") == "CrossEncoder"


def prompts_file_text(text: str, active: str | None) -> str:
    """`config_sentence_transformers.json`'s text with `active` as its `default_prompt_name`,
    so that sentence-transformers and samp-jax reading the folder use the same prompt."""
    config = json.loads(text)
    if config.get("default_prompt_name") == active:
        return text
    return json.dumps(config | {"default_prompt_name": active}, indent=2, ensure_ascii=False)


def _module_kind(module_type) -> str | None:
    """The `MODULE_KINDS` name of a sentence-transformers module type, else None: the classic
    `sentence_transformers.models.Dense` and the 5.x `...base.modules.dense.Dense` alike."""
    if not isinstance(module_type, str) or not module_type.startswith("sentence_transformers."):
        return None
    name = module_type.rsplit(".", 1)[-1]
    return name if name in MODULE_KINDS else None


def _legacy_pooling(folder: Path) -> DeclaredPooling | None:
    """Folders without `modules.json` but with `1_Pooling/config.json` (no Normalize).
    sentence-transformers ignores that file in such a folder and mean-pools; samp-jax keeps
    the pooling it states (`unlisted`: `load_pretrained` warns that the two differ)."""
    config = folder / "1_Pooling" / "config.json"
    if not check_regular(config):
        return None
    modes, include_prompt = _modes(config)
    return DeclaredPooling(modes, False, include_prompt=include_prompt, unlisted=config)


def unlisted_pooling_warning(declared: DeclaredPooling) -> str | None:
    """What to warn of a pooling config read without `modules.json` when it pools otherwise
    than sentence-transformers, which ignores it and mean-pools the folder; None when they
    agree or `modules.json` lists the modules."""
    if declared.unlisted is None or declared.modes == ("mean",):
        return None
    return (f"{declared.unlisted} declares pooling {list(declared.modes)}, which samp-jax uses, "
            f"but the folder has no {MODULES_FILE}: sentence-transformers ignores that file "
            "and mean-pools this folder, so its embeddings differ from samp-jax's. Write a "
            f"{MODULES_FILE} (Transformer, then Pooling at '1_Pooling') to make both read the "
            "pooling, or pass pooling='mean' (CLI: --pooling mean) to embed as "
            "sentence-transformers does now")


def _modes(config_file: Path) -> tuple[tuple[str, ...], bool]:
    """The pooling modes of a `Pooling` config, in order, and its `include_prompt`."""
    if not check_regular(config_file):
        raise ConfigError(f"pooling config {config_file} is missing")
    config = read_json(config_file)
    if not isinstance(config, dict):
        raise ConfigError(f"{config_file} must hold a JSON object")
    flags = [key for key in (*POOLING_KEYS.values(), "include_prompt") if key in config]
    for key in flags:  # a string "false" is truthy: refuse it rather than read it as true
        if not isinstance(config[key], bool):
            raise ConfigError(f"{config_file}: {key} is {config[key]!r} "
                              f"({type(config[key]).__name__}); expected true or false (a JSON "
                              "boolean)")
    include_prompt = config.get("include_prompt", True)
    if "pooling_mode" in config:  # sentence-transformers 5.x: a name or a list, in order
        declared = config["pooling_mode"]
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{config_file}: pooling_mode={declared!r} must be a mode name or a "
                              "non-empty list of them")
        modes = tuple(MODE_ALIASES.get(name, name) for name in names)
        unknown = [m for m in modes if m not in POOLING_MODES]
        if unknown:
            raise ConfigError(f"{config_file}: pooling modes {unknown} are not one of {POOLING_MODES}")
        return modes, include_prompt
    # 2-4: booleans, concatenated in this fixed order; none set means mean (as they load it)
    modes = tuple(mode for mode in POOLING_MODES if config.get(POOLING_KEYS[mode]))
    return modes or ("mean",), include_prompt


def write_st_files(folder: str | Path, *, hidden_size: int, modes: tuple[str, ...], normalize: bool,
                   max_seq_length: int | None = None,
                   dense: Sequence[tuple[DenseLayer, np.ndarray, np.ndarray | None]] = ()) -> None:
    """Writes `modules.json`, `1_Pooling/config.json`, a `N_Dense/` folder per Dense layer
    (`(layer, weight [out, in], bias or None)`, in order) and `N_Normalize/`, so that
    sentence-transformers and `read_pooling` see the given pooling and projections."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING}]
    for layer, weight, bias in dense:
        index = len(modules)
        modules.append({"idx": index, "name": str(index), "path": f"{index}_Dense", "type": DENSE})
        write_dense(folder / f"{index}_Dense", layer, weight, bias)
    if normalize:
        index = len(modules)
        modules.append({"idx": index, "name": str(index), "path": f"{index}_Normalize",
                        "type": NORMALIZE})
        (folder / f"{index}_Normalize").mkdir(parents=True, exist_ok=True)
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    if tuple(modes) == tuple(mode for mode in POOLING_MODES if mode in modes):
        # the fixed order the true/false flags are read in: the format every version reads
        pooling = {"word_embedding_dimension": hidden_size}
        pooling |= {key: mode in modes for mode, key in POOLING_KEYS.items()}
    else:  # another order (or a mode twice): the ordered list of sentence-transformers 5.x
        names = {alias: mode for mode, alias in MODE_ALIASES.items()}
        pooling = {"embedding_dimension": hidden_size,
                   "pooling_mode": [names.get(mode, mode) for mode in modes]}
    pooling |= {"include_prompt": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (folder / MODULES_FILE).write_text(json.dumps(modules, indent=2))
    if max_seq_length is not None:
        (folder / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2))
