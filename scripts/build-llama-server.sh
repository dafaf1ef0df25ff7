#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` from the llama.cpp sources vendored in the
# PyPI sdist `llama-cpp-python==0.3.36` (the only network this project may use is package
# registries, so GitHub releases are out). The binary is cached outside the repository, in a
# directory named after the build flags:
#   ${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}/llama-server-0.3.36-<cpu>-<flags hash>/llama-server
# and the script prints that path on stdout (logs go to stderr).
#
# The default build targets an explicit portable x86-64 baseline (AVX2, FMA, F16C, BMI2, SSE4.2;
# GGML_NATIVE=OFF, no AVX-512): a binary tuned for the build machine (GGML_NATIVE=ON) passes
# `--version` and then dies with SIGILL when another CPU loads the model. The `local` cargo
# feature uses the same flags (.cargo/config.toml).
#
# Idempotent: a cached binary is reused only when its BUILD_INFO records the same flags and, when
# a model is given (--model or JUDGE_AUDIT_MODEL), it loads that model and answers one request
# (scripts/check-llama-server.sh); otherwise it is rebuilt. The downloaded sdist is cached too
# (hash-checked) so a rebuild needs no network.
#
# Usage: scripts/build-llama-server.sh [--model MODEL.gguf]   build or reuse; print the binary path
#        scripts/build-llama-server.sh --path                  print where the binary lives, no build
# Environment:
#   JUDGE_AUDIT_HOME         cache root (default $HOME/.cache/judge-audit)
#   JUDGE_AUDIT_MODEL        model for the load check (same as --model)
#   JUDGE_AUDIT_GGML_NATIVE  OFF (default: the portable baseline above) or ON (tune for this CPU;
#                            fastest, but only for this machine: the cache key then names the CPU)
#   JUDGE_AUDIT_LLAMA_SRC    an unpacked llama.cpp source tree to build instead of the pinned sdist
#   JUDGE_AUDIT_BUILD_JOBS   parallel compile jobs (default 2)
set -euo pipefail

readonly VERSION="0.3.36"
readonly PACKAGE="llama-cpp-python==$VERSION"
readonly SDIST="llama_cpp_python-$VERSION.tar.gz"
readonly SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
here="$(cd "$(dirname "$0")" && pwd)"

model="${JUDGE_AUDIT_MODEL:-}"
path_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="${2:?--model needs a path}"; shift 2 ;;
    --path) path_only=1; shift ;;
    *) echo "usage: $0 [--model MODEL.gguf] [--path]" >&2; exit 2 ;;
  esac
done

cache_root="${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}"
sdist_dir="$cache_root/sdist"
native="${JUDGE_AUDIT_GGML_NATIVE:-OFF}"
jobs="${JUDGE_AUDIT_BUILD_JOBS:-2}"

log() { printf 'build-llama-server: %s\n' "$*" >&2; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
  fi
}
sha256_str() { printf '%s' "$1" | { sha256sum 2>/dev/null || python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; } | cut -c1-12; }

# The CMake flags that decide which instructions the binary may use. They name the cache
# directory and are recorded in BUILD_INFO, so a binary built with other flags is never reused.
case "$native" in
  OFF)
    cmake_cpu=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
      -DGGML_BMI2=ON -DGGML_SSE42=ON -DGGML_AVX512=OFF -DGGML_CPU_ALL_VARIANTS=OFF)
    cpu_label="x86-64-v3"
    ;;
  ON)
    cmake_cpu=(-DGGML_NATIVE=ON)
    # Native code runs only on the CPU it was tuned for: key it on that CPU's model and flags.
    cpu_id="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null || true; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
    cpu_label="native-$(sha256_str "$cpu_id")"
    ;;
  *) log "JUDGE_AUDIT_GGML_NATIVE must be ON or OFF, not '$native'"; exit 2 ;;
esac
flags="${cmake_cpu[*]}"
flags_key="$(sha256_str "$VERSION $flags")"
[[ -n "$flags_key" ]] || { log "could not hash the build flags"; exit 1; }
out_dir="$cache_root/llama-server-$VERSION-$cpu_label-$flags_key"
bin="$out_dir/llama-server"

if ((path_only)); then
  echo "$bin"
  exit 0
fi

# Why the cached binary cannot be reused, or nothing when it can.
unusable_reason() {
  [[ -x "$bin" ]] || { echo "not built yet"; return; }
  grep -qxF "flags: $flags" "$out_dir/BUILD_INFO" 2>/dev/null \
    || { echo "BUILD_INFO does not record the flags '$flags'"; return; }
  "$bin" --version >/dev/null 2>&1 || { echo "'$bin --version' fails"; return; }
  if [[ -n "$model" ]]; then
    bash "$here/check-llama-server.sh" "$bin" "$model" >&2 \
      || { echo "it cannot load $model and answer a request (log above)"; return; }
  fi
}

