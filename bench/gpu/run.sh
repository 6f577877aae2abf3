#!/usr/bin/env bash
# The GPU proof in one device call (issue 14), run from the repository root on a CUDA machine without network:
#   1. install gsplat, plyfile and pydantic (spaceport.errors and the summaries import it; the device has
#      none) from carried wheels into /tmp/site: WHEEL_DIR must hold gsplat, plyfile, pydantic,
#      pydantic_core (cp312 manylinux), annotated_types, typing_extensions and typing_inspection;
#   2. JIT-compile gsplat's CUDA extension for this GPU only (TORCH_CUDA_ARCH_LIST, MAX_JOBS), timed;
#   3. the GPU-marked tests (CUDA rasterizer vs the CPU one, forward + gradients; MCMC training; GPU k-means);
#   4. bench/gpu/bench.py on a real capture: plain gsplat loop, our `default`, our `quality` (MCMC), same steps.
# Every part writes into $OUT as it finishes, so a timeout still returns what was done.
#
#   OUT=/some/dir bench/gpu/run.sh WHEEL_DIR SFM_OUTPUT [STEPS|auto] [CAPTURE_NAME]
#
# BUDGET_S (default 510) is the wall time the whole script may take; STEPS=auto picks 3000/2000/1000 steps
# from what is left after the compile and the tests (three runs must fit; guessed 10-30 ms/step at 1.5 MP).
set -u
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-510}
DEADLINE=$((T0 + BUDGET_S))
WHEELS=${1:?wheel folder}
SCENE=${2:?SfM output folder}
STEPS=${3:-auto}
CAPTURE=${4:-$(basename "$SCENE")}
OUT=${OUT:-$PWD/gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1  # the whole log comes back even if the call is cut off
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
export PATH="$(dirname "$($PY -c 'import sys; print(sys.executable)')"):$PATH"  # the venv's ninja
elapsed() { echo $(( $(date +%s) - T0 )); }

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
nvcc --version | tail -n 2 | tee -a "$OUT/device.txt"
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
NVCC=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')

echo "== install (t=$(elapsed) s)"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 2
export PYTHONPATH="$PWD:/tmp/site"

echo "== compile gsplat for sm_${TORCH_CUDA_ARCH_LIST/./} with MAX_JOBS=$MAX_JOBS (t=$(elapsed) s)"
C0=$(date +%s)
VERBOSE=1 $PY -c "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat CUDA extension not built'" \
  >"$OUT/compile.log" 2>&1
RC=$?
COMPILE_S=$(( $(date +%s) - C0 ))
tail -n 3 "$OUT/compile.log"
if [ $RC -ne 0 ]; then echo "compile FAILED after $COMPILE_S s (see compile.log)"; tail -n 40 "$OUT/compile.log"; exit 3; fi
echo "compiled in $COMPILE_S s"

echo "== GPU-marked tests (t=$(elapsed) s)"
timeout 150 $PY -m pytest -q -p no:cacheprovider -m gpu -rA tests/ml/train/test_train_gpu.py \
  tests/ml/compress/test_compress_formats.py >"$OUT/tests.log" 2>&1
echo "tests exit $?"
TESTS=$(grep -E "[0-9]+ (passed|failed|errors?|skipped|deselected)" "$OUT/tests.log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
grep -E "^(PASSED|FAILED|ERROR|SKIPPED)" "$OUT/tests.log"
echo "$TESTS"

LEFT=$((DEADLINE - $(date +%s)))
if [ "$STEPS" = auto ]; then
  if [ $LEFT -ge 300 ]; then STEPS=3000; elif [ $LEFT -ge 200 ]; then STEPS=2000; else STEPS=1000; fi
fi
echo "== bench: $STEPS steps per run, $LEFT s left (t=$(elapsed) s)"
$PY - "$OUT/notes.json" <<EOF
import json, sys
json.dump({"NVIDIA driver": "$DRIVER", "nvcc": "$NVCC",
           "gsplat JIT compile": "$COMPILE_S s (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS)",
           "GPU-marked tests": "$TESTS"}, open(sys.argv[1], "w"))
EOF
$PY bench/gpu/bench.py --scene "$SCENE" --steps "$STEPS" --capture "$CAPTURE" --out "$OUT" \
  --deadline $((DEADLINE - 10)) --notes-json "$OUT/notes.json"
echo "== done (t=$(elapsed) s)"
