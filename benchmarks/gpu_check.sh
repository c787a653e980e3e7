#!/bin/bash
# One short GPU run from the project root (the time boxes add up to 470 s: under 8 minutes on
# one H200 with start-up), each step
# time-boxed and writing its JSON as it goes, into $RESULTS (default benchmarks/results):
#   <device>-gpu_check.json   every step's exit status and seconds (rewritten after each step)
#   <device>-env.json         GPU, driver, versions
#   <device>-tests.json       the `gpu`-marked compiled-kernel tests (log beside it)
#   <device>-gemm.json        the GEMM table (benchmarks/gemm.py: sites, raw INT8, cuBLAS peers)
#   <device>-e2e.json         end to end, BERT-base with random weights (samp-jax bench)
#   <device>-e2e-minilm.json  end to end, MiniLM from an FP16 copy ($MINILM), if one is there
#   <device>-profile.json     per-kernel time breakdown of one forward (benchmarks/kernel_profile.py)
# Before the GPU session, on any machine: `make gpu-carry` (a flax 0.12.10 wheel into .whl/, an FP16
# MiniLM into .carry/minilm-fp16); carry both folders to the GPU machine.
# QUICK=1 runs every step with its tiny CPU option (what tests/benchmarks/test_gpu_check.py does).
# COMPILE_PROBE=1 adds benchmarks/compile_time.py (per-preset compile seconds, FP8 included),
# with XLA's autotuner on and off, outside the 8 minutes.
# Time boxes (s): T_TESTS T_GEMM T_E2E T_MINILM T_PROFILE T_COMPILE. A missing flax 0.12.10 etc.: put the
# wheels in .whl/ and they are installed (no network) into /tmp/site first.
set -u
RESULTS=${RESULTS:-$PWD/benchmarks/results}; OUT=${OUT:-$PWD/gpu_out}; QUICK=${QUICK:-0}
mkdir -p "$RESULTS" "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# one persistent compilation cache for all steps: the profile reuses the e2e step's executables
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$OUT/jax_cache}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
DEVICE=$($PY -c "import jax, re; print(re.sub(r'[^A-Za-z0-9]+', '_', jax.devices()[0].device_kind).strip('_'))") || exit 4
MINILM=${MINILM:-$PWD/.carry/minilm-fp16}
SUMMARY="$RESULTS/$DEVICE-gpu_check.json"
START=$(date +%s); STEPS=""
step() {  # step NAME SECONDS COMMAND...: runs it under `timeout`, logs to $OUT/NAME.log
  local name=$1 box=$2; shift 2
  local t0=$(date +%s)
  echo "[t=$(( t0 - START ))s] $name (at most ${box}s)"
  timeout "$box" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  local t1=$(date +%s)
  echo "  rc=$rc in $(( t1 - t0 ))s"; tail -4 "$OUT/$name.log" | sed 's/^/  | /'
  STEPS="$STEPS{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( t1 - t0 )), \"timed_out\": $([ $rc = 124 ] && echo true || echo false)},"
  printf '{"device": "%s", "quick": %s, "commit": "%s", "steps": [%s]}\n' "$DEVICE" "$QUICK" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "${STEPS%,}" > "$SUMMARY"
}
if [ "$QUICK" = 1 ]; then  # a shared CPU is slow: generous boxes, fewer contenders
  : "${T_TESTS:=300}" "${T_GEMM:=600}" "${T_E2E:=600}" "${T_MINILM:=600}" "${T_PROFILE:=600}"
  : "${E2E_CONTENDERS:=torch_sdpa_fp16,samp_fp16,samp_fully_quant_pallas,samp_fp8}"
  GEMM_ARGS="--quick"; E2E_ARGS="--quick --models tiny --interpret --shapes 1x32"
  MINILM_ARGS="--quick"; PROFILE_ARGS="--quick"
  MINILM_CONTENDERS=samp_fp16,samp_fully_quant_xla,samp_fp8,samp_search_snli_1pct