if [[ -z "$model" ]]; then
  log "no model given (--model or JUDGE_AUDIT_MODEL): a cached binary is checked with --version only"
fi

reason="$(unusable_reason)"
if [[ -z "$reason" ]]; then
  log "already built and healthy: $bin"
  echo "$bin"
  exit 0
fi
log "building: the cached llama-server is unusable: $reason"

# One build at a time per cache: a second concurrent run waits, then reuses the result.
mkdir -p "$out_dir"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out_dir/.lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
    reason="$(unusable_reason)"
    if [[ -z "$reason" ]]; then
      log "built by the concurrent run: $bin"
      echo "$bin"
      exit 0
    fi
  fi
fi
# A binary that failed its check is never left where a later run could pick it up.
rm -f "$bin" "$out_dir/BUILD_INFO"

# Install the build tools once if missing (Debian/Ubuntu; needs root or sudo).
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
if ((${#missing[@]})); then
  sudo_cmd=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "need root or sudo to install: ${missing[*]}"; exit 1; }
    sudo_cmd=(sudo)
  fi
  log "installing ${missing[*]} with apt-get (waiting for a held dpkg lock if needed)"
  "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >&2
fi

start=$SECONDS
work="$(mktemp -d "$cache_root/.build-llama-server.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [[ -n "${JUDGE_AUDIT_LLAMA_SRC:-}" ]]; then
  [[ -f "$JUDGE_AUDIT_LLAMA_SRC/CMakeLists.txt" ]] \
    || { log "JUDGE_AUDIT_LLAMA_SRC has no CMakeLists.txt: $JUDGE_AUDIT_LLAMA_SRC"; exit 1; }
  src="$JUDGE_AUDIT_LLAMA_SRC"
  origin="source tree $src"
else
  mkdir -p "$sdist_dir"
  have=""
  if [[ -f "$sdist_dir/$SDIST" ]]; then
    have="$(sha256_of "$sdist_dir/$SDIST")"
  fi
  if [[ "$have" != "$SDIST_SHA256" ]]; then
    log "downloading the $PACKAGE sdist from PyPI"
    dl="$(mktemp -d "$sdist_dir/.dl.XXXXXX")"
    python3 -m pip download --no-deps --no-binary :all: "$PACKAGE" -d "$dl" >&2
    got="$(sha256_of "$dl/$SDIST")"
    if [[ "$got" != "$SDIST_SHA256" ]]; then
      log "sha256 mismatch for $SDIST: expected $SDIST_SHA256, got $got"
      rm -rf "$dl"
      exit 1
    fi
    mv -f "$dl/$SDIST" "$sdist_dir/$SDIST"
    rm -rf "$dl"
  fi
  log "unpacking the vendored llama.cpp sources"
  tar -xzf "$sdist_dir/$SDIST" -C "$work" "llama_cpp_python-$VERSION/vendor/llama.cpp"
  src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
  origin="llama-cpp-python $VERSION sdist sha256 $SDIST_SHA256"
fi

# The UI and OpenSSL switches keep configure from reaching the network (it would otherwise fetch
# a prebuilt web UI). Static libraries make the cached binary self-contained.
log "configuring ($flags)"
cmake -S "$src" -B "$work/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  "${cmake_cpu[@]}" \
  -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON >&2

log "building llama-server with -j$jobs (about 5 minutes on 2 cores)"
cmake --build "$work/build" --config Release --target llama-server -j"$jobs" >&2

built="$work/build/bin/llama-server"
[[ -x "$built" ]] || { log "build finished but $built is missing"; exit 1; }
"$built" --version >&2
# The fresh build must pass the same check a cached one does; a build that cannot load the
# model is an error here, not a surprise in the tests.
if [[ -n "$model" ]]; then
  bash "$here/check-llama-server.sh" "$built" "$model" >&2 \
    || { log "the freshly built llama-server cannot load $model (log above)"; exit 1; }
fi
cp "$built" "$bin.partial"
mv -f "$bin.partial" "$bin"
printf '%s\nflags: %s\nbuilt %s in %d s\n' \
  "$origin" "$flags" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((SECONDS - start))" \
  >"$out_dir/BUILD_INFO"
log "built in $((SECONDS - start)) s: $bin"
echo "$bin"
