#!/usr/bin/env bash
# Stop a llama-server started by scripts/start-llama-server.sh, by the PID in its PID file.
# Usage: scripts/stop-llama-server.sh PORT
# Only that PID is signalled, and only if it still is a llama-server process (PIDs get reused).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PORT" >&2
  exit 2
fi
port="$1"
cache_root="${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}"
pid_file="$cache_root/run/llama-server-$port.pid"

log() { printf 'stop-llama-server: %s\n' "$*" >&2; }

if [[ ! -f "$pid_file" ]]; then
  log "no pid file $pid_file; nothing to stop"
  exit 0
fi
pid="$(cat "$pid_file")"
if ! kill -0 "$pid" 2>/dev/null; then
  log "pid $pid is not running"
  rm -f "$pid_file"
  exit 0
fi
if [[ -r "/proc/$pid/comm" ]] && [[ "$(cat "/proc/$pid/comm")" != llama-server* ]]; then
  log "pid $pid is $(cat "/proc/$pid/comm"), not llama-server; leaving it alone"
  rm -f "$pid_file"
  exit 1
fi
kill -TERM "$pid"
for _ in $(seq 1 40); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.25
done
if kill -0 "$pid" 2>/dev/null; then
  log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pid_file"
log "stopped pid $pid"
