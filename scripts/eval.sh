#!/usr/bin/env bash
# `make eval`: runs one backend over the CNN/DM and QMSum dev sets and prints ROUGE (rouge-score
# compatible, stemmed), the unsupported-number rate and mean latency beside the baseline rows
# of the data's README. BACKEND=extractive (default) | local | openai | ollama; extra flags for
# the run go in SUMMARIZE_ARGS. Reads ../shared in place.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-extractive}
SHARED=${SHARED:-../shared}
DATA="$SHARED/data/summarization"
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/summarize}
if [ ! -d "$DATA" ]; then
  echo "eval: $DATA is absent (a clone outside the workplace); nothing to evaluate" >&2
  exit 0
fi
[ -x "$BIN" ] || cargo build --release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for set in cnndm qmsum; do
  echo "eval: $BACKEND on $set ..." >&2
  # shellcheck disable=SC2086
  "$BIN" -b "$BACKEND" -q ${SUMMARIZE_ARGS:-} "$DATA/$set/dev.jsonl" \
    -o "$out/$set.jsonl" --stats "$out/$set.stats.json" || true
  "$BIN" eval --references "$DATA/$set/dev.jsonl" --format json --stats "$out/$set.eval.json" \
    "$out/$set.jsonl" > /dev/null 2>&1
done
python3 - "$out" "$DATA/README.md" "$BACKEND" <<'PY'
import json, re, sys
out, readme, backend = sys.argv[1:4]
baselines = {}
for line in open(readme, encoding="utf-8"):
    m = re.match(r"\|\s*(cnndm|qmsum)\s*\|\s*([^|]+?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
    if m and (m.group(2).startswith("Lead-3") or m.group(2).startswith("TextRank")):
        baselines.setdefault(m.group(1), []).append((m.group(2), [float(x) for x in m.group(3, 4, 5, 6)]))
print(f"{'set':<6} {'system':<32} {'R1':>6} {'R2':>6} {'RL':>6} {'RLsum':>6} {'unsup.num':>9} {'lat. ms':>8} {'ok':>7}")
for s in ("cnndm", "qmsum"):
    ev = json.load(open(f"{out}/{s}.eval.json"))
    st = json.load(open(f"{out}/{s}.stats.json"))
    m = ev["metrics"]
    r = [m[k]["fmeasure"]["mean"] * 100 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")]
    q = st.get("quality") or {}
    unsup = q.get("unsupported_number_rate")
    lat = st["latency"].get("total", {}).get("mean_ms")
    print(f"{s:<6} {'summarize/' + backend:<32} {r[0]:6.2f} {r[1]:6.2f} {r[2]:6.2f} {r[3]:6.2f} "
          f"{'-' if unsup is None else f'{unsup*100:8.1f}%':>9} {'-' if lat is None else f'{lat:8.0f}':>8} {st['ok']:>3}/{st['inputs']:<3}")
    for name, vals in baselines.get(s, []):
        print(f"{s:<6} {name + ' (README)':<32} " + " ".join(f"{v:6.2f}" for v in vals) + f" {'-':>9} {'-':>8}")
PY
