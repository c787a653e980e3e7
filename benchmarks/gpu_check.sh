#!/bin/bash
# One short GPU run from the project root (the time boxes add up to 550 s: with start-up, one
# device call of timeout_s=590 inside the 10-minute limit), each step time-boxed and writing its
# JSON as it goes, into $RESULTS (default benchmarks/results):
#   <device>-gpu_check.json   every step's exit status and seconds (rewritten after each step)
#   <device>-env.json         GPU, driver, versions
#   <device>-tests.json       the `gpu`-marked compiled-kernel tests: the warp-specialized kernel's
#                             in a second pytest run, last (logs beside it)
#   <device>-gemm.json        the GEMM table (benchmarks/gemm.py: sites, raw INT8, cuBLAS peers;
#                             the warp-specialized kernel last on each shape)
#   <device>-e2e.json         end to end, BERT-base with random weights (samp-jax bench): FP16 and
#                             the Pallas INT8 map first, on 256x128 first
#   <device>-e2e-more.json    the other contenders, two shapes
#   <device>-e2e-minilm.json  end to end, MiniLM from an FP16 copy ($MINILM), if one is there
#   <device>-profile.json     per-kernel time breakdown of one forward (benchmarks/kernel_profile.py)
# After every step, $OUT/gpu_check.tgz holds every result and log so far (a device run returns at
# most 8 files from $OUT: this and the summary JSON are the only two written there).
# Before the GPU session, on any machine: `make gpu-carry` (a flax 0.12.10 wheel into .whl/, an FP16
# MiniLM into .carry/minilm-fp16); carry both folders to the GPU machine.
# QUICK=1 runs every step with its tiny CPU option (what tests/benchmarks/test_gpu_check.py does).
# COMPILE_PROBE=1 adds benchmarks/compile_time.py (per-preset compile seconds, FP8 included),
# with XLA's autotuner on and off, outside the 550 s (a second device call).
# Time boxes (s): T_TESTS T_TESTS_WS T_GEMM T_E2E T_E2E_MORE T_MINILM T_PROFILE T_COMPILE. A missing flax 0.12.10 etc.: put the
# wheels in .whl/ and they are installed (no network) into /tmp/site first.
set -u
RESULTS=${RESULTS:-$PWD/benchmarks/results}; OUT=${OUT:-$PWD/gpu_out}; QUICK=${QUICK:-0}
LOGS=${LOGS:-$(mktemp -d /tmp/gpu_check_logs.XXXXXX)}  # step logs, packed into $OUT/gpu_check.tgz
mkdir -p "$RESULTS" "$OUT" "$LOGS"
touch "$LOGS/.start"  # results older than this are an earlier run's
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# one persistent compilation cache for all steps (the profile reuses the e2e step's executables),
# outside $OUT: only the packed results come back from there
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/samp_jax_gpu_check_cache}
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
pack() {  # this run's results (not an earlier run's files in $RESULTS) and its logs so far
  tar czf "$OUT/gpu_check.tgz.part" -C "$RESULTS" \
    $(cd "$RESULTS" && find . -maxdepth 1 -name "$DEVICE-*" -newer "$LOGS/.start" -printf '%P\n') \
    -C "$LOGS" . && mv "$OUT/gpu_check.tgz.part" "$OUT/gpu_check.tgz"
  cp "$SUMMARY" "$OUT/" 2>/dev/null
}
step() {  # step NAME SECONDS COMMAND...: runs it under `timeout`, logs to $LOGS/NAME.log
  local name=$1 box=$2; shift 2
  local t0=$(date +%s)
  echo "[t=$(( t0 - START ))s] $name (at most ${box}s)"
  timeout -k 10 "$box" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?
  local t1=$(date +%s)
  echo "  rc=$rc in $(( t1 - t0 ))s"; tail -4 "$LOGS/$name.log" | sed 's/^/  | /'
  STEPS="$STEPS{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( t1 - t0 )), \"timed_out\": $([ $rc = 124 ] || [ $rc = 137 ] && echo true || echo false)},"
  printf '{"device": "%s", "quick": %s, "commit": "%s", "steps": [%s]}\n' "$DEVICE" "$QUICK" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "${STEPS%,}" > "$SUMMARY"
  pack
}
if [ "$QUICK" = 1 ]; then  # a shared CPU is slow: generous boxes, fewer contenders
  : "${T_TESTS:=300}" "${T_TESTS_WS:=300}" "${T_GEMM:=600}" "${T_E2E:=600}" "${T_E2E_MORE:=600}"
  : "${T_MINILM:=600}" "${T_PROFILE:=600}"
  : "${E2E_CONTENDERS:=samp_fp16,samp_fully_quant_pallas,torch_sdpa_fp16}"
  : "${E2E_MORE_CONTENDERS:=samp_fp8}"
  GEMM_ARGS="--quick"; E2E_ARGS="--quick --models tiny --interpret --shapes 1x32"
  E2E_MORE_ARGS="$E2E_ARGS"
  MINILM_ARGS="--quick"; PROFILE_ARGS="--quick"
  MINILM_CONTENDERS=samp_fp16,samp_fully_quant_xla,samp_fp8,samp_search_snli_1pct
