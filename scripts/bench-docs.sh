#!/usr/bin/env bash
# `make bench-docs`: documents per minute of the whole tool on the local backend (mistral.rs in
# this process) beside the same tool talking to llama.cpp's server (llama-cpp-python, -b openai)
# serving the same GGUF, on the same DOCS CNN/DM dev articles (default 40), with the same small
# prompts, preselection and guard, on the same thread count (BENCH_THREADS, default 2). Each
# engine runs RUNS times (default 1), alternating; the best run of each is compared. Prints
# docs/min, seconds per document, generated tokens/s and R1 for both, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
DATA="$SHARED/data/summarization/cnndm/dev.jsonl"
DOCS=${DOCS:-40}
RUNS=${RUNS:-1}
export BENCH_THREADS=${BENCH_THREADS:-2}
export RAYON_NUM_THREADS=$BENCH_THREADS
export LLAMA_N_THREADS=$BENCH_THREADS
PRESELECT=${PRESELECT:-120w}  # what `--preselect auto` gives the local backend at the default 80 words
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug/summarize}
PORT=${LLAMA_PORT:-$((20000 + RANDOM % 20000))}
log() { printf 'bench-docs: %s\n' "$*" >&2; }
if [ ! -f "$DATA" ]; then
  log "$DATA is absent (a clone outside the workplace)"
  exit 0
fi
[ -x "$BIN" ] || cargo build
MODEL=$(scripts/fetch-model.sh | tail -n 1)
scripts/llama-server.sh install
WORK=$(mktemp -d)
trap 'scripts/llama-server.sh stop "$PORT" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
head -n "$DOCS" "$DATA" > "$WORK/docs.jsonl"
url=$(scripts/llama-server.sh start "$PORT" "$MODEL" | tail -n 1)
common=(-q --no-cache --preselect "$PRESELECT" --prompt-style small --guard repair "$WORK/docs.jsonl")
for i in $(seq "$RUNS"); do
  log "run $i/$RUNS: local"
  HF_HOME=$WORK/hf "$BIN" -b local -m "$MODEL" "${common[@]}" -o "$WORK/local.$i.jsonl" \
    --stats "$WORK/local.$i.stats.json" || true
  log "run $i/$RUNS: llama.cpp server at $url"
  env -u OPENAI_API_KEY "$BIN" -b openai --base-url "$url" -m "$(basename "$MODEL")" "${common[@]}" \
    -o "$WORK/llama.$i.jsonl" --stats "$WORK/llama.$i.stats.json" || true
done
python3 - "$WORK" "$RUNS" "$DOCS" <<'PY'
import json, sys
work, runs, docs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def best(name):
    stats = [json.load(open(f"{work}/{name}.{i}.stats.json")) for i in range(1, runs + 1)]
    return max(stats, key=lambda s: s["docs_per_min"])
rows = {"local (mistral.rs, in-process)": best("local"), "llama.cpp server (-b openai)": best("llama")}
print(f"{'engine':<32} {'docs/min':>9} {'s/doc':>6} {'gen tok/s':>9} {'R1':>6} {'ok':>6} {'fallback':>8}")
for name, s in rows.items():
    r1 = s["rouge"].get("rouge1", {}).get("mean", 0) * 100
    fb = s.get("guard", {}).get("fallback", 0)
    tps = s.get("tokens_per_s") or 0
    print(f"{name:<32} {s['docs_per_min']:9.1f} {60 / max(s['docs_per_min'], 1e-9):6.2f} {tps:9.1f} "
          f"{r1:6.2f} {s['ok']:>3}/{s['inputs']:<2} {fb:>8}")
a, b = rows.values()
print(f"ratio local / llama.cpp server: {a['docs_per_min'] / max(b['docs_per_min'], 1e-9):.2f}x documents per minute "
      f"({docs} CNN/DM articles, best of {runs} run(s) each)")
PY
