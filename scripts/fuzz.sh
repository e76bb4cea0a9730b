#!/usr/bin/env bash
# Fuzz the pure stages of `summarize` with cargo-fuzz (libFuzzer): extract, chunk, input_list,
# sanitize (see fuzz/fuzz_targets/). Installs cargo-fuzz if it is missing, seeds each target's
# corpus from samples/, runs each target for FUZZ_SECONDS, and exits non-zero if any target
# crashed, printing the artifact that reproduces it.
#
# Works on a stable toolchain: cargo-fuzz passes nightly-only flags (-Z...) to rustc and cargo,
# which RUSTC_BOOTSTRAP=1 unlocks. A nightly toolchain works too (`RUSTUP_TOOLCHAIN=nightly`).
#
# Usage: scripts/fuzz.sh [TARGET...]        (default: every target)
# Env:
#   FUZZ_SECONDS     seconds per target (default 60), libFuzzer -max_total_time
#   FUZZ_SANITIZER   address (default), leak, none; `none` runs about twice as fast
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 30)
#   FUZZ_ARGS        extra libFuzzer flags, e.g. "-max_len=65536 -jobs=2"
#   CARGO_TARGET_DIR build directory (default fuzz/target)
#
# Reproduce a crash:  cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# Minimize it:        cargo fuzz tmin TARGET fuzz/artifacts/TARGET/crash-...
# (with RUSTC_BOOTSTRAP=1 and the same --target-dir / CARGO_TARGET_DIR on a stable toolchain)
set -uo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-address}
timeout=${FUZZ_TIMEOUT:-30}
target_dir=${CARGO_TARGET_DIR:-$root/fuzz/target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}

log() { printf 'fuzz: %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz || { log "cannot install cargo-fuzz"; exit 2; }
fi

all_targets=(extract chunk input_list sanitize)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

fuzz_args=(--sanitizer "$sanitizer" --target-dir "$target_dir")

log "building ${targets[*]} (sanitizer $sanitizer, target dir $target_dir)"
for t in "${targets[@]}"; do
    cargo fuzz build "${fuzz_args[@]}" "$t" || { log "build of $t failed"; exit 2; }
done

# Seeds: the sample documents for every target, plus a few hostile strings for the text ones.
seed() {
    local t=$1 dir=fuzz/corpus/$1
    mkdir -p "$dir"
    for f in samples/*; do
        [ -f "$f" ] && cp -n "$f" "$dir/seed-$(basename "$f")"
    done
    case $t in
    extract)
        # Hostile pages (issue 13), small enough for libFuzzer to mutate: deep nesting, an
        # attribute flood, a charset that lies, a page of only scripts.
        { printf '<html><body>'; printf '<div>%.0s' $(seq 5000); printf '<p>deep text</p>'; printf '</div>%.0s' $(seq 5000); } >"$dir/seed-deep"
        { printf '<html><body><div'; for i in $(seq 3000); do printf ' a%d="%d"' "$i" "$i"; done; printf '><p>flood</p></div>'; } >"$dir/seed-attrs"
        printf '<html><head><meta charset="utf-16"></head><body><p>caf\303\251 o\303\271</p></body></html>' >"$dir/seed-charset"
        { printf '<html><body>'; printf '<script>x()</script>%.0s' $(seq 500); } >"$dir/seed-scripts"
        ;;&
    sanitize | extract)
        printf 'Title\033[2J\033[31mred\033[0m \033]0;pwned\007ok\342\200\256evil\000\r\nnext\033P$q\033\\ \342\201\246iso\342\201\251' >"$dir/seed-escapes"
        ;;
    chunk)
        # First byte is the budget.
        printf '\007One two three. Four five six.\n\nSeven eight nine!\nTen? \343\200\202x' >"$dir/seed-sentences"
        printf '\003%s' "$(head -c 300 /dev/zero | tr '\0' 'x')" >"$dir/seed-run"
        ;;
    input_list)
        printf '# list\n\nhttps://a.example/x#frag\n  https://b.example/y  # c\nhttps://c.example/a b\nnot-a-path\n\357\273\277http://d.example/\n{"id": 7, "url": "https://x.example/"}\n{"path": "a.md", "reference": "r"}\n{"text": "t", "title": " "}\n' >"$dir/seed-list"
        ;;
    esac
}

failed=()
for t in "${targets[@]}"; do
    seed "$t"
    mkdir -p "fuzz/artifacts/$t"
    stamp=$(mktemp)
    log "running $t for ${seconds}s"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo fuzz run "${fuzz_args[@]}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 ${FUZZ_ARGS:-}
    rc=$?
    if [ $rc -ne 0 ]; then
        found=$(find "fuzz/artifacts/$t" -type f -newer "$stamp" 2>/dev/null)
        failed+=("$t")
        log "$t FAILED (exit $rc)"
        for a in $found; do log "  artifact: $root/$a"; done
        [ -z "$found" ] && log "  (no artifact written; see the output above)"
    fi
    rm -f "$stamp"
done

if [ ${#failed[@]} -gt 0 ]; then
    log "crashes in: ${failed[*]}"
    exit 1
fi
log "no crashes in ${targets[*]} (${seconds}s each)"
