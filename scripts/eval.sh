#!/usr/bin/env bash
# `make eval`: runs one backend over the CNN/DM and QMSum dev sets and prints ROUGE (rouge-score
# compatible, stemmed, summaries split one sentence per line as in the baselines), the
# faithfulness figures (unsupported numbers as a share of all numbers written, echoed labels,
# fence markers and prompt text, summaries ending mid-sentence, length within 0.5-1.5x), the
# guard's outcomes (fallbacks, and ROUGE of the summaries the model wrote itself) and speed
# (seconds per document, documents per minute, generated tokens/s), beside the baseline rows
# of the data's README and the targets of issue 9.
#
# BACKEND=extractive (default) | local | openai | ollama; extra flags in SUMMARIZE_ARGS;
# SETS="cnndm qmsum" (default both); LIMIT=N runs only the first N documents of each set.
# Reads ../shared in place. Uses the development build (dependencies optimised), as `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-extractive}
SHARED=${SHARED:-../shared}
DATA="$SHARED/data/summarization"
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug/summarize}
SETS=${SETS:-cnndm qmsum}
LIMIT=${LIMIT:-}
if [ ! -d "$DATA" ]; then
  echo "eval: $DATA is absent (a clone outside the workplace); nothing to evaluate" >&2
  exit 0
fi
[ -x "$BIN" ] || cargo build
out=${EVAL_OUT:-$(mktemp -d)}
mkdir -p "$out"
[ -n "${EVAL_OUT:-}" ] || trap 'rm -rf "$out"' EXIT
for set in $SETS; do
  input="$DATA/$set/dev.jsonl"
  if [ -n "$LIMIT" ]; then
    head -n "$LIMIT" "$input" > "$out/$set.input.jsonl"
    input="$out/$set.input.jsonl"
  fi
  echo "eval: $BACKEND on $set ($(wc -l < "$input") documents) ..." >&2
  # shellcheck disable=SC2086
  "$BIN" -b "$BACKEND" -q --no-cache ${SUMMARIZE_ARGS:-} "$input" \
    -o "$out/$set.jsonl" --stats "$out/$set.stats.json" || true
  "$BIN" eval --split-summaries --references "$input" --format json --stats "$out/$set.eval.json" \
    "$out/$set.jsonl" > /dev/null 2>&1
