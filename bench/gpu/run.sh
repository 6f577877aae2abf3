#!/usr/bin/env bash
# The GPU bench in one device call, from the repository root on a CUDA machine without network:
#   1. carried wheels into /tmp/site (pydantic and its parts, plyfile: the device has none);
#   2. gsplat's CUDA extension built by the train image's recipe (containers/train/build_gsplat.sh) for
#      sm_90 only, from the carried sdist, and installed; without the recipe, gsplat's JIT compile;
#   3. the GPU-marked tests (every test file with a `gpu` mark) against that build;
#   4. a real CUDA out-of-memory, provoked on purpose (densify every step, cap 2e9 Gaussians), must end
#      in the typed OutOfMemory error with its fix;
#   5. CUDA MPS started if the machine allows it, then bench/gpu/protocol.py: plain gsplat loop vs our
#      `default` vs our `quality` on every capture, seeds 0-2, 7k steps, 30k steps on one capture, one
#      uncontended triplet if time is left.
# Everything lands in $OUT as it finishes (at most 8 files come back): run.log (this output),
# notes.json (device, build, tests, OOM, MPS), runs.jsonl and protocol.json (the protocol),
# logs.tar.gz (every log, re-packed every 30 s), gpu.md (a preview of bench/gpu/report.py's table).
#
#   OUT=/some/dir bench/gpu/run.sh            # on the device; CARRY (default .devcarry) holds
#                                              # whl/*.whl, src/gsplat-*.tar.gz, sfm/<capture>/
#   DRY_RUN=1 PYTHON=... bench/gpu/run.sh     # CPU rehearsal: no CUDA build, no MPS, tiny runs
#
# Knobs (environment): BUDGET_S (555: the script's own budget; it ends ~30 s before it, so timeout_s 560 fits),
# STEPS (7000), SEEDS (0,1,2), SLOTS (6), CAPTURES (monstree,fountain-P11,herzjesu-P8),
# LONG_CAPTURE (monstree, '' for none), LONG_STEPS (30000), SOLO_CAPTURE (monstree, '' for none),
# DOWNSCALE (1), LOG_EVERY (100), OOM_CAPTURE (herzjesu-P8), OOM_DOWNSCALE (4), MAX_JOBS (16),
# GSPLAT_VERSION (1.5.3), WHEELS (CARRY/whl), METHODS (reference,default,quality), TRY_RECIPE (1: run the
# recipe in a dry run too, where it fails for want of nvcc and the fallback is exercised).
# bench/gpu/prepare.py makes CARRY.
set -u
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-555}
DEADLINE=$((T0 + BUDGET_S))
DRY_RUN=${DRY_RUN:-0}
CARRY=${CARRY:-.devcarry}
WHEELS=${WHEELS:-$CARRY/whl}
OUT=${OUT:-$PWD/gpu-out}
PY=${PYTHON:-python3}
GSPLAT_VERSION=${GSPLAT_VERSION:-1.5.3}
CAPTURES=${CAPTURES:-monstree,fountain-P11,herzjesu-P8}  # cheapest per step first: it finishes seeds soonest
LONG_CAPTURE=${LONG_CAPTURE-monstree}
SOLO_CAPTURE=${SOLO_CAPTURE-monstree}
if [ "$DRY_RUN" = 1 ]; then  # sized for a busy 2-core machine: every path runs, nothing is measured
  STEPS=${STEPS:-4}; LONG_STEPS=${LONG_STEPS:-100000}; SLOTS=${SLOTS:-3}; DOWNSCALE=${DOWNSCALE:-16}; DEVICE=cpu
  SEEDS=${SEEDS:-0}; LOG_EVERY=${LOG_EVERY:-1}; OOM_DOWNSCALE=${OOM_DOWNSCALE:-16}
else
  STEPS=${STEPS:-7000}; LONG_STEPS=${LONG_STEPS:-30000}; SLOTS=${SLOTS:-6}; DOWNSCALE=${DOWNSCALE:-1}; DEVICE=cuda
  SEEDS=${SEEDS:-0,1,2}; LOG_EVERY=${LOG_EVERY:-100}; OOM_DOWNSCALE=${OOM_DOWNSCALE:-4}
