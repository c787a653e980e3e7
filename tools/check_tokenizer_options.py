"""Records what HF's fast tokenizer classes do with a `tokenizer.json` whose
`tokenizer_config.json` states other options, for
`tests/samp_jax/models/test_fast_tokenizer_options.py` to compare samp-jax with. Runs in the
golden venv (transformers 4.57, sentence-transformers; no samp-jax):

    .golden-venv/bin/python tools/check_tokenizer_options.py record
    .venv/bin/python tools/check_tokenizer_options.py compare [--write]

`record` writes each folder of `tests/samp_jax/models/fast_option_cases.py` (`CASES`), loads it
with `AutoTokenizer.from_pretrained` (an `st/` case: with sentence-transformers, whose
`tokenize` lowercases as its `sentence_bert_config.json` says, the prompt put before each text
as `encode` puts it), and stores in `tests/golden/fast_tokenizer_options.json` the class, the
normalizer, pre-tokenizer and post-processor it tokenizes with, and the ids (with offsets, and
token types of pairs) of `TEXTS` and `PAIRS`, and their ids cut at `CUT_LENGTH` and
`CUT_PAIR_LENGTH` tokens (the class's `truncation_side`), and `TEXTS` split into words
(`is_split_into_words`, as a tagger is trained). `compare` loads the same folders with the
transformers it runs under (5.x in samp-jax's venv) and prints what differs from the record;
`--write` stores that list in the record (`other_version`). The st/ cases need
sentence-transformers and are left out where it is not installed.
"""

import argparse
import datetime
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.samp_jax.models.fast_option_cases import (  # noqa: E402
    CASES, COMPONENTS, CUT_LENGTH, CUT_PAIR_LENGTH, PAIRS, RECORD, TEXTS, components, digest,
    source_folder, write_case)

def minilm_dir() -> Path:
    """all-MiniLM-L6-v2's folder in samp-jax's asset cache (`samp_jax/core/assets.py`, standard
    library only, loaded by path: the golden venv cannot import samp_jax itself)."""
    spec = importlib.util.spec_from_file_location("assets", ROOT / "samp_jax" / "core" / "assets.py")
    assets = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("assets", assets)  # dataclasses look their module up
    spec.loader.exec_module(assets)
    return assets.minilm_path()


