#!/usr/bin/env bash
# The client builds without the node runtime: dongting-client, the SDK's
# client-only build and every language library's client-only build depend on
# no dongting-server, dongting-store or dongting-raft, and a client-only SDK
# refuses to start an embedded server with a clear error.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
check() {
  local what=$1; shift
  local tree
  tree=$(cargo tree --offline "$@" --prefix none --format '{p}' 2>/dev/null || cargo tree "$@" --prefix none --format '{p}')
  if grep -E '^dongting-(server|store|raft) ' <<<"$tree"; then
    echo "client-only-check: $what depends on the node runtime (above)" >&2
    status=1
  else
    echo "client-only-check: $what: no dongting-server, dongting-store or dongting-raft"
  fi
}
check "dongting-client" -p dongting-client
check "dongting-sdk (client-only)" -p dongting-sdk --no-default-features
for p in dongting-ffi dongting-python dongting-node dongting-jvm; do
  check "$p (client-only)" -p "$p" --no-default-features
done
cargo test -q -p dongting-sdk --no-default-features --lib
exit $status
