#!/usr/bin/env bash
# Build llama.cpp's llama-bench and llama-perplexity for the CPU from the
# llama.cpp source vendored in the llama-cpp-python sdist, the same llama.cpp
# that the parity tests use as their oracle.
#
# Usage: scripts/build_llama_tools.sh [BUILD_ROOT]
# BUILD_ROOT defaults to /tmp/llama-tools. The binaries end up in
# BUILD_ROOT/build/bin/. Nothing is written inside the repository.
# Environment: LLAMA_CPP_PYTHON_VERSION (default 0.3.36), JOBS (default 2),
# GGML_NATIVE (default ON) and EXTRA_CMAKE_ARGS, added to the configure step.
# On a VM whose CPU lists AMX but faults on ggml's AMX kernels (llama-bench
# dies with SIGILL in tinygemm_kernel_amx), build without AMX:
#   GGML_NATIVE=OFF EXTRA_CMAKE_ARGS="-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON
#   -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON"
#   scripts/build_llama_tools.sh /tmp/llama-noamx
set -euo pipefail

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
JOBS=${JOBS:-2}
ROOT=${1:-/tmp/llama-tools}
SDIST_DIR="$ROOT/sdist"
SRC="$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp"
BUILD="$ROOT/build"

mkdir -p "$SDIST_DIR"
if [ ! -f "$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz" ]; then
    # --no-binary names the one package: with :all:, pip would also build every
    # build dependency (setuptools, scikit-build-core...) from source to read
    # the sdist's metadata, which takes long and needs more of PyPI.
    python3 -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
fi
if [ ! -d "$SRC" ]; then
    tar -xzf "$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz" -C "$ROOT"
fi

# llama.cpp needs CMake 3.14 or later. Without one on PATH, install CMake from
# PyPI into a virtual environment under BUILD_ROOT.
if ! command -v cmake >/dev/null; then
    if [ ! -x "$ROOT/venv/bin/cmake" ]; then
        python3 -m venv "$ROOT/venv"
        "$ROOT/venv/bin/pip" install -q cmake
    fi
    export PATH="$ROOT/venv/bin:$PATH"
fi
cmake --version | head -n 1

# GGML_NATIVE builds for this CPU, so the binaries are not portable; CURL is off
# because the tools only read local model files.
cmake -S "$SRC" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF \
    -DGGML_NATIVE="${GGML_NATIVE:-ON}" \
    -DLLAMA_CURL=OFF \
    ${EXTRA_CMAKE_ARGS:-}
cmake --build "$BUILD" --target llama-bench llama-perplexity -j "$JOBS"

echo "built: $BUILD/bin/llama-bench $BUILD/bin/llama-perplexity"
