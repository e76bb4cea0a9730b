#!/usr/bin/env bash
# Build `summarize --features cuda` with NVIDIA's own CUDA 13.0 toolkit from PyPI (Debian has
# none), into its own target directory, so the CPU build is untouched.
#
#   scripts/build-cuda.sh            # or: make build-cuda
#
# The CUDA version is pinned to what the lent GPU machines' driver runs (driver 580 = CUDA 13.0,
# see the device tool's KINDS.md): PTX that candle JIT-compiles at load time must not be newer
# than the driver, and the kernels that are compiled ahead (mistralrs-quant, paged attention,
# candle's MoE library) carry real sm_90 machine code (H100/H200), not only PTX.
#
# Environment: CUDA_COMPUTE_CAP (default 90), CUDA_TARGET_DIR (default target-cuda),
# CUDA_VENV (default .venv-cuda), CARGO_BUILD_JOBS as usual.
# Output: $CUDA_TARGET_DIR/release/summarize, and $CUDA_TARGET_DIR/summarize-cuda.tar.zst
# (binary only, for carrying to a GPU machine: scripts/gpu-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

CAP=${CUDA_COMPUTE_CAP:-90}
TARGET=${CUDA_TARGET_DIR:-target-cuda}
VENV=${CUDA_VENV:-.venv-cuda}

# NVIDIA's wheels for CUDA 13.0 (nvcc 13.0.88). The libraries are only linked against here; the
# GPU machine brings its own copies of the same major version.
PINS=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
)
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx 'nvidia-cuda-nvcc==13.0.88'; then
  echo "build-cuda: installing CUDA 13.0 from PyPI into $VENV" >&2
  "$VENV/bin/pip" install -q "${PINS[@]}"
fi
CU=$(cd "$VENV"/lib/python3*/site-packages/nvidia/cu13 && pwd)

# A CUDA_ROOT laid out the way build scripts expect: bin/, include/, nvvm/ from the wheels, and
# lib64/ with the unversioned names the linker asks for (-lcudart -lcublas ...). The wheels ship
# no libcuda.so (it belongs to the driver), so a stub is built from cuda.h's declarations, with
# the driver's soname: at run time the real libcuda.so.1 is loaded, as with NVIDIA's own stubs.
ROOT=$(mkdir -p "$TARGET/toolkit" && cd "$TARGET/toolkit" && pwd)
for d in bin include nvvm; do ln -sfn "$CU/$d" "$ROOT/$d"; done
mkdir -p "$ROOT/lib64"
for l in cudart cublas cublasLt curand nvrtc; do
  ln -sfn "$(ls "$CU"/lib/lib$l.so.* | head -1)" "$ROOT/lib64/lib$l.so"
done
if [ ! -e "$ROOT/lib64/libcuda.so" ]; then
  gcc -E -P -I"$CU/include" -x c "$CU/include/cuda.h" \
    | grep -oE '^(extern )?CUresult +(__attribute__\(\(visibility\("default"\)\)\) +)?[A-Za-z0-9_]+ *\(' \
    | grep -oE 'cu[A-Za-z0-9_]+ *\($' | tr -d ' (' | sort -u \
    | awk '{print "void " $1 "(void) {}"}' > "$ROOT/libcuda-stub.c"
  # cuGetErrorString & co. return CUresult too; anything cuda.h declares with another return
  # type would be missing here and shows up as an undefined symbol at link time.
  test "$(wc -l < "$ROOT/libcuda-stub.c")" -gt 300
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib64/libcuda.so" "$ROOT/libcuda-stub.c"
fi

export CUDA_ROOT="$ROOT" CUDA_PATH="$ROOT" CUDA_HOME="$ROOT" CUDA_TOOLKIT_ROOT_DIR="$ROOT"
export PATH="$ROOT/bin:$PATH" CUDA_COMPUTE_CAP="$CAP" CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$ROOT/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
nvcc --version | tail -2 >&2

start=$(date +%s)
cargo build --release --locked --features cuda --target-dir "$TARGET" --bin summarize
secs=$(( $(date +%s) - start ))
BIN="$TARGET/release/summarize"
tar -C "$TARGET/release" -cf - summarize | zstd -q -19 -T0 -f -o "$TARGET/summarize-cuda.tar.zst"
printf 'build-cuda: %s (%s MB, %s MB compressed) in %dm%02ds; sm_%s\n' "$BIN" \
  "$(( $(stat -c %s "$BIN") / 1000000 ))" \
  "$(( $(stat -c %s "$TARGET/summarize-cuda.tar.zst") / 1000000 ))" $((secs / 60)) $((secs % 60)) "$CAP"
if command -v "$ROOT/bin/cuobjdump" >/dev/null 2>&1; then
  "$ROOT/bin/cuobjdump" --list-elf "$BIN" | sed -n '1,5p'
fi
