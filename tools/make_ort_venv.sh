#!/usr/bin/env bash
# Builds .ort-venv (Python 3.12, torch CPU, HF optimum-onnx, onnxruntime) for
# tools/ort_compare.py. Separate from .venv: torch and ONNX Runtime never become samp-jax
# dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(ls "$HOME"/.pyenv/versions/3.12*/bin/python 2>/dev/null | head -1 || true)
PY=${PY:-$(command -v python3.12)}
if [ ! -x .ort-venv/bin/python ]; then
  "$PY" -m venv .ort-venv
fi
.ort-venv/bin/pip install -q "optimum-onnx[onnxruntime]" torch
