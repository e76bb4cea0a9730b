#!/usr/bin/env bash
# Issue 14, run ON a lent GPU machine (no Rust, no network there): the CUDA build of summarize
# on the GPU, checked and measured in one go. `make gpu-carry` lays out what it needs and prints
# the device calls; the last of them runs this script as
#
#   scripts/bench-gpu.sh /tmp/gpu-stage
#
# with the staged payload parts (payload.NN: the CUDA binary, BENCH_DOCS CNN/DM dev articles and
# the GGUF model, checksummed). It prints, and writes to $OUT/bench-gpu.txt where $OUT is set:
#  1. the GPU, the driver, which CUDA libraries the binary loads;
#  2. sanity: `--device cuda` over samples/ twice: every record ok, the faithfulness guard's
#     verdicts, and whether both runs wrote the same summaries (GPU numerics differ from the
#     CPU's, so no comparison with the CPU is made);
#  3. batching: docs/min and generated tokens/s for -j 1, 8, 32, 128 over the articles on the
#     GPU, and the same binary with --device cpu on this machine's cores (-j 1, fewer articles)
#     as the baseline, with ratios.
set -uo pipefail
STAGE=${1:?usage: scripts/bench-gpu.sh STAGE_DIR}
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-/tmp/bench-gpu-out}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/bench-gpu.txt"
exec > >(tee "$LOG") 2>&1
say() { printf 'bench-gpu: %s\n' "$*"; }
JOBS=${BENCH_JOBS:-1 8 32 128}
# A rehearsal on a machine without a GPU: BENCH_DEVICE=cpu BENCH_BIN=target/release/summarize.
DEVICE=${BENCH_DEVICE:-cuda}
CPU_DOCS=${BENCH_CPU_DOCS:-20}

WORK=/tmp/bench-gpu
rm -rf "$WORK" && mkdir -p "$WORK"
cat "$STAGE"/payload.* | tar -C "$WORK" -xf - || { say "the staged parts do not make a whole payload: $(ls "$STAGE")"; exit 2; }
(cd "$WORK" && sha256sum -c --quiet SHA256SUMS) || { say "checksums differ: a part is missing or damaged"; exit 2; }
zstd -dq "$WORK/summarize-cuda.tar.zst" -c | tar -C "$WORK" -xf -
BIN=${BENCH_BIN:-$WORK/summarize}
MODEL="$WORK/model.gguf"
ARTICLES="$WORK/articles.jsonl"

# NVIDIA's runtime libraries from the machine's Python environment (wheels' nvidia/*/lib).
PY=$(command -v python3)
LIBS=$("$PY" - <<'PYEOF'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = set()
for r in roots:
    for pat in ("nvidia/*/lib", "nvidia/cu13/lib", "nvidia/*/lib64"):
        for d in glob.glob(os.path.join(r, pat)):
            dirs.add(d)
print(":".join(sorted(dirs)))
PYEOF
)
export LD_LIBRARY_PATH="${LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/nvidia/lib64:/usr/local/nvidia/lib"
export HF_HOME="$WORK/hf" HOME="$WORK/home" XDG_CACHE_HOME="$WORK/cache"
mkdir -p "$HOME"

say "1. machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || say "nvidia-smi failed"
nvcc --version 2>/dev/null | tail -1
missing=$(ldd "$BIN" | grep "not found")
ldd "$BIN" | grep -E "cuda|cublas|curand|nvrtc" | sed 's/^/  /'
if [ -n "$missing" ]; then
  say "libraries not found:"; echo "$missing"; exit 3
fi
"$BIN" --version

say "2. sanity: --device $DEVICE over the sample documents, twice"
for run in 1 2; do
  "$BIN" samples/article.html samples/changelog-excerpt.md samples/field-guide.md --device "$DEVICE" -m "$MODEL" --no-cache -j 4 -o "$WORK/samples-$run.jsonl" --stats "$WORK/samples-$run.stats.json" 2> "$WORK/samples-$run.err"
  echo "  run $run: exit $? ($(tail -n 1 "$WORK/samples-$run.err"))"
done
python3 - "$WORK/samples-1.jsonl" "$WORK/samples-2.jsonl" <<'PYEOF'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
for r in a:
    print(f"  {r['id'][-40:]:<40} {r['status']:<5} guard={r.get('guard')} words={r.get('summary_words')}: {(r.get('summary') or r.get('error') or '')[:110]!r}")
ok = sum(r["status"] == "ok" for r in a)
same = sum(x.get("summary") == y.get("summary") for x, y in zip(a, b))
guards = {}
for r in a:
    guards[r.get("guard")] = guards.get(r.get("guard"), 0) + 1
print(f"sanity: {ok}/{len(a)} ok; guard {guards}; identical summaries in both runs: {same}/{len(a)}")
PYEOF

say "3. batching: ${JOBS// /, } documents at once over $(wc -l < "$ARTICLES") CNN/DM dev articles"
bench() { # name device jobs inputs
  local name=$1 device=$2 jobs=$3 inputs=$4
  "$BIN" "$inputs" --device "$device" -m "$MODEL" --no-cache -j "$jobs" -q \
    -o "$WORK/$name.jsonl" --stats "$WORK/$name.stats.json" 2> "$WORK/$name.err" || true
  python3 - "$name" "$WORK/$name.stats.json" "$WORK/$name.jsonl" <<'PYEOF'
import json, sys
name, stats, report = sys.argv[1:4]
try:
    s = json.load(open(stats))
except Exception as e:
    print(f"{name:<12} no stats ({e})"); sys.exit()
recs = [json.loads(l) for l in open(report)]
gen = sum(r.get("tokens_out") or 0 for r in recs)
secs = s["elapsed_s"]
print(f"{name:<12} {s['ok']:>4} ok {s['error']:>3} err  {s['docs_per_min']:9.1f} docs/min  {gen / secs if secs else 0:9.1f} generated tok/s  ({gen} tokens in {secs:.1f} s)")
json.dump({"name": name, "docs_per_min": s["docs_per_min"], "gen_tok_s": gen / secs if secs else 0}, open(stats + ".row", "w"))
PYEOF
}
head -n "$CPU_DOCS" "$ARTICLES" > "$WORK/cpu-articles.jsonl"
bench "cpu-j1" cpu 1 "$WORK/cpu-articles.jsonl"
for j in $JOBS; do
  bench "$DEVICE-j$j" "$DEVICE" "$j" "$ARTICLES"
done
python3 - "$WORK" "$DEVICE" $JOBS <<'PYEOF'
import json, sys, os
work, device, jobs = sys.argv[1], sys.argv[2], sys.argv[3:]
row = lambda n: json.load(open(os.path.join(work, n + ".stats.json.row")))
try:
    base = row("cpu-j1")
except Exception:
    base = None
for j in jobs:
    try:
        r = row(f"{device}-j{j}")
    except Exception:
        continue
    if base and base["docs_per_min"]:
        print(f"ratio {device} -j {j} / cpu -j 1: docs/min {r['docs_per_min'] / base['docs_per_min']:.1f}x, generated tok/s {r['gen_tok_s'] / max(base['gen_tok_s'], 1e-9):.1f}x")
PYEOF
say "done; log in $LOG"
