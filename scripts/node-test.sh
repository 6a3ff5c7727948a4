#!/usr/bin/env bash
# Node package: install its npm dependencies, build the native module (dev
# profile, in ${CARGO_TARGET_DIR:-target}), type-check the public types and
# run the tests. Ends with "node-test: N passed, M failed".
#   scripts/node-test.sh [--build-only]   --build-only: stop after the build
set -euo pipefail
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root/node"

command -v node >/dev/null || { echo "node-test: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "node-test: npm is not installed" >&2; exit 1; }

echo "== npm ci"
npm ci --ignore-scripts --no-audit --no-fund

echo "== build the native module (dev profile)"
# Plain cargo rather than `napi build`, which always passes --target and so
# would rebuild every dependency under a second directory.
cargo build -p dongting-node
case "$(uname -s)" in
  Darwin) lib=libdongting_node.dylib ;;
  MINGW* | MSYS* | CYGWIN*) lib=dongting_node.dll ;;
  *) lib=libdongting_node.so ;;
esac
platform="$(node -p "require('./lib/platform').platformName()")"
cp "$CARGO_TARGET_DIR/debug/$lib" "dongting.$platform.node"
[ "$build_only" = 1 ] && exit 0

echo "== tsc"
npx --no-install tsc -p test/types

echo "== node --test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
node --test test/ 2>&1 | tee "$log" || status=$?
passed="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)"
failed="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)"
echo "node-test: ${passed:-0} passed, ${failed:-1} failed"
exit "$status"
