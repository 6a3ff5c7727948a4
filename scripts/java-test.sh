#!/usr/bin/env bash
# Builds the JVM native library (dev profile, in ${CARGO_TARGET_DIR:-target}) and runs the
# Java package's JUnit tests with Maven (which downloads its own dependencies), then prints
# the Surefire totals as one line ("java: N passed, M failed"). Exits non-zero when the
# build or a test fails. Extra arguments go to Maven (e.g. -Dtest=KvClientTest).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")
cd "$root"
cargo build -p dongting-jvm
rm -rf java/target/surefire-reports
status=0
# The library is built above; Maven only packages it.
# Maven 3.8 prints colour resets even in batch mode: strip them so lines stay plain.
mvn -B -ntp -Dstyle.color=never -f java/pom.xml -Ddongting.skipCargo=true test "$@" 2>&1 \
  | sed -u 's/\x1b\[[0-9;]*m//g' || status=${PIPESTATUS[0]}
tests=0 failed=0 skipped=0
for f in java/target/surefire-reports/TEST-*.xml; do
  [ -e "$f" ] || continue
  head=$(grep -m1 '<testsuite ' "$f")
  attr() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<< "$head"; }
  tests=$((tests + $(attr tests)))
  failed=$((failed + $(attr failures) + $(attr errors)))
  skipped=$((skipped + $(attr skipped)))
done
echo "java: $((tests - failed - skipped)) passed, $failed failed, $skipped skipped"
if [ "$tests" -eq 0 ] && [ "$status" -eq 0 ]; then
  echo "java-test: no test ran" >&2
  status=1
fi
exit "$status"
