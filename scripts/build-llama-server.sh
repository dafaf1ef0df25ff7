#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` from the llama.cpp sources vendored in the
# PyPI sdist `llama-cpp-python==0.3.36` (the only network this project may use is package
# registries, so GitHub releases are out). The binary is cached outside the repository:
#   ${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}/llama-server-0.3.36/llama-server
# and the script prints that path on stdout (logs go to stderr). Idempotent: a cached binary that
# runs is reused; the downloaded sdist is cached too (hash-checked) so a rebuild needs no network.
#
# Environment:
#   JUDGE_AUDIT_HOME        cache root (default $HOME/.cache/judge-audit)
#   JUDGE_AUDIT_GGML_NATIVE  ON (default: tune for this CPU, fastest) or OFF (portable binary,
#                            use it when the cache is shared between machines, e.g. CI runners)
#   JUDGE_AUDIT_BUILD_JOBS   parallel compile jobs (default 2)
set -euo pipefail

readonly VERSION="0.3.36"
readonly PACKAGE="llama-cpp-python==$VERSION"
readonly SDIST="llama_cpp_python-$VERSION.tar.gz"
readonly SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

cache_root="${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}"
out_dir="$cache_root/llama-server-$VERSION"
bin="$out_dir/llama-server"
sdist_dir="$cache_root/sdist"
native="${JUDGE_AUDIT_GGML_NATIVE:-ON}"
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

usable() { [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; }

if usable; then
  log "already built: $bin"
  echo "$bin"
  exit 0
fi

# One build at a time per cache: a second concurrent run waits, then reuses the result.
mkdir -p "$out_dir"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out_dir/.lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
  fi
  if usable; then
    log "built by the concurrent run: $bin"
    echo "$bin"
    exit 0
  fi
fi

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
  log "installing ${missing[*]} with apt-get"
  "${sudo_cmd[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" >&2
fi

start=$SECONDS
mkdir -p "$sdist_dir" "$out_dir"
if [[ ! -f "$sdist_dir/$SDIST" ]] || [[ "$(sha256_of "$sdist_dir/$SDIST")" != "$SDIST_SHA256" ]]; then
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

work="$(mktemp -d "$cache_root/.build-llama-server.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "unpacking the vendored llama.cpp sources"
tar -xzf "$sdist_dir/$SDIST" -C "$work" "llama_cpp_python-$VERSION/vendor/llama.cpp"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"

# The UI and OpenSSL switches keep configure from reaching the network (it would otherwise fetch
# a prebuilt web UI). Static libraries make the cached binary self-contained.
log "configuring (GGML_NATIVE=$native)"
cmake -S "$src" -B "$work/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE="$native" \
  -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON >&2

log "building llama-server with -j$jobs"
cmake --build "$work/build" --config Release --target llama-server -j"$jobs" >&2

built="$work/build/bin/llama-server"
[[ -x "$built" ]] || { log "build finished but $built is missing"; exit 1; }
"$built" --version >&2
cp "$built" "$bin.partial"
mv -f "$bin.partial" "$bin"
printf 'llama-cpp-python %s sdist sha256 %s\nGGML_NATIVE=%s\nbuilt %s in %d s\n' \
  "$VERSION" "$SDIST_SHA256" "$native" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((SECONDS - start))" \
  >"$out_dir/BUILD_INFO"
log "built in $((SECONDS - start)) s: $bin"
echo "$bin"
