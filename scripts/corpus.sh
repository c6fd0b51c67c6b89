#!/usr/bin/env bash
# Prints the directory of the shared corpus, building it first if needed.
# Cached outside the clone, keyed by the build script's hash, so a changed
# script rebuilds and an unchanged one never does.
#   scripts/corpus.sh [--check]   (--check: print the dir if built, else exit 1)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
script=${VMDN_CORPUS_SCRIPT:-$here/../shared/corpus/build-corpus.sh}
[ -f "$script" ] || { echo "corpus script not found: $script" >&2; exit 1; }
key=$(sha256sum "$script" | cut -c1-16)
dir=${VMDN_CORPUS_CACHE:-/var/cache/vmdn-corpus}/$key
complete() { for s in base academic academic2 database turn; do [ -f "$dir/$s.qcow2" ] || return 1; done; }
if complete; then echo "$dir"; exit 0; fi
[ "${1:-}" = --check ] && exit 1
mkdir -p "$dir"
echo "[vmdn] building the shared corpus into $dir (about 6 minutes) ..." >&2
bash "$script" "$dir" >&2
complete && echo "$dir"
