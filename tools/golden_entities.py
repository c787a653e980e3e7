"""Golden entity spans of BIO, BIOES and BILOU tag sequences, from seqeval (golden venv;
seqeval's default mode is conlleval's chunk reading, the one `samp_jax.models.bio_tags`
implements):

    python tools/golden_entities.py --out tests/golden/entity_spans.json

`cases`: random sequences over "O" and the four BIOES prefixes of two types, so every
transition (a stray "I-"/"E-", "E-" or "S-" followed by anything, a type change) occurs many
times, and a few written by hand; `spans` is seqeval's default reading.

`bilou_cases`: BILOU sequences, each with `strict`, the spans of seqeval's strict mode with its
`BILOU` scheme (`seqeval.scheme.Entities`), `lenient`, seqeval's default reading of the
sequence with "L-" written "E-" and "U-" written "S-" (the reading samp-jax gives BILOU), and
`valid`: whether the strict spans cover every tagged word (every entity is B- I-* L- or U-).
Random sequences over "O" and the four BILOU prefixes (almost all invalid), random well-formed
ones (each valid, where the two readings must agree), and a few written by hand.
Spans are stored as `[type, start, end]` with `end` exclusive.
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
BILOU_SEQUENCES = 200
BILOU_HAND_WRITTEN = (
    ["B-PER", "I-PER", "L-PER", "U-PER", "O"],
    ["U-PER", "U-PER", "B-geo-loc", "L-geo-loc"],  # two unit entities in a row
    ["B-PER", "L-PER", "B-PER", "L-PER"],          # an entity ends at L-, the next B- starts one
    ["U-PER", "I-PER", "L-PER"],                   # invalid: I- after a unit entity starts one
    ["L-PER", "L-PER", "I-PER"],                   # invalid: stray L- and I- after L-
    ["B-PER", "I-PER"],                            # invalid: no L-
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
    bilou = [_bilou_case(s) for s in _bilou_sequences(random.Random(1))]
    header = {"generator": "tools/golden_entities.py", "seqeval": version("seqeval")}
    out.write_text(json.dumps(header)[:-1] + ', "cases": [\n' + _lines(cases)
                   + '\n], "bilou_cases": [\n' + _lines(bilou) + "\n]}\n")
    print(f"{len(cases)} sequences, {sum(len(c['spans']) for c in cases)} entities; "
          f"{len(bilou)} BILOU sequences ({sum(c['valid'] for c in bilou)} valid), "
          f"{sum(len(c['lenient']) for c in bilou)} entities -> {out}")


def _lines(cases: list[dict]) -> str:
    return ",\n".join(json.dumps(case, separators=(",", ":")) for case in cases)


def _bilou_sequences(rng: random.Random) -> list[list[str]]:
    """The hand-written ones, random tags, then random well-formed sequences."""
    tags = ["O"] + [f"{p}-{t}" for t in TYPES for p in "BILU"]
    sequences = [list(s) for s in BILOU_HAND_WRITTEN]
    sequences += [[rng.choice(tags) for _ in range(rng.randint(1, 12))]
                  for _ in range(BILOU_SEQUENCES)]
    for _ in range(BILOU_SEQUENCES):
        sequence: list[str] = []
        for _ in range(rng.randint(1, 6)):
            kind, size = rng.choice(TYPES), rng.choice((0, 1, 1, 2, 3, 4))
            sequence += (["O"] if size == 0 else [f"U-{kind}"] if size == 1 else
                         [f"B-{kind}"] + [f"I-{kind}"] * (size - 2) + [f"L-{kind}"])
        sequences.append(sequence)
    return sequences


def _bilou_case(tags: list[str]) -> dict:
    """A BILOU sequence with its strict spans, its lenient spans and whether it is valid."""
    from seqeval.metrics.sequence_labeling import get_entities
    from seqeval.scheme import BILOU, Entities

    strict = [[e.tag, e.start, e.end] for e in Entities([tags], BILOU).entities[0]]
    as_bioes = [{"L": "E", "U": "S"}.get(t[0], t[0]) + t[1:] for t in tags]
    lenient = [[kind, start, end + 1] for kind, start, end in get_entities(as_bioes)]
    covered = sorted(i for _, start, end in strict for i in range(start, end))
    valid = covered == [i for i, t in enumerate(tags) if t != "O"]
    assert not valid or lenient == strict, (tags, strict, lenient)
    return {"tags": tags, "strict": strict, "lenient": lenient, "valid": valid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    write(parser.parse_args().out)


if __name__ == "__main__":
    main()
