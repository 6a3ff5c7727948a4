//! Planted bugs that prove the fault runner (`tests/robustness`) catches what
//! it claims to catch.
//!
//! Only a build with the `failpoints` feature contains them; it turns them on
//! from the `DONGTING_FAILPOINT` environment variable (names separated by `,`
//! or `|`), read once when the node starts. A build without the feature
//! refuses to start when the variable is set, so a proof never runs against a
//! binary that silently ignores it. Never enable the feature in production.
//!
//! | name | planted bug |
//! |---|---|
//! | `stale_leader_read` | a node that believes it leads answers linearizable reads from its own state (no ReadIndex or lease check), and a leader that loses its quorum does not step down |
//! | `ack_before_commit` | the leader acknowledges a put as soon as it is appended to its own log, before a quorum stores it |
//! | `lease_without_quorum` | raft core: lease reads without a quorum-acknowledged lease |
//! | `count_unpersisted_self` | raft core: the leader counts its unsynced entries toward the commit quorum |
//! | `lock_grant_while_held` | a try-lock that found the lock held by another client is answered as granted |
//! | `expire_early` | the leader counts expiries with a clock 250 ms ahead, so temporary nodes (and leases) run out 250 ms early |

/// The environment variable that names the failpoints to turn on.
pub const ENV: &str = "DONGTING_FAILPOINT";

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failpoint {
    /// Linearizable reads served locally by whoever believes it leads; no
    /// step-down on a lost quorum.
    StaleLeaderRead,
    /// Puts acknowledged on append, before commit.
    AckBeforeCommit,
    /// Raft core: lease reads without a quorum-acknowledged lease.
    LeaseWithoutQuorum,
    /// Raft core: unsynced leader entries count toward the quorum.
    CountUnpersistedSelf,
    /// A try-lock refused because another client holds the lock is answered
    /// as granted.
    LockGrantWhileHeld,
    /// The leader proposes expiries as if its clock were
    /// [`EXPIRE_EARLY_MS`] ahead.
    ExpireEarly,
}

/// How far ahead `expire_early` sets the clock that expiries are counted
/// with.
pub(crate) const EXPIRE_EARLY_MS: u64 = 250;

#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
const NAMES: &[(&str, Failpoint)] = &[
    ("stale_leader_read", Failpoint::StaleLeaderRead),
    ("ack_before_commit", Failpoint::AckBeforeCommit),
    ("lease_without_quorum", Failpoint::LeaseWithoutQuorum),
    ("count_unpersisted_self", Failpoint::CountUnpersistedSelf),
    ("lock_grant_while_held", Failpoint::LockGrantWhileHeld),
    ("expire_early", Failpoint::ExpireEarly),
];

#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
/// Parses a failpoint list (`a,b` or `a|b`); empty text names none.
pub(crate) fn parse(text: &str) -> Result<Vec<Failpoint>, String> {
    let mut out = Vec::new();
    for name in text
        .split([',', '|'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let Some((_, f)) = NAMES.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "{ENV}: unknown failpoint `{name}` (known: {})",
                known.join(", ")
            ));
        };
        out.push(*f);
    }
    Ok(out)
}

#[cfg(feature = "failpoints")]
mod imp {
    use super::{ENV, Failpoint, parse};
    use std::sync::OnceLock;

    static ACTIVE: OnceLock<Vec<Failpoint>> = OnceLock::new();

    /// Reads the environment once; the error names a bad entry.
    pub(crate) fn init() -> Result<(), String> {
        let list = parse(&std::env::var(ENV).unwrap_or_default())?;
        if !list.is_empty() {
            tracing::warn!("failpoints active (planted bugs, test builds only): {list:?}");
        }
        let _ = ACTIVE.set(list);
        Ok(())
    }

    /// Whether `f` is on.
    pub(crate) fn active(f: Failpoint) -> bool {
        ACTIVE.get().is_some_and(|l| l.contains(&f))
    }
}

#[cfg(not(feature = "failpoints"))]
mod imp {
    use super::{ENV, Failpoint};

    /// Refuses a failpoint request this build cannot honour.
    pub(crate) fn init() -> Result<(), String> {
        match std::env::var(ENV) {
            Ok(v) if !v.trim().is_empty() => Err(format!(
                "{ENV} is set to `{v}` but this build has no failpoints \
                 (build with the `failpoints` feature)"
            )),
            _ => Ok(()),
        }
    }

    /// Always off without the feature.
    #[inline(always)]
    pub(crate) fn active(_f: Failpoint) -> bool {
        false
    }
}

pub(crate) use imp::{active, init};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_are_refused() {
        assert_eq!(parse("").expect("empty"), vec![]);
        assert_eq!(
            parse("ack_before_commit|stale_leader_read").expect("two"),
            vec![Failpoint::AckBeforeCommit, Failpoint::StaleLeaderRead]
        );
        let e = parse("ack_before_commit,nope").expect_err("unknown");
        assert!(e.contains("unknown failpoint `nope`"), "{e}");
    }
}
