//! Range checks of the numeric arguments: call timeouts, waits, TTLs and
//! lock leases. Every binding passes its numbers through them, so an out-of-
//! range value fails the same way in every language, before anything is
//! sent, with a message naming the argument, its range and the value given.

use std::time::Duration;

use crate::error::{Error, code};

/// Longest per-call timeout, and longest single wait for a watch event,
/// accepted: one day.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// Longest TTL, lock lease and lock wait accepted: 30 days, the longest
/// DtKV takes (`max_ttl_ms`).
pub const MAX_TTL_MS: u64 = dongting_kv::MAX_TTL_MS;

/// The message of an out-of-range argument.
pub(crate) fn out_of_range(name: &str, min: u64, max: u64, got: u64) -> String {
    format!("{name} must be between {min} and {max}, got {got}")
}

/// Most children one list page holds (a limit of 0 asks for the default, 1,000).
pub const MAX_PAGE_LIMIT: u64 = dongting_client::MAX_LIST_PAGE as u64;

/// A list page's limit: 0 (the default) to [`MAX_PAGE_LIMIT`].
pub(crate) fn page_limit(n: u64) -> Result<u32, Error> {
    if n > MAX_PAGE_LIMIT {
        return Err(Error::invalid_argument(out_of_range(
            "limit",
            0,
            MAX_PAGE_LIMIT,
            n,
        )));
    }
    Ok(n as u32)
}

/// A call timeout: 1 to [`MAX_TIMEOUT_MS`] (INVALID_ARGUMENT otherwise).
pub(crate) fn timeout(name: &str, ms: u64) -> Result<Duration, Error> {
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(Error::invalid_argument(out_of_range(
            name,
            1,
            MAX_TIMEOUT_MS,
            ms,
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// A wait that may be zero (do not wait): 0 to `max` (INVALID_ARGUMENT
/// otherwise).
pub(crate) fn wait(name: &str, ms: u64, max: u64) -> Result<Duration, Error> {
    if ms > max {
        return Err(Error::invalid_argument(out_of_range(name, 0, max, ms)));
    }
    Ok(Duration::from_millis(ms))
}

/// A lock lease: 1 to [`MAX_TTL_MS`] (INVALID_ARGUMENT otherwise).
pub(crate) fn lease(name: &str, ms: u64) -> Result<(), Error> {
    if ms == 0 || ms > MAX_TTL_MS {
        return Err(Error::invalid_argument(out_of_range(
            name, 1, MAX_TTL_MS, ms,
        )));
    }
    Ok(())
}

/// The TTL of a temporary node: 1 to [`MAX_TTL_MS`]. Outside it the error is
/// INVALID_TTL, the code DtKV itself answers for such a TTL.
pub(crate) fn ttl(ms: u64) -> Result<Duration, Error> {
    if ms == 0 || ms > MAX_TTL_MS {
        return Err(Error::new(
            code::KV_INVALID_TTL,
            format!("INVALID_TTL: {}", out_of_range("ttl_ms", 1, MAX_TTL_MS, ms)),
        ));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_range_refuses_just_outside_it_and_names_the_value() {
        assert!(timeout("timeout_ms", 1).is_ok());
        assert!(timeout("timeout_ms", MAX_TIMEOUT_MS).is_ok());
        for bad in [0, MAX_TIMEOUT_MS + 1, u64::MAX] {
            let e = timeout("timeout_ms", bad).unwrap_err();
            assert_eq!(e.code(), code::INVALID_ARGUMENT);
            assert_eq!(
                e.message(),
                format!("timeout_ms must be between 1 and 86400000, got {bad}")
            );
        }
        assert!(wait("wait_ms", 0, 5).is_ok());
        assert!(wait("wait_ms", 5, 5).is_ok());
        assert_eq!(
            wait("wait_ms", 6, 5).unwrap_err().message(),
            "wait_ms must be between 0 and 5, got 6"
        );
        assert!(lease("lease_ms", MAX_TTL_MS).is_ok());
        for bad in [0, MAX_TTL_MS + 1] {
            assert_eq!(
                lease("lease_ms", bad).unwrap_err().code(),
                code::INVALID_ARGUMENT
            );
        }
        assert_eq!(ttl(MAX_TTL_MS), Ok(Duration::from_millis(2_592_000_000)));
        for bad in [0, MAX_TTL_MS + 1] {
            let e = ttl(bad).unwrap_err();
            assert_eq!(e.code(), code::KV_INVALID_TTL);
            assert!(
                e.message()
                    .ends_with(&format!("between 1 and 2592000000, got {bad}")),
                "{}",
                e.message()
            );
        }
    }
}
