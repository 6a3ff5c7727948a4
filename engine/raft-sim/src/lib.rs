//! Deterministic simulator for the Dongting Raft core.
//!
//! A seeded run drives five [`RawNode`]s over a virtual network and virtual
//! clocks. Every source of nondeterminism (message delays, drops, duplicates,
//! partitions, crashes, disk latency, client traffic, admin operations, election
//! timeouts) comes from one seed, so a failing seed replays exactly.
//!
//! Faults: message drop, duplication, reordering and delay; symmetric and
//! asymmetric partitions and leader isolation; crash and restart losing every
//! write not yet reported durable; membership churn (prepare, commit, abort,
//! observers); leader transfers; snapshots and log compaction; per-node clock
//! rate drift.
//!
//! Invariants checked after every step: at most one leader per term; log
//! matching; leader completeness; every node's applied sequence is a prefix of
//! one history; term and commit index monotonic; snapshots agree with the
//! history; reads linearizable against the applied history. After the chaos
//! phase the network heals, crashed nodes restart, and a liveness phase requires
//! a leader and the commit of fresh proposals on every node of the configuration
//! within [`LIVENESS_BOUND_MS`].
//!
//! [`RawNode`]: dongting_raft::RawNode

mod cluster;
mod rng;

use std::fmt;

use dongting_raft::{Mutation, NodeId};

pub use cluster::Sim;
pub use rng::Rng;

/// Node ids that exist in every run (not all are always in the configuration).
pub const NODE_IDS: [NodeId; 5] = [1, 2, 3, 4, 5];
/// Base election timeout of simulated nodes.
pub const ELECT_TIMEOUT_MS: u64 = 300;
/// Heartbeat interval of simulated nodes.
pub const HEARTBEAT_MS: u64 = 30;
/// Lease drift margin of simulated nodes (10 % of the election timeout).
pub const DRIFT_MARGIN_MS: u64 = 30;
/// Largest clock-rate error of a node, in parts per million (±2 %, well inside
/// the drift margin).
pub const MAX_CLOCK_PPM: i64 = 20_000;
/// After healing, a leader must emerge and every liveness proposal must be
/// applied by every node of the configuration within this much virtual time.
pub const LIVENESS_BOUND_MS: u64 = 60 * ELECT_TIMEOUT_MS;

/// Default chaos steps per seed.
pub const DEFAULT_STEPS: usize = 300;

/// What to run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Seed of every random choice.
    pub seed: u64,
    /// Chaos steps before the liveness phase.
    pub steps: usize,
    /// Planted bug to enable on every node.
    pub mutation: Mutation,
    /// Print every event to stderr.
    pub trace: bool,
}

impl SimOptions {
    /// Defaults for `seed`: [`DEFAULT_STEPS`] steps, no mutation, no trace.
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            steps: DEFAULT_STEPS,
            mutation: Mutation::None,
            trace: false,
        }
    }
}

/// A broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Seed that produced it.
    pub seed: u64,
    /// Step at which it was detected (steps past the chaos phase are liveness).
    pub step: usize,
    /// Virtual time in milliseconds.
    pub now_ms: u64,
    /// Which invariant and the values involved.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} step {} t={}ms: {}",
            self.seed, self.step, self.now_ms, self.what
        )
    }
}

/// The command that replays `seed` (run with `steps` chaos steps and `mutation`)
/// with a trace.
pub fn replay_command(seed: u64, steps: usize, mutation: Mutation) -> String {
    let mut env = format!("SIM_SEED={seed}");
    if steps != DEFAULT_STEPS {
        env.push_str(&format!(" SIM_STEPS={steps}"));
    }
    if mutation != Mutation::None {
        env.push_str(&format!(" SIM_MUTATION={mutation:?}"));
    }
    format!("{env} cargo test -p dongting-raft-sim --test sim -- replay --nocapture")
}

/// Parse a mutation name as printed by `Debug` (`None`, `CommitPreviousTerm`...).
pub fn parse_mutation(s: &str) -> Option<Mutation> {
    Some(match s {
        "" | "None" => Mutation::None,
        "CommitPreviousTerm" => Mutation::CommitPreviousTerm,
        "VoteWithoutLogCheck" => Mutation::VoteWithoutLogCheck,
        "LeaseWithoutQuorum" => Mutation::LeaseWithoutQuorum,
        "CountUnpersistedSelf" => Mutation::CountUnpersistedSelf,
        _ => return None,
    })
}

/// Counters of what a run exercised.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Distinct (term, leader) pairs observed.
    pub leaders: u64,
    /// Highest term reached.
    pub max_term: u64,
    /// Entries in the applied history.
    pub committed: u64,
    /// Proposals appended by a leader.
    pub proposals: u64,
    /// Reads answered with an index and checked.
    pub reads_ok: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Membership admin operations that appended an entry.
    pub config_ops: u64,
    /// Leader transfers started.
    pub transfers: u64,
    /// Local snapshots taken (with compaction).
    pub snapshots: u64,
    /// Snapshots installed from a leader.
    pub installs: u64,
    /// Virtual time the liveness phase needed.
    pub liveness_ms: u64,
}

/// Run one seed.
pub fn run_seed(opts: SimOptions) -> Result<SimStats, Violation> {
    let seed = opts.seed;
    match Sim::new(opts) {
        Ok(sim) => sim.run(),
        Err(what) => Err(Violation {
            seed,
            step: 0,
            now_ms: 0,
            what,
        }),
    }
}

/// Run seeds `[first, first + count)` on `threads` threads; returns the
/// violations found (at most one per seed), sorted by seed, and the summed stats.
pub fn run_seeds(
    first: u64,
    count: u64,
    steps: usize,
    mutation: Mutation,
    threads: usize,
    stop_at_first: bool,
) -> (Vec<Violation>, SimStats) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let next = AtomicU64::new(first);
    let stop = AtomicBool::new(false);
    let out = Mutex::new((Vec::new(), SimStats::default()));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        break;
                    }
                    let mut o = SimOptions::new(seed);
                    o.steps = steps;
                    o.mutation = mutation;
                    let r = run_seed(o);
                    let mut g = match out.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    match r {
                        Ok(st) => add_stats(&mut g.1, &st),
                        Err(v) => {
                            g.0.push(v);
                            if stop_at_first {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
    });
    let (mut v, st) = match out.into_inner() {
        Ok(x) => x,
        Err(p) => p.into_inner(),
    };
    v.sort_by_key(|x| x.seed);
    (v, st)
}

fn add_stats(a: &mut SimStats, b: &SimStats) {
    a.leaders += b.leaders;
    a.max_term = a.max_term.max(b.max_term);
    a.committed += b.committed;
    a.proposals += b.proposals;
    a.reads_ok += b.reads_ok;
    a.crashes += b.crashes;
    a.config_ops += b.config_ops;
    a.transfers += b.transfers;
    a.snapshots += b.snapshots;
    a.installs += b.installs;
    a.liveness_ms = a.liveness_ms.max(b.liveness_ms);
}