fi
LOGS=${LOGS:-/tmp/gpu-bench-logs}
SITE=${SITE:-/tmp/site}
rm -rf "$LOGS" && mkdir -p "$OUT" "$LOGS"
exec > >(tee "$OUT/run.log") 2>&1  # the whole log comes back even if the call is cut off
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
export PATH="$(dirname "$($PY -c 'import sys; print(sys.executable)')"):$PATH"  # the interpreter's ninja
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"  # cuobjdump for the recipe's arch check
elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( DEADLINE - $(date +%s) )); }
note() {  # note KEY VALUE: one fact into notes.json (read by bench/gpu/report.py)
  "$PY" -c 'import json, sys, pathlib
p = pathlib.Path(sys.argv[1]); d = json.loads(p.read_text()) if p.is_file() else {}
d[sys.argv[2]] = sys.argv[3]; p.write_text(json.dumps(d, indent=1))' "$OUT/notes.json" "$1" "$2"
}
pack_logs() { tar -czf "$OUT/logs.tar.gz.tmp" -C "$LOGS" . 2>/dev/null && mv "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"; }
MPS=off
PACKER=
finish() {
  [ -n "$PACKER" ] && kill "$PACKER" 2>/dev/null
  if [ "$MPS" = on ]; then echo quit | nvidia-cuda-mps-control; echo "MPS stopped"; fi
  pack_logs
  echo "== preview of the table (t=$(elapsed) s)"
  "$PY" bench/gpu/report.py "$OUT" --md "$OUT/gpu.md" --json /dev/null && cat "$OUT/gpu.md"
  echo "== end (t=$(elapsed) s); files in OUT: $(ls "$OUT" | tr '\n' ' ')"
  sleep 1  # let tee write the last lines into run.log
}
trap finish EXIT
note mode "$([ "$DRY_RUN" = 1 ] && echo "CPU dry run" || echo device)"
[ -f "$CARRY/manifest.json" ] && note carry "$(tr -d ' \n' <"$CARRY/manifest.json")"
note budget_s "$BUDGET_S"

echo "== device (t=$(elapsed) s)"
if [ "$DRY_RUN" = 1 ]; then
  note device "CPU dry run on $(nproc) cores"
else
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOGS/device.txt"
  nvcc --version | tail -n 2 | tee -a "$LOGS/device.txt"
  note nvidia_driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
  note nvcc "$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  note cpu_cores "$(nproc)"
fi

echo "== install carried wheels (t=$(elapsed) s)"
rm -rf "$SITE"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
  || { note install "FAILED"; exit 2; }
export PYTHONPATH="$PWD:$SITE"
$PY -c "import pydantic, plyfile, torch; print('pydantic', pydantic.VERSION, 'torch', torch.__version__)" || exit 2

echo "== gsplat $GSPLAT_VERSION (t=$(elapsed) s)"
SDIST=$(ls "$CARRY"/src/gsplat-"$GSPLAT_VERSION".tar.gz 2>/dev/null | head -n 1)
GW=/tmp/gsplat-wheel
rm -rf "$GW" && mkdir -p "$GW"
C0=$(date +%s)
BUILT=no
if { [ "$DRY_RUN" != 1 ] || [ "${TRY_RECIPE:-0}" = 1 ]; } && [ -f containers/train/build_gsplat.sh ] && [ -n "$SDIST" ]; then
  # the train image's recipe, for this GPU only (PIP_NO_INDEX: no network there, so pip must not try one)
  PIP_NO_INDEX=1 GSPLAT_VERSION=$GSPLAT_VERSION TORCH_CUDA_ARCH_LIST=9.0 WHEEL_DIR=$GW GSPLAT_SOURCE=$SDIST PYTHON=$PY \
    timeout 300 bash containers/train/build_gsplat.sh >"$LOGS/build.log" 2>&1
  RC=$?
  tail -n 4 "$LOGS/build.log"
  WHEEL=$(ls "$GW"/gsplat-*.whl 2>/dev/null | head -n 1)
  # a wheel whose extension imports is used even if a later check of the recipe failed (e.g. no cuobjdump for
  # its arch listing): compiling again through the JIT would cost another minute or more
  if [ -n "$WHEEL" ] && $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" --upgrade "$WHEEL" \
      && $PY -c "import torch; from gsplat import csrc; print('gsplat AOT extension', csrc.__file__)"; then
    BUILT=recipe
    note gsplat_recipe "$([ $RC -eq 0 ] && echo passed || echo "exit $RC after building a wheel that imports: $(tail -n 1 "$LOGS/build.log")")"
    note gsplat_build "containers/train/build_gsplat.sh, TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=$MAX_JOBS: $(( $(date +%s) - C0 )) s ($(grep -o 'compiled in [0-9]* s; largest process peaked at [0-9.]* GiB' "$LOGS/build.log"))"
  else
    note gsplat_recipe "FAILED (exit $RC) after $(( $(date +%s) - C0 )) s: $(tail -n 1 "$LOGS/build.log")"
  fi
