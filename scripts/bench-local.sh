#!/usr/bin/env bash
# Judgments per minute of the in-process llama.cpp judge with and without prompt-prefix reuse,
# against llama-server with its prompt cache on (same GGUF, same prompts, same thread count),
# for each registry model that is fetched (scripts/fetch-model.sh NAME). Prints one Markdown
# table per model (benches/local.rs says what each row measures). Run it on an idle machine:
# llama.cpp's threads wait for each other at every step, so a busy core slows it many-fold.
#
# Usage: scripts/bench-local.sh [MODEL_NAME ...]   (default: smollm2-135m qwen2.5-coder-1.5b)
# Environment: JUDGE_AUDIT_BENCH_PAIRS (default 6; 2 for the 1.5B model unless set),
#   JUDGE_AUDIT_BENCH_TEMPLATE (default chen-safety), JUDGE_AUDIT_BENCH_ENGINES, and
#   JUDGE_AUDIT_BENCH_PORT (default 18097).
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(smollm2-135m qwen2.5-coder-1.5b)
port="${JUDGE_AUDIT_BENCH_PORT:-18097}"
threads="$(nproc)"
cargo bench --features local --bench local --no-run >&2
trap 'bash scripts/stop-llama-server.sh "$port" >/dev/null 2>&1 || true' EXIT
for name in "${names[@]}"; do
  model="$(bash scripts/fetch-model.sh "$name" | tail -n 1)"
  [ -f "$model" ] || { echo "bench-local: no model file for $name" >&2; exit 1; }
  server="$(bash scripts/build-llama-server.sh --model "$model" | tail -n 1)"
  url="$(JUDGE_AUDIT_LLAMA_SERVER="$server" JUDGE_AUDIT_SERVER_CACHE_PROMPT=1 \
    JUDGE_AUDIT_SERVER_THREADS="$threads" bash scripts/start-llama-server.sh "$model" "$port" | tail -n 1)"
  pairs="${JUDGE_AUDIT_BENCH_PAIRS:-}"
  if [ -z "$pairs" ]; then
    case "$name" in qwen*) pairs=2 ;; *) pairs=6 ;; esac
  fi
  JUDGE_AUDIT_BENCH_MODELS="$model" JUDGE_AUDIT_BENCH_SERVER="$url" JUDGE_AUDIT_BENCH_PAIRS="$pairs" \
    JUDGE_AUDIT_BENCH_THREADS="$threads" cargo bench --features local --bench local
  bash scripts/stop-llama-server.sh "$port" >/dev/null 2>&1 || true
done
