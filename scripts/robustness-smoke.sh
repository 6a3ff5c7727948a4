#!/usr/bin/env bash
# Bounded fault run for CI: a 3-node and a 5-node cluster of real `dongting
# server` processes (dev profile) under kills, pauses, partitions, torn log
# tails, leader transfers and membership changes, 40 s of faults each,
# checked for linearizability (temporary keys and their expiries included),
# lost writes, watch order, lock overlap, recovery and the restored
# membership. One verdict line per run; a
# failing run prints its seed, schedule and history file and exits non-zero.
#
#   scripts/robustness-smoke.sh            # seed 1 (3 nodes) and 2 (5 nodes)
#   ROBUST_SEED=1234 scripts/robustness-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${ROBUST_SEED:-1}
cargo build -q -p dongting-cli -p dongting-robustness
target=${CARGO_TARGET_DIR:-target}
exec "$target/debug/robust" --ci --seed "$seed" --binary "$target/debug/dongting" "$@"
