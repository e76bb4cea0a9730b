#!/usr/bin/env bash
# The diff between the patched engine crates in vendor/ and their crates.io releases
# (fetched into cargo's registry cache by any build). See vendor/README.md.
set -euo pipefail
cd "$(dirname "$0")/../vendor"
REG=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -n 1)
for crate in mistralrs-core mistralrs-quant; do
  orig="$REG/$crate-0.8.1"
  [[ -d $orig ]] || { echo "vendor-diff: $orig is missing; run \`cargo fetch\` with the patch section commented out" >&2; exit 1; }
  diff -ruN -x .cargo-ok -x .cargo_vcs_info.json -x Cargo.lock -x Cargo.toml.orig "$orig" "$crate" || true
done
