//! The simulator as a test: many seeds, single-seed replay, and proofs that
//! planted bugs are detected.
//!
//! * `SIM_SEEDS` (default 1000) and `SIM_FIRST_SEED` (default 0) choose the seeds of
//!   `seeds`; `SIM_STEPS` the chaos steps per seed (default 300).
//! * `SIM_SEED=N [SIM_MUTATION=Name] cargo test -p dongting-raft-sim --test sim --
//!   replay --nocapture` replays one seed with a trace.

use dongting_raft::Mutation;
use dongting_raft_sim::{
    DEFAULT_STEPS, SimOptions, parse_mutation, replay_command, run_seed, run_seeds,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn seeds() {
    let first = env_u64("SIM_FIRST_SEED", 0);
    let count = env_u64("SIM_SEEDS", 1000);
    let steps = env_u64("SIM_STEPS", DEFAULT_STEPS as u64) as usize;
    let t = std::time::Instant::now();
    let (violations, st) = run_seeds(first, count, steps, Mutation::None, threads(), false);
    eprintln!(
        "{count} seeds x {steps} steps in {:.1}s; {st:?}",
        t.elapsed().as_secs_f64()
    );
    for v in &violations {
        eprintln!("VIOLATION {v}\n  replay: {}", replay_command(v.seed, Mutation::None));
    }
    assert!(violations.is_empty(), "{} seeds failed", violations.len());
}

#[test]
fn replay() {
    let Ok(seed) = std::env::var("SIM_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("SIM_SEED must be a number");
    let mutation = parse_mutation(&std::env::var("SIM_MUTATION").unwrap_or_default())
        .expect("unknown SIM_MUTATION");
    let mut o = SimOptions::new(seed);
    o.steps = env_u64("SIM_STEPS", DEFAULT_STEPS as u64) as usize;
    o.mutation = mutation;
    o.trace = true;
    match run_seed(o) {
        Ok(st) => eprintln!("seed {seed} passed: {st:?}"),
        Err(v) => panic!("VIOLATION {v}"),
    }
}

/// Runs seeds with `m` planted until the first violation; fails if none of the
/// first `within` seeds detects it.
fn detects(m: Mutation, within: u64) {
    let (violations, _) = run_seeds(0, within, DEFAULT_STEPS, m, threads(), true);
    let Some(v) = violations.first() else {
        panic!("mutation {m:?} went undetected over {within} seeds");
    };
    eprintln!("{m:?} detected: {v}\n  replay: {}", replay_command(v.seed, m));
}

#[test]
fn detects_commit_previous_term() {
    detects(Mutation::CommitPreviousTerm, 500);
}

#[test]
fn detects_vote_without_log_check() {
    detects(Mutation::VoteWithoutLogCheck, 500);
}

#[test]
fn detects_lease_without_quorum() {
    detects(Mutation::LeaseWithoutQuorum, 500);
}

#[test]
fn detects_count_unpersisted_self() {
    detects(Mutation::CountUnpersistedSelf, 500);
}
