#!/usr/bin/env bash
# Start the cached llama-server (scripts/build-llama-server.sh) on 127.0.0.1:PORT in the
# background, wait until /health answers OK, write its PID to a file and print the base URL of
# its OpenAI-compatible API (e.g. http://127.0.0.1:8091/v1) on stdout.
#
# Usage: scripts/start-llama-server.sh MODEL.gguf PORT
# Environment:
#   JUDGE_AUDIT_HOME          cache root (default $HOME/.cache/judge-audit)
#   JUDGE_AUDIT_LLAMA_SERVER   server binary (default: the cached build, see build-llama-server.sh --path)
#   JUDGE_AUDIT_SERVER_WAIT    seconds to wait for /health (default 120)
#   JUDGE_AUDIT_SERVER_THREADS compute threads (default: llama-server's choice)
#   JUDGE_AUDIT_SERVER_CACHE_PROMPT=1  keep llama-server's prompt cache (default: off, see below)
# The PID file is $cache/run/llama-server-PORT.pid and the log $cache/run/llama-server-PORT.log.
# Idempotent: if our server for PORT is already healthy, its URL is printed again.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 MODEL.gguf PORT" >&2
  exit 2
fi
model="$1"
port="$2"
[[ "$port" =~ ^[0-9]+$ ]] || { echo "start-llama-server: PORT must be a number: $port" >&2; exit 2; }
[[ -f "$model" ]] || { echo "start-llama-server: model not found: $model (run scripts/fetch-model.sh)" >&2; exit 1; }

cache_root="${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}"
bin="${JUDGE_AUDIT_LLAMA_SERVER:-}"
if [[ -z "$bin" ]]; then
  # The cache directory is named after the build flags; the build script knows the name.
  bin="$(bash "$(dirname "$0")/build-llama-server.sh" --path)"
fi
wait_s="${JUDGE_AUDIT_SERVER_WAIT:-120}"
run_dir="$cache_root/run"
pid_file="$run_dir/llama-server-$port.pid"
log_file="$run_dir/llama-server-$port.log"
url="http://127.0.0.1:$port"

log() { printf 'start-llama-server: %s\n' "$*" >&2; }

[[ -x "$bin" ]] || { log "no llama-server at $bin (run scripts/build-llama-server.sh)"; exit 1; }
mkdir -p "$run_dir"

healthy() { curl -fsS --max-time 2 "$url/health" 2>/dev/null | grep -q '"ok"'; }
alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

if [[ -f "$pid_file" ]]; then
  old="$(cat "$pid_file")"
  if alive "$old" && healthy; then
    log "already running (pid $old)"
    echo "$url/v1"
    exit 0
  fi
  rm -f "$pid_file"
fi
if healthy; then
  log "port $port already serves something else; pick another port"
  exit 1
fi

args=(-m "$model" --host 127.0.0.1 --port "$port" -c 2048 -np 2)
help="$("$bin" --help 2>&1 || true)"
# Every slot may use the whole 2048-token context instead of 2048/np.
grep -q -- '--kv-unified' <<<"$help" && args+=(--kv-unified)
grep -q -- '--log-disable' <<<"$help" && args+=(--log-disable)
# With the prompt cache a repeated prompt is not re-evaluated: only its last token is, on the
# single-token kernels, which moves SmolLM2's log-probabilities by up to ~0.4 nats and flips
# near-tied answers. An audit measures repeat consistency, so every request gets a full,
# history-independent evaluation unless JUDGE_AUDIT_SERVER_CACHE_PROMPT=1.
if [[ "${JUDGE_AUDIT_SERVER_CACHE_PROMPT:-0}" != 1 ]] && grep -q -- '--no-cache-prompt' <<<"$help"; then
  args+=(--no-cache-prompt)
fi
[[ -n "${JUDGE_AUDIT_SERVER_THREADS:-}" ]] && args+=(-t "$JUDGE_AUDIT_SERVER_THREADS")

log "starting $bin ${args[*]}"
nohup "$bin" "${args[@]}" >"$log_file" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

deadline=$((SECONDS + wait_s))
until healthy; do
  if ! alive "$pid"; then
    status=0
    wait "$pid" || status=$?
    log "llama-server exited during startup with status $status$( ((status != 132)) || echo ' (SIGILL: compiled for instructions this CPU lacks; rebuild with scripts/build-llama-server.sh --model MODEL)'); log $log_file:"
    tail -n 40 "$log_file" >&2 || true
    rm -f "$pid_file"
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    log "no healthy answer from $url/health within ${wait_s}s; stopping pid $pid"
    kill "$pid" 2>/dev/null || true
    rm -f "$pid_file"
    exit 1
  fi
  sleep 0.5
done
log "healthy (pid $pid, pid file $pid_file)"
echo "$url/v1"
