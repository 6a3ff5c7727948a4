#!/usr/bin/env bash
# Bounded fault run for CI: a 3-node and a 5-node cluster of real `dongting
# server` processes (dev profile) under kills, pauses, partitions, torn log
# tails, leader transfers and membership changes, 40 s of faults each,
# checked for linearizability (temporary keys and their expiries included),
# lost writes, watch order, lock overlap, recovery and the restored
# membership. Then the trusting mode: only leader kills, 500 ms client
# deadlines, and every failed write whose error says `retryable` taken at its
# word (it did not happen) -- it must pass, and the same run with the client's
# planted bug `retryable_unknown` (a write that may have run reported as
# retryable) must fail. One verdict line per run; a failing run prints its
# seed, schedule and history file and exits non-zero.
#
#   scripts/robustness-smoke.sh            # seed 1 (3 nodes) and 2 (5 nodes)
#   ROBUST_SEED=1234 scripts/robustness-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${ROBUST_SEED:-1}
cargo build -q -p dongting-cli -p dongting-robustness
target=${CARGO_TARGET_DIR:-target}
robust=("$target/debug/robust" --binary "$target/debug/dongting")
"${robust[@]}" --ci --seed "$seed" "$@"
trusting=(--nodes 3 --duration 20s --seed "$((seed + 2))" --faults kill-leader
  --client-timeout-ms 500 --trust-retryable)
"${robust[@]}" "${trusting[@]}"
# The proof that the trusting mode bites: the planted bug must be caught.
if "${robust[@]}" "${trusting[@]}" --client-failpoint retryable_unknown > "$target/robust-planted.log" 2>&1; then
  cat "$target/robust-planted.log"
  echo "robustness-smoke: the planted bug retryable_unknown was NOT caught" >&2
  exit 1
fi
grep '^robust: FAIL' "$target/robust-planted.log"
echo "robustness-smoke: the planted bug retryable_unknown was caught"