done
python3 - "$out" "$DATA/README.md" "$BACKEND" "$SETS" <<'PY'
import json, re, sys
out, readme, backend, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
baselines = {}
for line in open(readme, encoding="utf-8"):
    m = re.match(r"\|\s*(cnndm|qmsum)\s*\|\s*([^|]+?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
    if m and (m.group(2).startswith("Lead-3") or m.group(2).startswith("TextRank")):
        baselines.setdefault(m.group(1), []).append((m.group(2), [float(x) for x in m.group(3, 4, 5, 6)]))

LABEL = re.compile(r"^\s*[*#_-]*\s*(title|summary|document|article|text|tl;?dr|answer|output)\s*[*_]*\s*:", re.I | re.M)
MARKER = re.compile(r"<<<|>>>|DOCUMENT\s+[0-9a-fA-F]{6,}")
PROMPT = re.compile(r"material to summarize|never an instruction|follow only the instructions|"
                    r"careful summarizer|summarize the (text|document) (above|below)|no preamble", re.I)
TERMINAL = re.compile(r"[.!?…][\"'”’)\]]*$")

def mid_sentence(summary):
    last = summary.strip().splitlines()[-1] if summary.strip() else ""
    return bool(last) and not last.lstrip().startswith(("-", "*", "•")) and not TERMINAL.search(last.strip())

def check(ok, text):
    return f"{text} {'ok' if ok else 'MISSED'}"

print(f"{'set':<6} {'system':<34} {'R1':>6} {'R2':>6} {'RL':>6} {'RLsum':>6} {'ok':>7}")
for s in sets:
    ev = json.load(open(f"{out}/{s}.eval.json"))
    st = json.load(open(f"{out}/{s}.stats.json"))
    recs = [json.loads(l) for l in open(f"{out}/{s}.jsonl") if l.strip()]
    m = ev["metrics"]
    r = [m[k]["fmeasure"]["mean"] * 100 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")]
    print(f"{s:<6} {'summarize/' + backend:<34} {r[0]:6.2f} {r[1]:6.2f} {r[2]:6.2f} {r[3]:6.2f} {st['ok']:>3}/{st['inputs']:<3}")
    for name, vals in baselines.get(s, []):
        print(f"{s:<6} {name + ' (README)':<34} " + " ".join(f"{v:6.2f}" for v in vals))
    ci = m["rouge1"]["fmeasure"]
    print(f"  R1 95% CI [{ci['ci95_low']*100:.2f}, {ci['ci95_high']*100:.2f}]")
    ok = [x for x in recs if x.get("status") == "ok"]
    summaries = [x.get("summary") or "" for x in ok]
    q = st.get("quality") or {}
    n = max(len(ok), 1)
    numbers, unsup = q.get("numbers", 0), q.get("unsupported_numbers", 0)
    labels = sum(bool(LABEL.search(x)) for x in summaries)
    markers = sum(bool(MARKER.search(x)) for x in summaries)
    prompts = sum(bool(PROMPT.search(x)) for x in summaries)
    mids = sum(mid_sentence(x) for x in summaries)
    length_ok = sum(bool(x.get("length_ok")) for x in ok)
    words = sum(x.get("summary_words", 0) for x in ok) / n
    print(f"  unsupported numbers: {unsup} of {numbers} numbers in summaries "
          f"({100 * unsup / max(numbers, 1):.1f}%; in {q.get('unsupported_number_rate', 0) * 100:.0f}% of summaries)")
    print(f"  echoes in final summaries: {labels} label lines, {markers} fence markers, {prompts} prompt text; "
          f"{st.get('echo_stripped', 0)} lines stripped from model replies")
    print(f"  ending mid-sentence: {mids}; truncated (unfinished sentence dropped): {st.get('truncated', 0)}; "
          f"length within 0.5-1.5x: {length_ok}/{len(ok)} ({100 * length_ok / n:.0f}%), mean {words:.0f} words")
    guard = st.get("guard") or {}
    if guard:
        fallback = guard.get("fallback", 0)
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((st.get("guard_reasons") or {}).items()))
        print(f"  guard: " + ", ".join(f"{k} {guard[k]}" for k in ("passed", "repaired", "fallback", "flagged") if k in guard)
              + f" ({100 * fallback / n:.0f}% fallbacks); findings: {reasons or 'none'}")
        model_written = [x for x in ok if x.get("guard") != "fallback" and x.get("rouge1") is not None]
        if model_written:
            r1 = sum(x["rouge1"] for x in model_written) / len(model_written) * 100
            print(f"  R1 of the {len(model_written)} summaries the model wrote (no fallback): {r1:.2f}")
    pre = [x["preselected_words"] for x in ok if x.get("preselected_words")]
    if pre:
        print(f"  preselected: {len(pre)} documents, mean {sum(pre) / len(pre):.0f} words shown to the model")
    lat = st["latency"]
    per_doc = st["elapsed_s"] / max(st["inputs"], 1)
    summ = lat.get("summarize", {})
    queue = lat.get("queue", {})
    tps = st.get("tokens_per_s")
    print(f"  speed: {per_doc:.2f} s/document ({st['docs_per_min']:.1f} docs/min); summarize p50 {summ.get('p50_ms', 0):.0f} ms, "
          f"p90 {summ.get('p90_ms', 0):.0f} ms; queue p50 {queue.get('p50_ms', 0):.0f} ms; "
          f"{'-' if tps is None else f'{tps:.1f}'} generated tokens/s")
    if s == "cnndm" and backend == "local":
        fb = guard.get("fallback", 0) / n
        print("  issue 9 targets: " + "; ".join([
            check(r[0] >= 40.4, f"R1 {r[0]:.2f} >= 40.4"),
            check(r[3] >= 36.6, f"RLsum {r[3]:.2f} >= 36.6"),
            check(unsup <= 0.02 * max(numbers, 1), f"unsupported {100 * unsup / max(numbers, 1):.1f}% <= 2%"),
            check(labels + markers + prompts == 0, "no echoes"),
            check(mids == 0, "no mid-sentence ends"),
            check(length_ok >= 0.9 * len(ok), f"length ok {100 * length_ok / n:.0f}% >= 90%"),
            check(fb <= 0.25, f"fallbacks {100 * fb:.0f}% <= 25%"),
            check(per_doc <= 2.5, f"{per_doc:.2f} s/doc <= 2.5"),
        ]))
    if s == "qmsum" and backend == "local":
        print("  issue 9 target: " + check(r[0] >= 21.7, f"R1 {r[0]:.2f} >= 21.7 (TextRank)"))
PY
