#!/usr/bin/env bash
# Builds the golden-file venv (Python 3.11, torch CPU, transformers 4.57 with Flax) once,
# then regenerates tests/golden with Hugging Face's own code.
set -euo pipefail
cd "$(dirname "$0")/.."
GV=.golden-venv
PY311=$(ls "$HOME"/.pyenv/versions/3.11*/bin/python 2>/dev/null | head -1 || true)
PY311=${PY311:-$(command -v python3.11)}
if [ ! -x "$GV/bin/python" ]; then
  "$PY311" -m venv "$GV"
  "$GV/bin/pip" install -q "torch==2.13.0" "transformers==4.57.*" flax safetensors "sentence-transformers==5.7.0" seqeval \
    sentencepiece "peft==0.17.1"
fi
MINILM=$(.venv/bin/python -c "from samp_jax.core.assets import minilm_path; print(minilm_path())")
"$GV/bin/python" tools/make_golden.py --minilm "$MINILM" --out tests/golden
"$GV/bin/python" tools/golden_entities.py --out tests/golden/entity_spans.json
# an ERNIE checkpoint's task-type table under use_task_id: false, over the ERNIE family golden
"$GV/bin/python" tools/golden_ernie_no_task_id.py --out tests/golden/families/ernie
# rows past max_position_embeddings, over the family classifiers without a position table
"$GV/bin/python" tools/golden_long_rows.py --out tests/golden
# CrossEncoder activations, over the BERT family classifier make_golden.py just wrote
"$GV/bin/python" tools/golden_cross_encoder.py --out tests/golden/cross_encoder
# PEFT LoRA adapters over the family checkpoints make_golden.py just wrote, with HF's PeftModel
# outputs (peft joins a golden venv built before it was needed)
"$GV/bin/python" -c "import peft" 2>/dev/null || "$GV/bin/pip" install -q "peft==0.17.1"
"$GV/bin/python" tools/golden_peft.py --out tests/golden/peft
# ModernBERT configs as transformers 5 writes them (rope_parameters, layer_types), with its own
# outputs: transformers 5 (the version .venv has) beside the golden venv's torch.
TF5=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
if [ ! -d "$GV/transformers5/transformers-$TF5.dist-info" ]; then
  rm -rf "$GV/transformers5"
  "$GV/bin/pip" install -q --target "$GV/transformers5" "transformers==$TF5"
fi
PYTHONPATH="$GV/transformers5" "$GV/bin/python" tools/golden_modernbert_v5.py
# HF (and sentence-transformers) must load what samp-jax's save_pretrained writes, per family.
ROUNDTRIP=$(mktemp -d)
.venv/bin/python tools/check_hf_roundtrip.py export --out "$ROUNDTRIP"
"$GV/bin/python" tools/check_hf_roundtrip.py verify "$ROUNDTRIP"
rm -rf "$ROUNDTRIP"
