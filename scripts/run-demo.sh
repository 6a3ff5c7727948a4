#!/usr/bin/env bash
# The quick-start demo behind `make run`: start a 3-node dev cluster on
# loopback, use it with the `dongting` client commands, then stop it (which
# deletes its temporary data).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DONGTING:-target/release/dongting}
out=$(mktemp)
"$bin" dev > "$out" 2>&1 &
dev=$!
cleanup() {
  kill -INT "$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q '^try:' "$out" && break
  kill -0 "$dev" 2>/dev/null || { cat "$out"; echo "run-demo: dev cluster exited" >&2; exit 1; }
  sleep 0.1
done
sed -n '1,/^try:/p' "$out" | sed '$d'
service=$(sed -n 's/^ *service (clients): *//p' "$out")
replicate=$(sed -n 's/^ *replicate (admin): *//p' "$out")
[ -n "$service" ] && [ -n "$replicate" ] || { cat "$out"; echo "run-demo: no addresses" >&2; exit 1; }

run() {
  printf '$ dongting'; printf ' %q' "$@"; echo
  "$bin" "$@" 2>&1 | sed 's/^/  /'
}
kv() { run kv --servers "$service" --group 0 "$@"; }
kv mkdir app
kv put app.greeting "hello, dongting"
kv get app.greeting
kv cas app.greeting "hello, dongting" "hello again"
kv batch-put app.a=1 app.b=2
kv ls app
kv batch-get app.a app.b app.missing
kv rm app.a
kv get app.a || true
run admin --servers "$replicate" status
echo "run-demo: stopping the cluster"