fi
if [ $BUILT = no ]; then
  # no recipe (or it failed): the sdist's pure-Python package as it is (no wheel build, so no dependence on
  # the machine's setuptools), and gsplat's JIT compile of its csrc/ on first use
  rm -rf /tmp/gsplat-src "$SITE"/gsplat "$SITE"/gsplat-*.dist-info && mkdir -p /tmp/gsplat-src \
    && tar -xzf "$SDIST" -C /tmp/gsplat-src && cp -r /tmp/gsplat-src/gsplat-"$GSPLAT_VERSION"/gsplat "$SITE"/ \
    || { note gsplat_build "FAILED to unpack gsplat from '$SDIST'"; exit 3; }
  if [ "$DRY_RUN" = 1 ]; then
    note gsplat_build "CPU dry run: gsplat's Python package from the sdist (the JIT fallback's install), no CUDA build"
    BUILT=python
  else
    C0=$(date +%s)
    TORCH_CUDA_ARCH_LIST=9.0 VERBOSE=1 timeout 300 $PY -c \
      "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat CUDA extension not built'" \
      >"$LOGS/build_jit.log" 2>&1
    RC=$?
    note gsplat_build "JIT fallback (gsplat compiles itself on first use), TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=$MAX_JOBS: exit $RC after $(( $(date +%s) - C0 )) s"
    [ $RC -eq 0 ] || { tail -n 40 "$LOGS/build_jit.log"; exit 3; }
    BUILT=jit
  fi
fi
echo "gsplat: $BUILT (t=$(elapsed) s)"
$PY -c "import gsplat; print('gsplat', gsplat.__version__, gsplat.__file__)"

echo "== GPU-marked tests (t=$(elapsed) s)"
mapfile -t GPU_TESTS < <(grep -rlE --include='test_*.py' 'mark\.gpu' tests | sort)
echo "files: ${GPU_TESTS[*]}"
timeout 150 $PY -m pytest -q -p no:cacheprovider --continue-on-collection-errors -m gpu -rA "${GPU_TESTS[@]}" \
  >"$LOGS/tests.log" 2>&1