else
  GEMM_ARGS="--repeats 20 --m 4096,32768"
  E2E_ARGS="--models bert-base --shapes 1x128,8x128,32x128,256x128 --repeats 10 --inner 5"
  MINILM_ARGS="--shapes 32x128,256x128 --repeats 10 --inner 5"; PROFILE_ARGS="--models bert-base --shape 32x128"
  MINILM_CONTENDERS=torch_sdpa_fp16,samp_fp16,samp_fully_quant_pallas,samp_search_snli_1pct
fi
E2E_CONTENDERS=${E2E_CONTENDERS:-torch_sdpa_fp16,torch_compile_fp16,samp_fp16,samp_fully_quant_xla,samp_fully_quant_pallas,samp_quant_ffn_only_pallas,samp_fp8}

step env 30 $PY -c "
import json, platform, subprocess, sys, jax
smi = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total,temperature.gpu', '--format=csv'], capture_output=True, text=True) if __import__('shutil').which('nvidia-smi') else None
versions = {}
for name in ('jax', 'jaxlib', 'flax', 'numpy', 'torch', 'transformers'):
    try: versions[name] = __import__(name).__version__
    except ImportError: versions[name] = None
doc = {'device_kind': jax.devices()[0].device_kind, 'backend': jax.default_backend(), 'python': sys.version,
       'versions': versions, 'nvidia_smi': smi.stdout if smi else None, 'machine': platform.machine()}
open('$RESULTS/$DEVICE-env.json', 'w').write(json.dumps(doc, indent=1)); print(doc)"
step tests ${T_TESTS:-70} $PY -m pytest -q -p no:cacheprovider -m gpu -rfE tests/pallas_kernels tests/samp_jax/ops \
  --junitxml "$OUT/tests.xml"
$PY -c "
import json, xml.etree.ElementTree as ET
try:
    root = ET.parse('$OUT/tests.xml').getroot()
    s = root if root.tag == 'testsuite' else root.find('testsuite')
    doc = {k: int(s.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')} | {'seconds': float(s.get('time', 0))}
except (OSError, ET.ParseError) as e:
    doc = {'error': f'no test report: {e}'}
open('$RESULTS/$DEVICE-tests.json', 'w').write(json.dumps(doc, indent=1)); print(doc)"
cp "$OUT/tests.log" "$RESULTS/$DEVICE-tests.log" 2>/dev/null
step gemm ${T_GEMM:-90} $PY benchmarks/gemm.py $GEMM_ARGS --out "$RESULTS/$DEVICE-gemm.json"
step e2e ${T_E2E:-160} $PY -m samp_jax.app bench $E2E_ARGS --contenders "$E2E_CONTENDERS" --out "$RESULTS/$DEVICE-e2e.json"
if [ -d "$MINILM" ]; then
  step e2e_minilm ${T_MINILM:-60} $PY -m samp_jax.app bench $MINILM_ARGS --models minilm --minilm "$MINILM" \
    --contenders "$MINILM_CONTENDERS" --out "$RESULTS/$DEVICE-e2e-minilm.json"
else
  echo "no MiniLM copy at $MINILM: python benchmarks/minilm_fp16.py --out $MINILM (skipping that step)"
fi
step profile ${T_PROFILE:-60} $PY benchmarks/kernel_profile.py $PROFILE_ARGS \
  --contenders samp_fp16,samp_fully_quant_pallas,samp_fully_quant_xla --out "$RESULTS/$DEVICE-profile.json"
if [ "${COMPILE_PROBE:-0}" = 1 ]; then  # optional (not in the 8 minutes): why FP8 compiles slowly
  PROBE_ARGS=$([ "$QUICK" = 1 ] && echo --quick)
  step compile ${T_COMPILE:-150} env -u JAX_COMPILATION_CACHE_DIR $PY benchmarks/compile_time.py \
    $PROBE_ARGS --presets fp16,fully_quant,fp8 --out "$RESULTS/$DEVICE-compile.json"
  step compile_autotune0 ${T_COMPILE:-150} env -u JAX_COMPILATION_CACHE_DIR \
    XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" $PY benchmarks/compile_time.py $PROBE_ARGS --presets fp16,fp8 \
    --out "$RESULTS/$DEVICE-compile-autotune0.json"
fi
echo "[t=$(( $(date +%s) - START ))s] done: $SUMMARY"
