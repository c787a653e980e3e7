"""Golden entity spans of BIO and BIOES tag sequences, from seqeval (golden venv; seqeval's
default mode is conlleval's chunk reading, the one `samp_jax.models.bio_tags` implements):

    python tools/golden_entities.py --out tests/golden/entity_spans.json

Random sequences over "O" and the four prefixes of two types, so every transition (a stray
"I-"/"E-", "E-" or "S-" followed by anything, a type change) occurs many times, and a few
written by hand. Spans are stored as `[type, start, end]` with `end` exclusive.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TYPES = ("PER", "geo-loc")
SEQUENCES = 400
HAND_WRITTEN = (
    ["B-PER", "I-PER", "E-PER", "S-PER", "O"],
    ["S-PER", "I-PER", "E-PER"],           # I- after a single-word entity starts one
    ["E-PER", "E-PER", "I-PER"],           # stray E- and I- after E-
    ["B-PER", "E-geo-loc", "S-geo-loc"],   # a type change inside an entity
    ["I-PER", "I-PER", "B-PER", "I-PER"],  # IOB1
)


def write(out: Path) -> None:
    from importlib.metadata import version

    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(0)
    tags = ["O"] + [f"{p}-{t}" for t in TYPES for p in "BIES"]
    sequences = [list(s) for s in HAND_WRITTEN]
    sequences += [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(SEQUENCES)]
    cases = [{"tags": s, "spans": [[kind, start, end + 1] for kind, start, end in get_entities(s)]}
             for s in sequences]
    header = {"generator": "tools/golden_entities.py", "seqeval": version("seqeval")}
    lines = ",\n".join(json.dumps(case, separators=(",", ":")) for case in cases)
    out.write_text(json.dumps(header)[:-1] + ', "cases": [\n' + lines + "\n]}\n")
    print(f"{len(cases)} sequences, {sum(len(c['spans']) for c in cases)} entities -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    write(parser.parse_args().out)


if __name__ == "__main__":
    main()
