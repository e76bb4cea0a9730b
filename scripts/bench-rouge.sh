#!/usr/bin/env bash
# `make bench-rouge`: times `summarize eval` scoring the 150 CNN/DM dev pairs against Google's
# rouge-score (Python) scoring the same pairs, checks both give the same means, and prints the
# speed ratio. rouge-score goes into a venv (ROUGE_VENV, default .venv-rouge) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
DATA="$SHARED/data/summarization/cnndm/dev.jsonl"
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/summarize}
VENV=${ROUGE_VENV:-.venv-rouge}
RUNS=${RUNS:-5}
if [ ! -f "$DATA" ]; then
  echo "bench-rouge: $DATA is absent (a clone outside the workplace)" >&2
  exit 0
fi
[ -x "$BIN" ] || cargo build --release
if ! "$VENV/bin/python" -c "import rouge_score" 2>/dev/null; then
  echo "bench-rouge: installing rouge-score into $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet rouge-score==0.1.2 >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BIN" -q "$DATA" -o "$work/report.jsonl" || true

"$VENV/bin/python" - "$DATA" "$work/report.jsonl" "$BIN" "$RUNS" "$work" <<'PY'
import json, subprocess, sys, time
from rouge_score import rouge_scorer
data, report, binary, runs, work = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ours_json = f"{work}/eval.json"
ours_s = None
for _ in range(runs):
    t = time.perf_counter()
    with open(f"{work}/scores.jsonl", "w") as sink:
        subprocess.run([binary, "eval", "--references", data, "--format", "json", "--stats", ours_json, report],
                       stdout=sink, stderr=subprocess.DEVNULL, check=True)
    dt = time.perf_counter() - t
    ours_s = dt if ours_s is None else min(ours_s, dt)
refs = {json.loads(l)["id"]: json.loads(l)["reference"] for l in open(data)}
recs = [json.loads(l) for l in open(report)]
# summarize eval scores the summary split one sentence per line; extractive summaries already are.
pairs = [(refs[r["id"]], r["summary"] or "") for r in recs]
scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
best = None
for _ in range(runs):
    t = time.perf_counter()
    scores = [scorer.score(ref, cand) for ref, cand in pairs]
    dt = time.perf_counter() - t
    best = dt if best is None else min(best, dt)
py_r1 = sum(s["rouge1"].fmeasure for s in scores) / len(scores)
ours = json.load(open(ours_json))
our_r1 = ours["metrics"]["rouge1"]["fmeasure"]["mean"]
print(f"pairs: {len(pairs)} (CNN/DM dev, extractive summaries), best of {runs} runs each")
print(f"python rouge-score 0.1.2 (scoring loop only, in-process): {best*1000:9.1f} ms   mean R1 {py_r1*100:.4f}")
print(f"summarize eval (whole process: start, read, score, write):  {ours_s*1000:9.1f} ms   mean R1 {our_r1*100:.4f}")
print(f"R1 agreement: {'identical' if abs(py_r1 - our_r1) < 1e-9 else 'DIFFERENT by %.2e' % abs(py_r1 - our_r1)}")
print(f"speed ratio summarize/rouge-score: {best / ours_s:.1f}x faster")
PY
