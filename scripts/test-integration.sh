#!/usr/bin/env bash
# `make test-integration`: the tool against a real OpenAI-compatible server: llama.cpp's server
# (PyPI llama-cpp-python[server]) serving SmolLM2-135M-Instruct on 127.0.0.1. Installs the
# server into a venv and fetches the model when missing, starts the server, runs
# tests/llama_server.rs against it, and stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${LLAMA_PORT:-$((20000 + RANDOM % 20000))}
PORT2=$((PORT + 1))
model=$(scripts/fetch-model.sh | tail -n 1)
scripts/llama-server.sh install
trap 'scripts/llama-server.sh stop "$PORT" >/dev/null 2>&1 || true; scripts/llama-server.sh stop "$PORT2" >/dev/null 2>&1 || true' EXIT
url=$(scripts/llama-server.sh start "$PORT" "$model" | tail -n 1)
echo "test-integration: llama.cpp server at $url" >&2
# A second server of the same model: a replica, which one test kills with SIGKILL mid-run.
url2=$(scripts/llama-server.sh start "$PORT2" "$model" | tail -n 1)
echo "test-integration: replica at $url2" >&2
SUMMARIZE_LLAMA_URL="$url" SUMMARIZE_LLAMA_URL2="$url2" \
  SUMMARIZE_LLAMA_PID2="${TMPDIR:-/tmp}/summarize-llama-$PORT2.pid" \
  cargo test --test llama_server -- --test-threads 1
