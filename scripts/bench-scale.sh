#!/usr/bin/env bash
# Issue 10's scale benchmark: peak RSS and documents/s for SCALE_SIZES URLs (default 10k, 100k,
# 1M) against a loopback site with the extractive backend, and docs/s against an
# OpenAI-compatible server answering after a fixed latency, as a share of the ideal
# `jobs / latency`. Ratios are against runs in this same script (the 100k RSS, the ideal rate,
# and BASE_BIN, an older summarize binary, when given), never against stored times.
#
#   make bench-scale                       # 10k, 100k, 1M (about 20 minutes on 2 cores)
#   SCALE_SIZES="10000 100000" make bench-scale
#   BASE_BIN=/path/to/old/summarize make bench-scale
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SCALE_SIZES:-"10000 100000 1000000"}
JOBS=${SCALE_JOBS:-64}
CHAT_JOBS=${SCALE_CHAT_JOBS:-256}
CHAT_DOCS=${SCALE_CHAT_DOCS:-10240}
LATENCY_MS=${SCALE_LATENCY_MS:-200}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

# A lean release build: the engine plays no part here.
cargo build --quiet --release --no-default-features --bin summarize --example loopback_site
BIN=$TARGET_DIR/release/summarize
SITE_BIN=$TARGET_DIR/release/examples/loopback_site

work=$(mktemp -d)
site_pid=""
cleanup() {
    [ -n "$site_pid" ] && kill "$site_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$SITE_BIN" --chat-latency-ms "$LATENCY_MS" >"$work/addr" &
site_pid=$!
for _ in $(seq 50); do [ -s "$work/addr" ] && break; sleep 0.1; done
site=$(head -1 "$work/addr")
echo "bench-scale: loopback site $site, -j $JOBS, $(nproc) cores"

# One run: prints "RSS_KB SECONDS" and checks that every input has its record.
run() {
    local bin=$1 list=$2 n=$3
    shift 3
    /usr/bin/time -f "%M %e" -o "$work/time" "$bin" "$list" --no-cache -q -o "$work/out.jsonl" "$@" \
        || { echo "bench-scale: $bin exited $? on $list" >&2; exit 1; }
    local lines
    lines=$(wc -l <"$work/out.jsonl")
    [ "$lines" -eq "$n" ] || { echo "bench-scale: $lines records for $n inputs" >&2; exit 1; }
    cat "$work/time"
}

declare -A rss
for n in $SIZES; do
    seq 0 $((n - 1)) | sed "s|^|$site/doc/|" >"$work/urls.txt"
    read -r kb s < <(run "$BIN" "$work/urls.txt" "$n" -b extractive -j "$JOBS" --per-host "$JOBS")
    rss[$n]=$kb
    line=$(awk -v n="$n" -v kb="$kb" -v s="$s" 'BEGIN { printf "%9d inputs: peak RSS %6.1f MB, %7.0f docs/s (%.1f s)", n, kb / 1024, n / s, s }')
    if [ -n "${BASE_BIN:-}" ]; then
        read -r bkb bs < <(run "$BASE_BIN" "$work/urls.txt" "$n" -b extractive -j "$JOBS" --per-host "$JOBS")
        line+=$(awk -v n="$n" -v kb="$kb" -v s="$s" -v bkb="$bkb" -v bs="$bs" 'BEGIN { printf "; base %.1f MB, %.0f docs/s: RSS %.2fx, docs/s %.2fx of base", bkb / 1024, n / bs, kb / bkb, bs / s }')
    fi
    echo "$line"
done
if [ -n "${rss[100000]:-}" ] && [ -n "${rss[1000000]:-}" ]; then
    awk -v a="${rss[100000]}" -v b="${rss[1000000]}" 'BEGIN { r = b / a; printf "RSS at 1M / RSS at 100k: %.3f (target <= 1.10: %s); 1M under 100 MB: %s\n", r, (r <= 1.10 ? "ok" : "NOT MET"), (b / 1024 < 100 ? "ok" : "NOT MET") }'
fi

# Dispatch: documents given inline (no fetch) to a server that answers in LATENCY_MS.
awk -v n="$CHAT_DOCS" 'BEGIN { for (i = 0; i < n; i++) printf "{\"id\":\"d%d\",\"text\":\"Residents of district %d described the storm. The council will meet again next month to decide on the budget. Repairs begin on Monday.\"}\n", i, i }' >"$work/docs.jsonl"
read -r kb s < <(OPENAI_API_KEY=bench run "$BIN" "$work/docs.jsonl" "$CHAT_DOCS" -b openai --base-url "$site/v1" --model bench -j "$CHAT_JOBS")
awk -v n="$CHAT_DOCS" -v s="$s" -v j="$CHAT_JOBS" -v ms="$LATENCY_MS" -v kb="$kb" 'BEGIN {
    ideal = j * 1000 / ms; got = n / s
    printf "fixed %d ms server, -j %d, %d docs: %.0f docs/s of the ideal %.0f = %.1f%% (target >= 90%%: %s); peak RSS %.1f MB\n", ms, j, n, got, ideal, 100 * got / ideal, (got / ideal >= 0.9 ? "ok" : "NOT MET"), kb / 1024 }'
