"""What encoding a large split costs: peak host memory and time of `Task.encode` on SNLI pairs.

    .venv/bin/python tools/encode_memory.py --rows 150000 --max-length 256

Encodes the first ROWS pairs of the SNLI training subset (repeated as needed) with MiniLM's
tokenizer, cut at MAX_LENGTH tokens, and prints one JSON line: the rows, the arrays' width,
the seconds, the bytes the arrays hold (their bases: a view keeps its whole base alive) and the
process's peak RSS above what it held after loading the tokenizer. Run it in a fresh process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from samp_jax.core.assets import minilm_path  # noqa: E402
from samp_jax.core.provenance import code_commit  # noqa: E402
from samp_jax.models import Tokenizer  # noqa: E402
from samp_jax.tasks.task import get_task  # noqa: E402


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    tokenizer = Tokenizer.from_pretrained(minilm_path(), sentence_transformers=False)
    task = dataclasses.replace(get_task("snli"), max_length=args.max_length)
    train = list(task.examples("train"))
    examples = (train * (args.rows // len(train) + 1))[:args.rows]
    loaded = peak_mib()
    start = time.perf_counter()
    encoded = task.encode(tokenizer, examples)
    seconds = time.perf_counter() - start
    held = sum((a.base if a.base is not None else a).nbytes
               for a in (encoded.input_ids, encoded.attention_mask, encoded.token_type_ids))
    print(json.dumps({"rows": args.rows, "max_length": args.max_length,
                      "width": int(encoded.input_ids.shape[1]), "seconds": round(seconds, 2),
                      "arrays_mib": round(held / 2**20), "peak_rss_above_load_mib":
                      round(peak_mib() - loaded), "command": shlex.join(sys.argv),
                      "commit": code_commit(), "device": f"CPU ({platform.machine()})"}))


if __name__ == "__main__":
    main()
