#!/usr/bin/env bash
# Rolling restart of a 3-node cluster (default timings) under `dongting bench`
# put load: each node in turn gets SIGTERM, is started again on its data
# directory, and is given SETTLE seconds before the next one. Prints the
# benchmark's summary (errors, max latency), its per-second completions, and
# the hand-over lines of the nodes' logs (BENCHMARKS.md, "Rolling restart").
#
#   scripts/rolling-restart-bench.sh [path/to/dongting]
#   BASE=27100 SETTLE=20 DURATION=75 PENDING=200 RUST_LOG=info,dongting_raft=debug ...
set -euo pipefail
BIN=${1:-target/release/dongting}
BIN=$(realpath "$BIN")
BASE=${BASE:-27100}
SETTLE=${SETTLE:-20}
DURATION=${DURATION:-75}
PENDING=${PENDING:-200}
DIR=$(mktemp -d /tmp/dongting-rolling-XXXXXX)
cd "$DIR"
declare -A PID
rep() { echo $((BASE + $1)); }
svc() { echo $((BASE + 100 + $1)); }
for i in 1 2 3; do
  cat > "n$i.toml" <<T
node_id = $i
data_dir = "$DIR/n$i"
service_port = $(svc "$i")
servers = [
  { id = 1, address = "127.0.0.1:$(rep 1)" },
  { id = 2, address = "127.0.0.1:$(rep 2)" },
  { id = 3, address = "127.0.0.1:$(rep 3)" },
]
[[groups]]
id = 0
members = [1, 2, 3]
T
done
start() { "$BIN" --threads 1 server --config "n$1.toml" >> "n$1.log" 2>&1 & PID[$1]=$!; }
cleanup() { for i in 1 2 3; do kill -TERM "${PID[$i]:-0}" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT
for i in 1 2 3; do start "$i"; done
sleep 20 # the first election waits one to two default election timeouts
"$BIN" bench --servers "127.0.0.1:$(svc 1),127.0.0.1:$(svc 2),127.0.0.1:$(svc 3)" \
  --duration "$DURATION" --warmup 2 --max-pending "$PENDING" > bench.out 2>&1 &
B=$!
sleep 10
for i in 1 2 3; do
  kill -TERM "${PID[$i]}"; wait "${PID[$i]}" || true
  echo "node $i stopped at $(date +%T.%N | cut -c1-12)"
  start "$i"; sleep "$SETTLE"
done
wait "$B"
grep -E "summary" bench.out
grep -E "^\[" bench.out | awk '{printf "%s %s  ", $2, $4} END {print ""}'
grep -h "handed over on shutdown" n*.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200 || true
echo "logs in $DIR"
