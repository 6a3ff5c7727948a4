#!/usr/bin/env bash
# Runs the conformance scenarios through the Java package (io.dongting): builds the
# native library and the classes with Maven (incremental; its log is shown only when
# it fails), then runs io.dongting.conformance.ConformanceRunner with DT_SERVERS,
# DT_GROUP, DT_SCENARIOS and DT_LANG from the environment (see ../README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! mvn -B -q -Dstyle.color=never -f "$root/java/pom.xml" test-compile > "$log" 2>&1; then
  cat "$log" >&2
  echo "conformance: building the Java package failed" >&2
  exit 1
fi
java -cp "$root/java/target/classes:$root/java/target/test-classes" \
  io.dongting.conformance.ConformanceRunner
