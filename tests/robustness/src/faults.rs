//! The fault schedule of a run, derived from its seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Which node a fault hits, resolved when it is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The current leader of group 0.
    Leader,
    /// A node other than the leader.
    Follower,
    /// Any node.
    Any,
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// kill -9, restart after the hold.
    Kill(Target),
    /// kill -9, cut the last bytes of the newest log segment, restart.
    KillTornTail(Target),
    /// SIGSTOP, SIGCONT after the hold.
    Pause(Target),
    /// Leadership handed to another node through `dongting admin`.
    TransferLeader,
    /// The node is cut off from every other node (both directions).
    Isolate(Target),
    /// A random minority is cut off from the majority.
    SplitMinority,
    /// Every link of the node delays its bytes.
    SlowLinks(Target),
    /// Every connection of the node is closed (once, at the start).
    DropConnections(Target),
    /// A follower is cut off while every node saves a snapshot; the
    /// follower is then killed and restarted (it restores from its own
    /// snapshot and catches up).
    SnapshotWhilePartitioned,
    /// A voting member (the leader or a follower) is demoted to observer
    /// with the two-phase admin change (prepare, then commit), stays an
    /// observer for the hold while the next faults run, and is promoted
    /// back the same way. The change runs beside the other faults.
    MembershipChange(Target),
}

impl FaultKind {
    /// Short name used in reports and counts.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Kill(Target::Leader) => "kill-leader",
            FaultKind::Kill(_) => "kill",
            FaultKind::KillTornTail(_) => "kill-torn-tail",
            FaultKind::Pause(_) => "pause",
            FaultKind::TransferLeader => "transfer-leader",
            FaultKind::Isolate(Target::Leader) => "isolate-leader",
            FaultKind::Isolate(_) => "isolate-node",
            FaultKind::SplitMinority => "partition-minority",
            FaultKind::SlowLinks(_) => "slow-links",
            FaultKind::DropConnections(_) => "drop-connections",
            FaultKind::SnapshotWhilePartitioned => "snapshot-while-partitioned",
            FaultKind::MembershipChange(Target::Leader) => "membership-change-leader",
            FaultKind::MembershipChange(_) => "membership-change",
        }
    }
}

/// One step: a fault, how long it lasts, and the quiet time after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The fault.
    pub kind: FaultKind,
    /// Milliseconds it lasts.
    pub hold_ms: u64,
    /// Milliseconds without faults after it is healed.
    pub calm_ms: u64,
}

/// Every fault kind, in schedule order of preference: each appears once
/// before any repeats, then choices are random.
pub const ALL: &[FaultKind] = &[
    FaultKind::Isolate(Target::Leader),
    FaultKind::Kill(Target::Leader),
    FaultKind::SplitMinority,
    FaultKind::KillTornTail(Target::Follower),
    FaultKind::Pause(Target::Leader),
    FaultKind::TransferLeader,
    FaultKind::SlowLinks(Target::Any),
    FaultKind::Kill(Target::Follower),
    FaultKind::DropConnections(Target::Any),
    FaultKind::Isolate(Target::Follower),
    FaultKind::KillTornTail(Target::Leader),
    FaultKind::Pause(Target::Follower),
    FaultKind::SnapshotWhilePartitioned,
    FaultKind::MembershipChange(Target::Leader),
    FaultKind::MembershipChange(Target::Follower),
];

/// The first membership change of a schedule is moved to one of its first
/// `EARLY_MEMBERSHIP` steps, so that even a short run contains a whole one
/// (demotion, time as an observer under other faults, promotion).
pub const EARLY_MEMBERSHIP: usize = 2;

/// The fault kinds with the given names ([`FaultKind::name`]), in the order
/// of [`ALL`]; the error names one that matches no kind.
pub fn kinds_named(names: &[String]) -> Result<Vec<FaultKind>, String> {
    if let Some(bad) = names
        .iter()
        .find(|n| !ALL.iter().any(|k| k.name() == n.as_str()))
    {
        let mut known: Vec<&str> = ALL.iter().map(FaultKind::name).collect();
        known.dedup();
        return Err(format!(
            "unknown fault kind `{bad}` (known: {})",
            known.join(", ")
        ));
    }
    Ok(ALL
        .iter()
        .copied()
        .filter(|k| names.iter().any(|n| n == k.name()))
        .collect())
}

/// A schedule filling `duration_ms`, derived from `seed`, with holds scaled
/// to the election timeout.
pub fn schedule(seed: u64, duration_ms: u64, elect_timeout_ms: u64) -> Vec<Step> {
    schedule_of(seed, duration_ms, elect_timeout_ms, ALL)
}