RC=$?
grep -E "^(PASSED|FAILED|ERROR|SKIPPED)" "$LOGS/tests.log"
SUMMARY=$(grep -E "[0-9]+ (passed|failed|errors?|skipped|deselected)" "$LOGS/tests.log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
[ $RC -ne 0 ] && tail -n 30 "$LOGS/tests.log"
note gpu_tests "exit $RC: $SUMMARY"
echo "tests exit $RC: $SUMMARY"
pack_logs

echo "== out of memory on purpose (t=$(elapsed) s)"
# Densify every step with a near-zero gradient threshold: every Gaussian seen splits or clones each step,
# so the count doubles until the card's memory runs out. The cap (2e9) is far beyond any memory.
OOM_SCENE="$CARRY/sfm/${OOM_CAPTURE:-herzjesu-P8}"
OOM_ARGS=(train "$OOM_SCENE" --out /tmp/oom-run --preset default --steps 400 --max-gaussians 2000000000
          --grow-grad2d 1e-12 --refine-start 0 --refine-every 1 --downscale "$OOM_DOWNSCALE" --checkpoint-every 0 --log-every 1
          --test-every 4 --device "$DEVICE")
rm -rf /tmp/oom-run
if [ "$DRY_RUN" = 1 ]; then  # a host out-of-memory under an address-space limit: the same error path
  (ulimit -v $((${OOM_HOST_MIB:-3072} * 1024)); timeout 300 $PY -m spaceport "${OOM_ARGS[@]}") >"$LOGS/oom.log" 2>&1
else
  timeout 120 $PY -m spaceport "${OOM_ARGS[@]}" >"$LOGS/oom.log" 2>&1
fi
RC=$?
LAST=$(grep -o '"num_gaussians": [0-9]*' "$LOGS/oom.log" | tail -n 1 | grep -o '[0-9]*$')
if [ -z "$LAST" ]; then LAST=$(grep -o 'num_gaussians=[0-9]*' "$LOGS/oom.log" | tail -n 1 | grep -o '[0-9]*$'); fi
ERR=$(grep -E '^(error|fix): ' "$LOGS/oom.log" | tr '\n' ' ')
tail -n 4 "$LOGS/oom.log"
if [ $RC -eq 2 ] && grep -q '^error: OutOfMemory:' "$LOGS/oom.log" && grep -q '^fix: ' "$LOGS/oom.log"; then
  note oom "passed: exit 2 with the typed error (last logged count ${LAST:-?} Gaussians): $ERR"
else
  note oom "FAILED: exit $RC, last logged count ${LAST:-?} Gaussians: ${ERR:-$(tail -n 1 "$LOGS/oom.log")}"
fi
rm -rf /tmp/oom-run
pack_logs

if [ "$DRY_RUN" != 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
  echo "== CUDA MPS (t=$(elapsed) s)"
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d >"$LOGS/mps.log" 2>&1 && timeout 30 $PY -c \
      "import torch; x = torch.ones(1 << 20, device='cuda'); assert float(x.sum()) == 1 << 20" >>"$LOGS/mps.log" 2>&1 \
      && echo get_server_list | nvidia-cuda-mps-control | grep -q '[0-9]'; then
    MPS=on
    note mps "on (nvidia-cuda-mps-control -d; server $(echo get_server_list | nvidia-cuda-mps-control | head -n 1))"
  else
    echo quit | nvidia-cuda-mps-control >/dev/null 2>&1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    note mps "off: could not start it ($(tail -n 2 "$LOGS/mps.log" | tr '\n' ' '))"
  fi
  cp -r /tmp/mps-log "$LOGS/" 2>/dev/null
  echo "MPS: $MPS"
elif [ "$DRY_RUN" = 1 ]; then
  note mps "off (CPU dry run)"
else
  note mps "off (nvidia-cuda-mps-control not found)"
fi

echo "== protocol (t=$(elapsed) s, $(left) s left)"
( while sleep 30; do pack_logs; done ) &
PACKER=$!
ARGS=()
IFS=, read -r -a NAMES <<<"$CAPTURES"
for c in "${NAMES[@]}"; do  # a capture missing from the carry is noted, not fatal to the others
  if [ -d "$CARRY/sfm/$c/images" ]; then ARGS+=(--capture "$c=$CARRY/sfm/$c"); else note "missing_$c" "no $CARRY/sfm/$c"; fi
done
[ -n "$LONG_CAPTURE" ] && ARGS+=(--long-capture "$LONG_CAPTURE" --long-steps "$LONG_STEPS")
[ -n "$SOLO_CAPTURE" ] && ARGS+=(--solo-capture "$SOLO_CAPTURE")
# the protocol stops its runs 25 s before the budget ends: the log packing and the preview still fit
$PY bench/gpu/protocol.py "${ARGS[@]}" --out "$OUT" --logs "$LOGS/runs" --work /tmp/spaceport-protocol \
  --deadline $((DEADLINE - 25)) --steps "$STEPS" --seeds "$SEEDS" --slots "$SLOTS" --device "$DEVICE" \
  --downscale "$DOWNSCALE" --log-every "$LOG_EVERY" --methods "${METHODS:-reference,default,quality}"
echo "protocol exit $? (t=$(elapsed) s)"
