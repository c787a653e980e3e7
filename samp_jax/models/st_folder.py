"""Reads and writes sentence-transformers folders: `modules.json`, `1_Pooling/config.json`,
`2_Normalize`.

A sentence-transformers model is an HF checkpoint at the folder root (the `Transformer`
module), a `Pooling` module and optionally `Normalize`. samp-jax pools as the folder declares;
a module it does not implement (a `Dense` projection, say) is refused by name rather than
skipped, since skipping it would give different embeddings without any error.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from samp_jax.models.config import ConfigError
from samp_jax.models.model import POOLING_MODES

MODULES_FILE = "modules.json"
TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
# Pooling config key of each mode (sentence-transformers' `Pooling.get_config_dict`).
POOLING_KEYS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                "mean": "pooling_mode_mean_tokens", "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
                "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}


@dataclasses.dataclass(frozen=True)
class DeclaredPooling:
    """The pooling a sentence-transformers folder declares."""

    modes: tuple[str, ...]
    normalize: bool


def read_pooling(folder: str | Path) -> DeclaredPooling | None:
    """The folder's declared pooling, or None when it is not a sentence-transformers folder.

    Raises:
      ConfigError: `modules.json` or the pooling config is malformed, the transformer is not
        at the folder root, or a module samp-jax does not implement is declared.
    """
    folder = Path(folder)
    file = folder / MODULES_FILE
    if not file.is_file():
        return _legacy_pooling(folder)
    modules = _json(file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{file} must be a JSON list of module objects")
    types = [m.get("type") for m in modules]
    unknown = [t for t in types if t not in (TRANSFORMER, POOLING, NORMALIZE)]
    if unknown:
        raise ConfigError(f"{file} declares modules {unknown} that samp-jax does not implement "
                          f"(it runs {TRANSFORMER}, {POOLING} and {NORMALIZE})")
    if TRANSFORMER in types:
        path = modules[types.index(TRANSFORMER)].get("path", "")
        if path not in ("", "."):
            raise ConfigError(f"{file}: the transformer lives in {path!r}; samp-jax reads it from "
                              f"the folder root: load {folder / path} instead")
    if POOLING not in types:
        raise ConfigError(f"{file} declares no {POOLING} module")
    pooling_dir = folder / modules[types.index(POOLING)].get("path", "1_Pooling")
    return DeclaredPooling(_modes(pooling_dir / "config.json"), NORMALIZE in types)


def _legacy_pooling(folder: Path) -> DeclaredPooling | None:
    """Folders without `modules.json` but with `1_Pooling/config.json` (no Normalize)."""
    config = folder / "1_Pooling" / "config.json"
    return DeclaredPooling(_modes(config), False) if config.is_file() else None


def _modes(config_file: Path) -> tuple[str, ...]:
    if not config_file.is_file():
        raise ConfigError(f"pooling config {config_file} is missing")
    config = _json(config_file)
    if not isinstance(config, dict):
        raise ConfigError(f"{config_file} must hold a JSON object")
    if config.get("include_prompt", True) is not True:
        raise ConfigError(f"{config_file}: include_prompt=false is not supported")
    modes = tuple(mode for mode in POOLING_MODES if config.get(POOLING_KEYS[mode]))
    if not modes:
        raise ConfigError(f"{config_file} enables no pooling mode (one of {sorted(POOLING_KEYS.values())})")
    return modes


def _json(file: Path):
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file} is not valid JSON: {e}") from None


def write_st_files(folder: str | Path, *, hidden_size: int, modes: tuple[str, ...], normalize: bool,
                   max_seq_length: int | None = None) -> None:
    """Writes `modules.json`, `1_Pooling/config.json` (and `2_Normalize/`) so that
    sentence-transformers and `read_pooling` see the given pooling."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": NORMALIZE})
        (folder / "2_Normalize").mkdir(parents=True, exist_ok=True)
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    pooling = {"word_embedding_dimension": hidden_size}
    pooling |= {key: mode in modes for mode, key in POOLING_KEYS.items()}
    pooling |= {"include_prompt": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (folder / MODULES_FILE).write_text(json.dumps(modules, indent=2))
    if max_seq_length is not None:
        (folder / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2))
