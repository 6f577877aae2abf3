#!/usr/bin/env bash
# Build OpenSplat's CPU trainer from ../shared/peers/opensplat with the recipe measured in
# ../shared/peers/README.md (Debian headers stand in for its FetchContent downloads).
#   bench/opensplat_build.sh BUILD_DIR      -> BUILD_DIR/build/opensplat (skipped when it exists)
# Needs: apt-get, cmake, g++, and the venv's torch (its CMake package is what OpenSplat links; $PYTHON, default python3).
set -euo pipefail
W=${1:?usage: bench/opensplat_build.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
PEER=${OPENSPLAT_SRC:-$HERE/../../shared/peers/opensplat}
[ -d "$PEER" ] || PEER=/work/shared/peers/opensplat
if [ -x "$W/build/opensplat" ]; then echo "$W/build/opensplat"; exit 0; fi
if ! dpkg -s libopencv-dev nlohmann-json3-dev libnanoflann-dev libcxxopts-dev >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libopencv-dev nlohmann-json3-dev libnanoflann-dev libcxxopts-dev cmake g++ >/dev/null
fi
mkdir -p "$W"
for n in nlohmann_json cxxopts nanoflann; do
  mkdir -p "$W/deps/$n"
  printf 'cmake_minimum_required(VERSION 3.10)\nproject(%s_shim LANGUAGES CXX)\nadd_library(%s INTERFACE)\nadd_library(%s::%s ALIAS %s)\n' \
    $n $n $n $n $n > "$W/deps/$n/CMakeLists.txt"
done
TORCH_DIR=$("${PYTHON:-python3}" -c "import torch,os; print(os.path.join(os.path.dirname(torch.__file__),'share','cmake','Torch'))")
rm -rf "$W/src" && cp -r "$PEER" "$W/src"   # it writes into its tree
cmake -S "$W/src" -B "$W/build" -DCMAKE_BUILD_TYPE=Release -DGPU_RUNTIME=CPU -DTorch_DIR="$TORCH_DIR" \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON -DFETCHCONTENT_SOURCE_DIR_NLOHMANN_JSON="$W/deps/nlohmann_json" \
  -DFETCHCONTENT_SOURCE_DIR_NANOFLANN="$W/deps/nanoflann" -DFETCHCONTENT_SOURCE_DIR_CXXOPTS="$W/deps/cxxopts" >/dev/null
nice cmake --build "$W/build" -j2 --target opensplat >/dev/null
LD_LIBRARY_PATH="$(dirname "$TORCH_DIR")/../../lib" "$W/build/opensplat" --help | head -1 >&2
echo "$W/build/opensplat"
