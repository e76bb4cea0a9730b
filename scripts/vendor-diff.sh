#!/usr/bin/env bash
# The diff between the patched crates in vendor/ and their crates.io releases
# (fetched into cargo's registry cache by any build). See vendor/README.md.
set -euo pipefail
cd "$(dirname "$0")/../vendor"
REG=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -n 1)
for crate in mistralrs-core-0.8.1 mistralrs-quant-0.8.1 pdf-extract-0.12.1; do
  orig="$REG/$crate"
  crate=${crate%-*}
  [[ -d $orig ]] || { echo "vendor-diff: $orig is missing; run \`cargo fetch\` with the patch section commented out" >&2; continue; }
  diff -ruN -x .cargo-ok -x .cargo_vcs_info.json -x Cargo.lock -x Cargo.toml.orig "$orig" "$crate" || true
done
