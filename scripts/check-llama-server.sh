#!/usr/bin/env bash
# Health-check a llama-server binary the way it is used: start it on a free loopback port with
# MODEL.gguf, wait for /health, ask one real chat completion and check the answer has a choice.
# `--version` alone is not enough: a binary compiled for another CPU's instruction set prints its
# version and then dies with SIGILL (exit 132) as soon as it loads the model's kernels.
#
# Usage: scripts/check-llama-server.sh BIN MODEL.gguf
# Exit 0 when the server answered; 1 otherwise, with the server's own log on stderr.
# Environment: JUDGE_AUDIT_SERVER_WAIT  seconds to wait for /health (default 120)
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BIN MODEL.gguf" >&2
  exit 2
fi
bin="$1"
model="$2"
wait_s="${JUDGE_AUDIT_SERVER_WAIT:-120}"

log() { printf 'check-llama-server: %s\n' "$*" >&2; }

[[ -x "$bin" ]] || { log "not an executable: $bin"; exit 1; }
[[ -f "$model" ]] || { log "model not found: $model"; exit 1; }

# A port the kernel reports free right now (tiny race with other processes; a clash shows up as
# a failed start with "address already in use" in the log, not as a wrong verdict).
port="$(python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
[[ "$port" =~ ^[0-9]+$ ]] || { log "could not pick a free port"; exit 1; }

work="$(mktemp -d)"
server_log="$work/server.log"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  log "$1"
  log "server log ($server_log):"
  tail -n 40 "$server_log" >&2 || true
  exit 1
}

"$bin" -m "$model" --host 127.0.0.1 --port "$port" -c 512 -np 1 >"$server_log" 2>&1 </dev/null &
pid=$!

url="http://127.0.0.1:$port"
deadline=$((SECONDS + wait_s))
until curl -fsS --max-time 2 "$url/health" 2>/dev/null | grep -q '"ok"'; do
  if ! kill -0 "$pid" 2>/dev/null; then
    status=0
    wait "$pid" || status=$?
    pid=""
    if ((status > 128)); then
      hint=""
      ((status != 132)) || hint=", SIGILL: compiled for instructions this CPU lacks"
      fail "$bin died while loading $model: exit $status (signal $((status - 128))$hint)"
    fi
    fail "$bin exited with status $status while loading $model"
  fi
  ((SECONDS < deadline)) || fail "no healthy answer from $url/health within ${wait_s}s"
  sleep 0.5
done

body='{"messages":[{"role":"user","content":"Answer with one letter: A or B?"}],"max_tokens":1,"temperature":0}'
answer="$(curl -sS --max-time 60 -H 'Content-Type: application/json' -d "$body" "$url/v1/chat/completions" 2>&1)" \
  || fail "the chat completion request failed: $answer"
grep -q '"choices"' <<<"$answer" || fail "the chat completion has no choices: ${answer:0:300}"
log "ok: $bin loaded $(basename "$model") and answered one request"
