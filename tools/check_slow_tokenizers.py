"""Records what HF's `AutoTokenizer` builds from folders that have only a slow tokenizer's files
(no `tokenizer.json`), for `tests/samp_jax/models/test_slow_tokenizer.py` to compare
samp-jax's conversion with. Runs in the golden venv (transformers, no samp-jax):

    .golden-venv/bin/python tools/check_slow_tokenizers.py record
    .golden-venv/bin/python tools/check_slow_tokenizers.py ids DIR OUT.json

`record` writes each folder of `tests/samp_jax/models/slow_cases.py` (`CASES`), loads it with
`AutoTokenizer.from_pretrained`, and stores in `tests/golden/slow_tokenizers.json` the fast
tokenizer it built (`tokenizer.json`, its vocabulary as a digest) and a digest of its ids on
each of the family's texts and the hostile ones (`ids_digest`). `ids` writes the ids HF gives for one folder
(a real checkpoint's, say) on the hostile texts, to compare with samp-jax's by hand.
"""

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.samp_jax.models.slow_cases import (  # noqa: E402
    CASES, HOSTILE, HOSTILE_PAIRS, RECORD, ids_digest, texts, vocab_digest, write_case)


def commit() -> str:
    """The checkout's short commit, `-dirty` with uncommitted changes (as
    `samp_jax.core.provenance`, which this venv cannot import)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short=12", "HEAD") + ("-dirty" if dirty else "")


def hf_ids(tokenizer, singles, pairs) -> dict:
    return {"single": [tokenizer(t)["input_ids"] for t in singles],
            "pairs": [[(e := tokenizer(a, b, return_token_type_ids=True))["input_ids"],
                       e["token_type_ids"]] for a, b in pairs]}


def record() -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            folder = write_case(case, Path(tmp) / case)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            spec = json.loads(tokenizer.backend_tokenizer.to_str())
            spec["model"]["vocab"] = vocab_digest(spec["model"]["vocab"])
            singles, pairs = texts(case.split("/")[0])
            encoded = hf_ids(tokenizer, singles, pairs)
            cases[case] = {"class": type(tokenizer).__name__, "pad_token": tokenizer.pad_token,
                           "tokenizer": spec,
                           **{k: [ids_digest(ids) for ids in v] for k, v in encoded.items()}}
            print(f"recorded {case}: {type(tokenizer).__name__}")
    provenance = {"command": "python tools/check_slow_tokenizers.py record", "commit": commit(),
                  "device": f"CPU ({platform.machine()})",
                  "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
                  "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}
    lines = [f" {json.dumps(case)}: {json.dumps(value, ensure_ascii=False)}"
             for case, value in cases.items()]
    RECORD.write_text(f'{{"provenance": {json.dumps(provenance)},\n"cases": {{\n'
                      + ",\n".join(lines) + "\n}}\n", encoding="utf-8")
    print(f"wrote {RECORD.relative_to(ROOT)} ({len(cases)} folders)")


def ids(folder: Path, out: Path) -> None:
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out.write_text(json.dumps({"class": type(tokenizer).__name__,
                               **hf_ids(tokenizer, HOSTILE, HOSTILE_PAIRS)}), encoding="utf-8")
    print(f"wrote {out}: {type(tokenizer).__name__} ids of {len(HOSTILE)} texts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("record")
    one = sub.add_parser("ids")
    one.add_argument("folder", type=Path)
    one.add_argument("out", type=Path)
    args = parser.parse_args()
    record() if args.command == "record" else ids(args.folder, args.out)


if __name__ == "__main__":
    main()
