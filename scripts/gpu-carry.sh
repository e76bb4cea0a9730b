#!/usr/bin/env bash
# Lays out what a lent GPU machine needs for `scripts/bench-gpu.sh`, in parts that each fit one
# device call (the working tree and carried paths travel within 64 MiB a call; the model alone
# is 98 MB). Run `make build-cuda` first.
#
#   scripts/gpu-carry.sh           # or: make gpu-carry
#
# It writes gpu-carry/1, gpu-carry/2, ... (ignored by git) and prints the device calls to make,
# one right after another (a machine stays warm 30 s after a call, and files outside the working
# tree, in /tmp, stay with it): each but the last stages its part in /tmp/gpu-stage; the last
# runs the check and the benchmark with everything staged. The articles are BENCH_DOCS CNN/DM
# dev articles (default 200) read from ../shared (which does not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CUDA_TARGET_DIR:-target-cuda}
SHARED=${SHARED:-../shared}
DOCS=${BENCH_DOCS:-200}
MODEL=${SUMMARIZE_MODEL:-${XDG_DATA_HOME:-$HOME/.local/share}/summarize/models/SmolLM2-135M-Instruct.Q4_1.gguf}
PART_BYTES=${PART_BYTES:-$((44 * 1024 * 1024))}

[ -f "$TARGET/summarize-cuda.tar.zst" ] || { echo "gpu-carry: no $TARGET/summarize-cuda.tar.zst: run make build-cuda first" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "gpu-carry: no model at $MODEL: run make model first" >&2; exit 2; }
DATA="$SHARED/data/summarization/cnndm/dev.jsonl"
[ -f "$DATA" ] || { echo "gpu-carry: no $DATA (the CNN/DM dev set in ../shared)" >&2; exit 2; }

rm -rf gpu-carry && mkdir -p gpu-carry/stage
# One stream of files, cut into parts: the binary, the articles, the model.
cp "$TARGET/summarize-cuda.tar.zst" gpu-carry/stage/
head -n "$DOCS" "$DATA" > gpu-carry/stage/articles.jsonl
cp "$MODEL" gpu-carry/stage/model.gguf
(cd gpu-carry/stage && sha256sum summarize-cuda.tar.zst articles.jsonl model.gguf > SHA256SUMS)
tar -C gpu-carry/stage -cf - SHA256SUMS summarize-cuda.tar.zst articles.jsonl model.gguf \
  | split -b "$PART_BYTES" -d -a 2 - gpu-carry/payload.
rm -rf gpu-carry/stage
n=0
for part in gpu-carry/payload.*; do
  n=$((n + 1))
  mkdir -p "gpu-carry/$n"
  mv "$part" "gpu-carry/$n/"
done
tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "gpu-carry: $n parts of at most $((PART_BYTES / 1048576)) MiB in gpu-carry/ (the working tree adds $((tracked / 1048576)) MiB a call)"
echo "device calls, one right after another (each within 30 s of the last):"
for i in $(seq 1 $((n - 1))); do
  echo "  run carry=[\"gpu-carry/$i\"] command='mkdir -p /tmp/gpu-stage && cp gpu-carry/$i/* /tmp/gpu-stage/ && ls -la /tmp/gpu-stage' timeout_s=120"
done
echo "  run carry=[\"gpu-carry/$n\"] command='cp gpu-carry/$n/* /tmp/gpu-stage/ && scripts/bench-gpu.sh /tmp/gpu-stage' timeout_s=540"
