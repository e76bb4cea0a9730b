#!/usr/bin/env bash
# make bench-local: prefill and decode tokens/s of the local backend (mistral.rs, in-process)
# beside llama.cpp (llama-cpp-python 0.3.36) on the same GGUF, the same ~950-token prompt, the
# same thread count (BENCH_THREADS, default 2) and the same output length (64 tokens, greedy,
# no repetition penalty, so that both engines compute the same thing and the texts can agree).
# Each engine runs RUNS times (default 3) in fresh processes, alternating; the best run of each
# is compared. Prints a table and the ratios mistral.rs / llama.cpp, and the same build with
# the vendored CPU patches switched off (vendor/README.md) to show what they contribute.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
TOKENS=${TOKENS:-64}
export BENCH_THREADS=${BENCH_THREADS:-2}
export RAYON_NUM_THREADS=$BENCH_THREADS
VENV=${LLAMA_VENV:-.venv-llama}
log() { printf 'bench-local: %s\n' "$*" >&2; }

if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  log "installing llama-cpp-python into $VENV (about 4 minutes)"
  scripts/llama-server.sh install
fi
MODEL=$(scripts/fetch-model.sh | tail -n 1)
cargo build --quiet --example bench_local
BIN=${CARGO_TARGET_DIR:-target}/debug/examples/bench_local
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# mistral.rs must not find a Hugging Face cache or token: the run is offline.
export HF_HOME=$WORK/hf

"$VENV/bin/python" scripts/bench_local.py prompt "$MODEL" "$WORK" 2>/dev/null
log "prompt: $(wc -w < "$WORK/user.txt") words; $RUNS runs per engine, $BENCH_THREADS threads, $TOKENS new tokens"
for i in $(seq "$RUNS"); do
  "$VENV/bin/python" scripts/bench_local.py run "$MODEL" "$WORK" "$TOKENS" 1.0 >> "$WORK/llama.jsonl"
  "$BIN" "$MODEL" "$WORK/system.txt" "$WORK/user.txt" "$TOKENS" 1.0 >> "$WORK/mistral.jsonl"
  MISTRALRS_CPU_FAST_ATTN=0 MISTRALRS_CPU_QGEMV=0 \
    "$BIN" "$MODEL" "$WORK/system.txt" "$WORK/user.txt" "$TOKENS" 1.0 >> "$WORK/unpatched.jsonl"
done
python3 - "$WORK/llama.jsonl" "$WORK/mistral.jsonl" "$WORK/unpatched.jsonl" <<'PY'
import json, sys
def load(p): return [json.loads(l) for l in open(p) if l.strip()]
llama, mist, unpatched = (load(p) for p in sys.argv[1:4])
best = lambda rs, k: max(r[k] for r in rs)
print(f"{'engine':<22} {'prompt':>6} {'output':>6} {'prefill tok/s':>14} {'decode tok/s':>13}   runs (prefill/decode)")
for name, rs in (("llama.cpp", llama), ("mistral.rs (summarize)", mist), ("mistral.rs, patches off", unpatched)):
    runs = " ".join(f"{r['prefill_tok_s']:.0f}/{r['decode_tok_s']:.1f}" for r in rs)
    print(f"{name:<22} {rs[0]['prompt_tokens']:>6} {rs[0]['completion_tokens']:>6} "
          f"{best(rs, 'prefill_tok_s'):>14.1f} {best(rs, 'decode_tok_s'):>13.1f}   {runs}")
ratio = lambda a, b, k: best(a, k) / best(b, k)
print(f"ratio mistral.rs / llama.cpp: prefill {ratio(mist, llama, 'prefill_tok_s'):.2f}x, "
      f"decode {ratio(mist, llama, 'decode_tok_s'):.2f}x")
print(f"ratio patches on / off:      prefill {ratio(mist, unpatched, 'prefill_tok_s'):.2f}x, "
      f"decode {ratio(mist, unpatched, 'decode_tok_s'):.2f}x")
same = mist[0]["text"] == llama[0]["text"]
print(f"same text as llama.cpp: {'yes' if same else 'no'}; "
      f"patches on and off: {'same' if mist[0]['text'] == unpatched[0]['text'] else 'different'}")
if not same:
    print("  llama.cpp:  " + json.dumps(llama[0]["text"])[:300])
    print("  mistral.rs: " + json.dumps(mist[0]["text"])[:300])
PY