else
  GEMM_ARGS="--repeats 20 --m 4096,32768"
  # the goals' shapes, the largest first; the other contenders on two
  E2E_ARGS="--models bert-base --shapes 256x128,32x128,8x128,1x128 --repeats 10 --inner 5"
  E2E_MORE_ARGS="--models bert-base --shapes 32x128,256x128 --repeats 10 --inner 5"
  MINILM_ARGS="--shapes 32x128,256x128 --repeats 10 --inner 5"; PROFILE_ARGS="--models bert-base --shape 32x128"
  MINILM_CONTENDERS=torch_sdpa_fp16,samp_fp16,samp_fully_quant_pallas,samp_search_snli_1pct
fi
# in the order they run (`bench` keeps it); torch_compile_fp16 compiles per shape: name it in
# E2E_MORE_CONTENDERS to time it
E2E_CONTENDERS=${E2E_CONTENDERS:-samp_fp16,samp_fully_quant_pallas,torch_sdpa_fp16}
E2E_MORE_CONTENDERS=${E2E_MORE_CONTENDERS:-samp_fully_quant_xla,samp_quant_ffn_only_pallas,samp_fp8}

step env 20 $PY -c "
import json, platform, subprocess, sys, jax
smi = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total,temperature.gpu', '--format=csv'], capture_output=True, text=True) if __import__('shutil').which('nvidia-smi') else None
versions = {}
for name in ('jax', 'jaxlib', 'flax', 'numpy', 'torch', 'transformers'):
    try: versions[name] = __import__(name).__version__
    except ImportError: versions[name] = None
doc = {'device_kind': jax.devices()[0].device_kind, 'backend': jax.default_backend(), 'python': sys.version,
       'versions': versions, 'nvidia_smi': smi.stdout if smi else None, 'machine': platform.machine()}
open('$RESULTS/$DEVICE-env.json', 'w').write(json.dumps(doc, indent=1)); print(doc)"
# -v names each test as it starts (a test that hangs or aborts the process is the last named);
# a per-test limit where pytest-timeout is installed (the GPU image has it)
PER_TEST=$($PY -c "import pytest_timeout" 2>/dev/null && echo "--timeout 60")
step tests ${T_TESTS:-90} $PY -m pytest -v -p no:cacheprovider -m gpu -rfE $PER_TEST \
  -k "not (warp_specialized or mosaic_ws)" tests/pallas_kernels tests/samp_jax/ops --junitxml "$LOGS/tests.xml"
step tests_ws ${T_TESTS_WS:-40} $PY -m pytest -v -p no:cacheprovider -m gpu -rfE $PER_TEST \
  -k "warp_specialized or mosaic_ws" tests/pallas_kernels --junitxml "$LOGS/tests_ws.xml"
$PY -c "
import json, xml.etree.ElementTree as ET
doc = {}
for run in ('tests', 'tests_ws'):
    try:
        root = ET.parse('$LOGS/' + run + '.xml').getroot()
        s = root if root.tag == 'testsuite' else root.find('testsuite')
        doc[run] = {k: int(s.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')} | {'seconds': float(s.get('time', 0))}
        doc[run]['failed'] = [c.get('classname', '') + '::' + c.get('name', '') for c in s.iter('testcase')
                              if c.find('failure') is not None or c.find('error') is not None]
    except (OSError, ET.ParseError) as e:
        doc[run] = {'error': f'no test report (see {run}.log for the last test named): {e}'}
open('$RESULTS/$DEVICE-tests.json', 'w').write(json.dumps(doc, indent=1)); print(doc)"
pack
step gemm ${T_GEMM:-90} $PY benchmarks/gemm.py $GEMM_ARGS --out "$RESULTS/$DEVICE-gemm.json"
step e2e ${T_E2E:-150} $PY -m samp_jax.app bench $E2E_ARGS --contenders "$E2E_CONTENDERS" --out "$RESULTS/$DEVICE-e2e.json"
step e2e_more ${T_E2E_MORE:-60} $PY -m samp_jax.app bench $E2E_MORE_ARGS --contenders "$E2E_MORE_CONTENDERS" \
  --out "$RESULTS/$DEVICE-e2e-more.json"
if [ -d "$MINILM" ]; then
  step e2e_minilm ${T_MINILM:-50} $PY -m samp_jax.app bench $MINILM_ARGS --models minilm --minilm "$MINILM" \
    --contenders "$MINILM_CONTENDERS" --out "$RESULTS/$DEVICE-e2e-minilm.json"
else
  echo "no MiniLM copy at $MINILM: python benchmarks/minilm_fp16.py --out $MINILM (skipping that step)"
fi
step profile ${T_PROFILE:-50} $PY benchmarks/kernel_profile.py $PROFILE_ARGS \
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
