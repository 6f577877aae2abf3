#!/usr/bin/env bash
# Compile gsplat's CUDA extension ahead of time into a wheel, and check the wheel's architectures.
# The one recipe: the train image's build stage runs it (containers/train/Dockerfile), and so does
# the GPU bench on a device machine, so a wheel built there is built the way the image builds it.
#
# Works with whatever torch (a CUDA build) and nvcc are installed; installs nothing itself, so it
# runs offline once its inputs are there. Needs no GPU: the architectures come from
# TORCH_CUDA_ARCH_LIST, not from a device query.
#
# Inputs (environment):
#   GSPLAT_VERSION        gsplat release to build, e.g. 1.5.3 (required)
#   TORCH_CUDA_ARCH_LIST  architectures, e.g. "8.0;8.6;8.9;9.0+PTX" (required)
#   WHEEL_DIR             folder the wheel is written to (required; created)
#   MAX_JOBS              parallel nvcc processes (default 2; each needs a few GiB of memory)
#   GSPLAT_SOURCE         what pip builds (default gsplat==$GSPLAT_VERSION from the index; a
#                         downloaded sdist's path on a machine without network)
#   PYTHON                interpreter with torch installed (default python)
# Prints the wall-clock seconds of the compile and the peak resident memory of its largest
# process (one nvcc/cicc/ptxas: what MAX_JOBS must be sized by).
set -euo pipefail

: "${GSPLAT_VERSION:?set GSPLAT_VERSION, e.g. 1.5.3}"
: "${TORCH_CUDA_ARCH_LIST:?set TORCH_CUDA_ARCH_LIST, e.g. 8.0;8.6;8.9;9.0+PTX}"
: "${WHEEL_DIR:?set WHEEL_DIR, the folder the wheel is written to}"
export MAX_JOBS="${MAX_JOBS:-2}" TORCH_CUDA_ARCH_LIST
GSPLAT_SOURCE="${GSPLAT_SOURCE:-gsplat==${GSPLAT_VERSION}}"
PYTHON="${PYTHON:-python}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

command -v nvcc >/dev/null || { echo "build_gsplat: nvcc is not on PATH (set CUDA_HOME and PATH)" >&2; exit 2; }
command -v cuobjdump >/dev/null || { echo "build_gsplat: cuobjdump is not on PATH (CUDA toolkit bin/)" >&2; exit 2; }
NVCC_CUDA="$(nvcc --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')"
TORCH_CUDA="$("$PYTHON" -c 'import torch; print(torch.version.cuda or "")')"
echo "build_gsplat: gsplat ${GSPLAT_VERSION} from ${GSPLAT_SOURCE}; torch $("$PYTHON" -c 'import torch; print(torch.__version__)') (CUDA ${TORCH_CUDA:-none}); nvcc ${NVCC_CUDA}; $(${CXX:-c++} --version | head -1); archs ${TORCH_CUDA_ARCH_LIST}; MAX_JOBS=${MAX_JOBS}"
if [ -z "$TORCH_CUDA" ]; then
  echo "build_gsplat: torch is a CPU build; install the CUDA build whose version nvcc has (${NVCC_CUDA})" >&2; exit 2
fi
# torch.utils.cpp_extension refuses a different CUDA major version and only warns on a minor one.
if [ "${TORCH_CUDA%%.*}" != "${NVCC_CUDA%%.*}" ]; then
  echo "build_gsplat: torch is built for CUDA ${TORCH_CUDA} but nvcc is ${NVCC_CUDA}" >&2; exit 2
fi

mkdir -p "$WHEEL_DIR"
# --no-build-isolation: compile against the torch installed here (the one the image ships), not a
# fresh one pip would fetch. --no-binary: the index's gsplat wheel is pure Python (it would
# JIT-compile inside the GPU job, which is what failed before).
"$PYTHON" - "$WHEEL_DIR" "$GSPLAT_SOURCE" <<'EOF'
import resource, subprocess, sys, time
wheel_dir, source = sys.argv[1], sys.argv[2]
start = time.monotonic()
subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-build-isolation", "--no-deps",
                "--no-binary", "gsplat", source, "-w", wheel_dir], check=True)
seconds = time.monotonic() - start
# ru_maxrss of RUSAGE_CHILDREN: the largest single descendant process, in KiB on Linux.
peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
print(f"build_gsplat: compiled in {seconds:.0f} s; largest process peaked at {peak_gib:.2f} GiB")
EOF

WHEEL="$(ls -t "$WHEEL_DIR"/gsplat-"${GSPLAT_VERSION}"-*.whl | head -1)"
"$PYTHON" "$HERE/smoke.py" archs "$WHEEL"
echo "build_gsplat: $WHEEL ($(du -m "$WHEEL" | cut -f1) MB)"
