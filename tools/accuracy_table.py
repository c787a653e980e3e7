"""Regenerates the SNLI zero-shot accuracy table in docs/accuracy.md.

Usage: .venv/bin/python tools/accuracy_table.py [--max-pairs 2400] [--out docs/accuracy_snli_embed.json]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import jax

from samp_jax import Tokenizer, load_pretrained, minilm_path
from samp_jax.experiments import SnliEmbedTask, accuracy_table, default_variants, format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-pairs", type=int, default=2400)
    parser.add_argument("--out", type=Path, default=Path("docs/accuracy_snli_embed.json"))
    args = parser.parse_args()
    path = minilm_path()
    model, tokenizer = load_pretrained(path), Tokenizer.from_pretrained(path)
    task = SnliEmbedTask(tokenizer, max_pairs=args.max_pairs)
    start = time.perf_counter()
    rows = accuracy_table(model, task, default_variants(),
                          progress=lambda r: print(f"{r['variant']}: {r['roc_auc']:.4f}", flush=True))
    result = {"command": "python tools/accuracy_table.py --max-pairs %d" % args.max_pairs,
              "device": jax.devices()[0].device_kind, "machine": platform.machine(),
              "pairs": int(task.labels.size), "unique_sentences": len(task.texts),
              "calibration_sentences": len(task.calibration_texts),
              "total_seconds": time.perf_counter() - start, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(format_table(rows))


if __name__ == "__main__":
    main()
