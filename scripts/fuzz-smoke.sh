#!/usr/bin/env bash
# Run every cargo-fuzz target in tests/fuzz for a few seconds each, starting from
# the committed seeds in tests/fuzz/seeds/<target>/. New corpus entries go to
# tests/fuzz/corpus/<target>/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
[ -d tests/fuzz ] || { echo "fuzz-smoke: no fuzz targets"; exit 0; }
# cargo-fuzz needs -Z flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
export PATH="$PWD/.tools/bin:$PATH"
targets=$(cargo fuzz list --fuzz-dir tests/fuzz)
[ -n "$targets" ] || { echo "fuzz-smoke: cargo fuzz lists no targets in tests/fuzz" >&2; exit 1; }
passed=0; failed=0
for target in $targets; do
  mkdir -p "tests/fuzz/corpus/$target" "tests/fuzz/seeds/$target"
  if cargo fuzz run --fuzz-dir tests/fuzz "$target" \
      "tests/fuzz/corpus/$target" "tests/fuzz/seeds/$target" \
      -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 12; then
    passed=$((passed + 1))
  else
    echo "fuzz-smoke: $target FAILED (artifact in tests/fuzz/artifacts/$target)"
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