/// Like [`schedule`], drawing only from `kinds` (all of [`ALL`] when empty).
pub fn schedule_of(
    seed: u64,
    duration_ms: u64,
    elect_timeout_ms: u64,
    kinds: &[FaultKind],
) -> Vec<Step> {
    let kinds = if kinds.is_empty() { ALL } else { kinds };
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut order: Vec<FaultKind> = kinds.to_vec();
    // A seeded shuffle of the first round.
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    if let Some(m) = order
        .iter()
        .position(|k| matches!(k, FaultKind::MembershipChange(_)))
    {
        let to = rng.random_range(0..EARLY_MEMBERSHIP);
        if m > to {
            let k = order.remove(m);
            order.insert(to, k);
        }
    }
    let mut out = Vec::new();
    let mut t = 0u64;
    let mut i = 0usize;
    while t < duration_ms {
        let kind = if i < order.len() {
            order[i]
        } else {
            kinds[rng.random_range(0..kinds.len())]
        };
        i += 1;
        // Partitions last long enough for the majority to elect a leader
        // (pre-vote plus up to two election timeouts) and run under it.
        let hold_ms = match kind {
            FaultKind::Isolate(_) | FaultKind::SplitMinority => {
                rng.random_range(3 * elect_timeout_ms..=6 * elect_timeout_ms)
            }
            // Time as an observer.
            FaultKind::MembershipChange(_) => {
                rng.random_range(3 * elect_timeout_ms..=8 * elect_timeout_ms)
            }
            _ => rng.random_range(elect_timeout_ms..=4 * elect_timeout_ms),
        };
        let calm_ms = rng.random_range(elect_timeout_ms / 2..=2 * elect_timeout_ms);
        // A membership change runs beside the next faults: only the quiet
        // time after it is spent before the next one.
        t += match kind {
            FaultKind::MembershipChange(_) => calm_ms,
            _ => hold_ms + calm_ms,
        };
        out.push(Step {
            kind,
            hold_ms,
            calm_ms,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed_and_covers_every_kind() {
        let a = schedule(42, 120_000, 1000);
        assert_eq!(a, schedule(42, 120_000, 1000));
        assert_ne!(a, schedule(43, 120_000, 1000));
        for k in ALL {
            assert!(a.iter().any(|s| s.kind == *k), "{k:?} missing");
        }
        let total: u64 = a.iter().map(|s| s.hold_ms + s.calm_ms).sum();
        assert!(total >= 120_000);
        assert!(a.iter().all(|s| (1000..=8000).contains(&s.hold_ms)));
        assert!(
            a.iter()
                .filter(|s| !matches!(s.kind, FaultKind::MembershipChange(_)))
                .all(|s| (1000..=6000).contains(&s.hold_ms))
        );
    }

    #[test]
    fn a_schedule_of_named_kinds_draws_only_from_them() {
        let kinds = kinds_named(&["kill-leader".to_string()]).expect("known");
        assert_eq!(kinds, vec![FaultKind::Kill(Target::Leader)]);
        let a = schedule_of(7, 30_000, 1000, &kinds);
        assert!(!a.is_empty());
        assert!(a.iter().all(|s| s.kind == FaultKind::Kill(Target::Leader)));
        let e = kinds_named(&["kill-everything".to_string()]).expect_err("unknown");
        assert!(
            e.contains("kill-everything") && e.contains("kill-leader"),
            "{e}"
        );
    }

    #[test]
    fn every_schedule_starts_with_a_membership_change_early() {
        for seed in 0..200 {
            let a = schedule(seed, 40_000, 1000);
            let first = a
                .iter()
                .position(|s| matches!(s.kind, FaultKind::MembershipChange(_)));
            assert!(
                first.is_some_and(|i| i < EARLY_MEMBERSHIP),
                "seed {seed}: first membership change at {first:?}"
            );
        }
        // Both the leader and a follower are demoted across seeds.
        let firsts: Vec<FaultKind> = (0..50)
            .map(|seed| schedule(seed, 40_000, 1000))
            .map(|a| {
                a.into_iter()
                    .find(|s| matches!(s.kind, FaultKind::MembershipChange(_)))
                    .map(|s| s.kind)
                    .unwrap()
            })
            .collect();
        assert!(firsts.contains(&FaultKind::MembershipChange(Target::Leader)));
        assert!(firsts.contains(&FaultKind::MembershipChange(Target::Follower)));
    }
}