def commit() -> str:
    """The checkout's short commit, `-dirty` with uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short=12", "HEAD") + ("-dirty" if dirty else "")


def hf_case(folder: Path) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    singles = [tokenizer(t, return_offsets_mapping=True) for t in TEXTS]
    pairs = [tokenizer(a, b, return_token_type_ids=True) for a, b in PAIRS]
    return {"class": type(tokenizer).__name__,
            **components(tokenizer.backend_tokenizer.to_str()),
            "single": [{"ids": e["input_ids"], "offsets": [list(o) for o in e["offset_mapping"]]}
                       for e in singles],
            "pairs": [{"ids": e["input_ids"], "type_ids": e["token_type_ids"]} for e in pairs],
            "cut": [tokenizer(t, truncation=True, max_length=CUT_LENGTH)["input_ids"]
                    for t in TEXTS],
            "cut_pairs": [tokenizer(a, b, truncation=True, max_length=CUT_PAIR_LENGTH)["input_ids"]
                          for a, b in PAIRS],
            "words": split_words(folder, tokenizer)}


def split_words(folder: Path, tokenizer) -> dict:
    """`TEXTS` split on spaces, tokenized with `is_split_into_words=True` as a tagger is
    trained: by the folder's class, or (a class that refuses pre-split words unless loaded
    with `add_prefix_space=True`, RoBERTa's) loaded so, as HF's run_ner.py loads it."""
    from transformers import AutoTokenizer

    words = [text.split() for text in TEXTS]
    try:
        return {"prefix_space_loaded": False,
                "ids": [tokenizer(w, is_split_into_words=True)["input_ids"] for w in words]}
    except (AssertionError, ValueError):  # RoBERTa's asserts, BART's raises
        prefixed = AutoTokenizer.from_pretrained(folder, add_prefix_space=True)
        return {"prefix_space_loaded": True,
                "ids": [prefixed(w, is_split_into_words=True)["input_ids"] for w in words]}


def st_case(folder: Path, prompt: str) -> dict:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    tokenizer = model.tokenizer
    return {"class": type(tokenizer).__name__,
            **components(tokenizer.backend_tokenizer.to_str()),
            "single": [{"ids": model.tokenize([prompt + t])["input_ids"][0].tolist()}
                       for t in TEXTS]}


def run_cases(minilm: Path, *, with_st: bool) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            if case.st is not None and not with_st:
                continue
            folder = write_case(name, Path(tmp) / name, minilm, full=case.st is not None)
            results[name] = (st_case(folder, case.st.get("prompt", "")) if case.st is not None
                             else hf_case(folder))
            print(f"{name}: {results[name]['class']}")
    return results


def provenance(command: str) -> dict:
    import tokenizers
    import transformers

    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__}
    try:
        import sentence_transformers
        versions["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:
        pass
    return {"command": command, "commit": commit(), "device": f"CPU ({platform.machine()})",
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"), **versions}


def write(record: dict) -> None:
    lines = [f" {json.dumps(case)}: {json.dumps(value, ensure_ascii=False)}"
             for case, value in record["cases"].items()]
    head = {key: value for key, value in record.items() if key != "cases"}
    RECORD.write_text("{" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                                       for k, v in head.items())
                      + ',\n"cases": {\n' + ",\n".join(lines) + "\n}}\n", encoding="utf-8")


def record(minilm: Path) -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    sources = {case.source for case in CASES.values()}
    result = {"provenance": provenance("python tools/check_tokenizer_options.py record"),
              "sources": {s: digest((source_folder(s, minilm) / "tokenizer.json").read_text(
                  encoding="utf-8")) for s in sorted(sources)},
              "cases": run_cases(minilm, with_st=True)}
    write(result)
    print(f"wrote {RECORD.relative_to(ROOT)} ({len(result['cases'])} folders)")


def differences(recorded: dict, got: dict) -> list[str]:
    """The keys of one case whose values differ (ids and offsets per text; a class by its name
    without "Fast": 5.x's classes are fast ones without the suffix)."""
    keys = ["class"] if recorded["class"].removesuffix("Fast") != got["class"].removesuffix("Fast") else []
    keys += [k for k in COMPONENTS if recorded.get(k) != got.get(k)]
    for kind in ("single", "pairs"):
        for index, (a, b) in enumerate(zip(recorded.get(kind, []), got.get(kind, []))):
            keys += [f"{kind}[{index}].{k}" for k in a if a[k] != b.get(k)]
    return keys


def compare(minilm: Path, write_back: bool) -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    stored = json.loads(RECORD.read_text(encoding="utf-8"))
    try:
        import sentence_transformers  # noqa: F401
        with_st = True
    except ImportError:
        with_st = False
    got = run_cases(minilm, with_st=with_st)
    found = {name: differences(stored["cases"][name], value) for name, value in got.items()}
    for name, keys in found.items():
        print(f"{name}: {'same' if not keys else 'differs: ' + ', '.join(keys)}")
    if write_back:
        stored["other_version"] = {
            "provenance": provenance("python tools/check_tokenizer_options.py compare --write"),
            "differences": {name: keys for name, keys in found.items() if keys},
            "same": [name for name, keys in found.items() if not keys]}
        write(stored)
        print(f"wrote the differences into {RECORD.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, default=None,
                        help="all-MiniLM-L6-v2's folder (default: samp-jax's asset cache)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("record")
    other = sub.add_parser("compare")
    other.add_argument("--write", action="store_true")
    args = parser.parse_args()
    minilm = args.minilm or minilm_dir()
    if args.command == "record":
        record(minilm)
    else:
        compare(minilm, args.write)


if __name__ == "__main__":
    main()
