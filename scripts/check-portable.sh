#!/usr/bin/env bash
# Prove that compiled llama.cpp code stays inside the portable x86-64 baseline the builds ask for
# (AVX2/FMA/F16C, no AVX-512, no AMX): disassemble each file and fail when an instruction uses
# AVX-512 registers (zmm, xmm16-31/ymm16-31, the k mask registers) or AMX tiles. A binary with
# such instructions passes `--version` and dies with SIGILL on a CPU without them.
#
# Usage: scripts/check-portable.sh FILE...   (executables, shared or static libraries)
# Needs objdump (binutils). Prints one line per file; exit 1 when any file is not portable.
set -euo pipefail

[[ $# -gt 0 ]] || { echo "usage: $0 FILE..." >&2; exit 2; }
command -v objdump >/dev/null 2>&1 || { echo "check-portable: objdump (binutils) is required" >&2; exit 1; }

pattern='%zmm|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|%k[0-7]\b|\{%k[0-7]\}|\btile(loadd|stored|zero|release|cfg)|\btdpb'
bad=0
for f in "$@"; do
  [[ -f "$f" ]] || { echo "check-portable: no such file: $f" >&2; bad=1; continue; }
  dis="$(mktemp)"
  objdump -d --no-show-raw-insn "$f" >"$dis" 2>/dev/null || { echo "check-portable: objdump cannot read $f" >&2; rm -f "$dis"; bad=1; continue; }
  total="$(grep -cE '^\s+[0-9a-f]+:' "$dis" || true)"
  hits="$(grep -cE "$pattern" "$dis" || true)"
  avx2="$(grep -cE '%ymm' "$dis" || true)"
  if [[ "$hits" != 0 ]]; then
    echo "check-portable: NOT portable: $f has $hits AVX-512/AMX instructions of $total, e.g.:" >&2
    grep -m5 -E "$pattern" "$dis" >&2 || true
    bad=1
  else
    echo "check-portable: ok: $f: 0 AVX-512/AMX instructions of $total ($avx2 use AVX/AVX2 ymm registers)"
  fi
  rm -f "$dis"
done
exit "$bad"
