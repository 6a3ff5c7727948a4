//! Planted bugs that prove the fault runner (`tests/robustness`) catches what
//! it claims to catch on the client side.
//!
//! Only a build with the `failpoints` feature contains this module; every
//! bug is off until switched on. Never enable the feature in a release.
//!
//! | name | planted bug |
//! |---|---|
//! | `retryable_unknown` | a write whose attempt may have reached a server, and whose later attempts were all refused, fails with the last refusal (a `retryable` error) instead of UNKNOWN_OUTCOME |

use std::sync::atomic::{AtomicBool, Ordering};

static RETRYABLE_UNKNOWN: AtomicBool = AtomicBool::new(false);

/// Names of the planted bugs this build knows.
pub const NAMES: &[&str] = &["retryable_unknown"];

/// Switches the planted bugs named in `list` (`a,b`) on; the error names an
/// unknown one, and nothing is switched on then.
pub fn enable(list: &str) -> Result<(), String> {
    let names: Vec<&str> = list
        .split([',', '|'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(bad) = names.iter().find(|n| !NAMES.contains(n)) {
        return Err(format!(
            "unknown client failpoint `{bad}` (known: {})",
            NAMES.join(", ")
        ));
    }
    for n in names {
        if n == "retryable_unknown" {
            tracing::warn!("client failpoint active (planted bug, test builds only): {n}");
            RETRYABLE_UNKNOWN.store(true, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Whether `retryable_unknown` is on.
pub(crate) fn retryable_unknown() -> bool {
    RETRYABLE_UNKNOWN.load(Ordering::Relaxed)
}
