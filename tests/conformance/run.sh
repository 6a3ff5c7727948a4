#!/usr/bin/env bash
# Runs the conformance scenarios in every language against one dev cluster and
# prints the pass matrix (scenario by language). Fails when a cell fails or a
# runner did not report a scenario.
#   tests/conformance/run.sh [LANG...]    default: every language with a runner
# Expects the runners built: target/<profile>/conformance (Rust),
# target/ctest/conformance (C), the Python package importable by $PYTHON, the
# Node package built in node/, the Java package built in java/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
bin=${DONGTING:-$target/debug/dongting}
python=${PYTHON:-python3}
langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(rust c python node java)

work=$(mktemp -d)
"$bin" dev --threads 2 > "$work/dev.log" 2>&1 &
dev=$!
cleanup() {
  kill -INT "$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q '^try:' "$work/dev.log" && break
  kill -0 "$dev" 2>/dev/null || { cat "$work/dev.log"; echo "conformance: dev cluster exited" >&2; exit 1; }
  sleep 0.1
done
servers=$(sed -n 's/^ *service (clients): *//p' "$work/dev.log")
[ -n "$servers" ] || { cat "$work/dev.log"; echo "conformance: no service addresses" >&2; exit 1; }

export DT_SERVERS=$servers DT_GROUP=0 DT_SCENARIOS=$root/tests/conformance/scenarios.txt
status=0
for lang in "${langs[@]}"; do
  case $lang in
    rust)   cmd=("$target/debug/conformance") ;;
    c)      cmd=("$target/ctest/conformance") ;;
    python) cmd=("$python" "$root/tests/conformance/python/runner.py") ;;
    node)   cmd=(node "$root/tests/conformance/node/runner.mjs") ;;
    java)   cmd=("$root/tests/conformance/java/run.sh") ;;
    *) echo "conformance: unknown language $lang" >&2; exit 2 ;;
  esac
  echo "== $lang"
  if ! DT_LANG=$lang "${cmd[@]}" > "$work/$lang.out" 2>&1; then status=1; fi
  cat "$work/$lang.out"
done

# The matrix: one row per scenario, one column per language.
scenarios=$(sed -n 's/^scenario  *\([A-Za-z0-9_]*\).*/\1/p' "$DT_SCENARIOS")
printf '\n%-24s' scenario
for lang in "${langs[@]}"; do printf ' %-7s' "$lang"; done
echo
cells=0; bad=0
for s in $scenarios; do
  printf '%-24s' "$s"
  for lang in "${langs[@]}"; do
    if grep -qx "PASS $s" "$work/$lang.out"; then r=pass
    elif grep -q "^FAIL $s:" "$work/$lang.out"; then r=FAIL; bad=$((bad + 1))
    else r=MISSING; bad=$((bad + 1)); fi
    cells=$((cells + 1))
    printf ' %-7s' "$r"
  done
  echo
done
echo "conformance: $((cells - bad)) passed, $bad failed"
[ $bad -eq 0 ] && [ $status -eq 0 ]
