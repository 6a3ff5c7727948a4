//! The one error type of DtKV, with stable numeric codes.
//!
//! Codes below 100 keep the numbers of the Java original's `KvCodes` where the
//! meaning is the same, so tools and users moving from it see familiar values;
//! codes from 100 on are new. A code never changes meaning once released.

/// Declares [`KvError`] with its code table in one place, so the variant, its
/// numeric code, its stable name and its wire decoding cannot drift apart.
macro_rules! kv_errors {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal, $name:ident, $fmt:literal; )*) => {
        /// A DtKV failure. Each variant carries a human-readable detail naming the
        /// problem (which key, which limit); [`KvError::code`] is the stable number
        /// sent on the wire and [`KvError::name`] its stable symbolic name.
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        pub enum KvError {
            $( $(#[doc = $doc])* #[error($fmt, detail = .0)] $variant(String), )*
        }

        impl KvError {
            $(
                #[doc = concat!("The code of [`KvError::", stringify!($variant), "`].")]
                pub const $name: u16 = $code;
            )*

            /// Every code with its name and meaning, in code order: the one
            /// table the SDK, the bindings and the docs are checked against.
            pub const CODES: &'static [KvCode] = &[
                $( KvCode {
                    code: $code,
                    name: stringify!($name),
                    meaning: concat!($($doc),*).trim_ascii(),
                }, )*
            ];

            /// The stable numeric code of this error (never 0: 0 means success).
            pub fn code(&self) -> u16 {
                match self { $( KvError::$variant(_) => $code, )* }
            }

            /// The stable symbolic name of this error's code, e.g. `"INVALID_KEY"`.
            pub fn name(&self) -> &'static str {
                match self { $( KvError::$variant(_) => stringify!($name), )* }
            }

            /// The detail text (without the code name), as carried on the wire.
            pub fn detail(&self) -> &str {
                match self { $( KvError::$variant(d) => d, )* }
            }

            /// Rebuilds an error from a wire code and detail. An unknown code becomes
            /// [`KvError::Internal`] with the code in its detail, so a newer server's
            /// error is still reported rather than lost.
            pub fn from_code(code: u16, detail: impl Into<String>) -> KvError {
                let detail = detail.into();
                match code {
                    $( $code => KvError::$variant(detail), )*
                    other => KvError::Internal(format!("unknown error code {other}: {detail}")),
                }
            }

            /// Every code with its name, in code order (used by docs and tests).
            pub fn all_codes() -> &'static [(u16, &'static str)] {
                &[ $( ($code, stringify!($name)), )* ]
            }
        }
    };
}

kv_errors! {
    /// An unexpected internal condition; the detail says what.
    Internal = 1, INTERNAL, "INTERNAL: {detail}";
    /// The key (or, for remove/unlock/updateTtl, the node to act on) does not exist.
    NotFound = 2, NOT_FOUND, "NOT_FOUND: {detail}";
    /// A value operation hit a directory (put, cas, putTemp on a dir key).
    IsDir = 4, IS_DIR, "IS_DIR: {detail}";
    /// A directory operation hit a value (mkdir over a value, list of a value).
    NotDir = 5, NOT_DIR, "NOT_DIR: {detail}";
    /// The key's parent exists but is not a directory.
    ParentNotDir = 6, PARENT_NOT_DIR, "PARENT_NOT_DIR: {detail}";
    /// The key breaks the key syntax rules (see docs/kv.md).
    InvalidKey = 7, INVALID_KEY, "INVALID_KEY: {detail}";
    /// The value is not acceptable (an empty value for put).
    InvalidValue = 8, INVALID_VALUE, "INVALID_VALUE: {detail}";
    /// The key's parent directory does not exist.
    ParentNotFound = 9, PARENT_NOT_FOUND, "PARENT_NOT_FOUND: {detail}";
    /// Remove of a directory that still has children.
    DirNotEmpty = 10, DIR_NOT_EMPTY, "DIR_NOT_EMPTY: {detail}";
    /// The key is longer than the configured limit.
    KeyTooLong = 11, KEY_TOO_LONG, "KEY_TOO_LONG: {detail}";
    /// The value is larger than the configured limit.
    ValueTooLarge = 12, VALUE_TOO_LARGE, "VALUE_TOO_LARGE: {detail}";
    /// compareAndSet found a different current value.
    CasMismatch = 14, CAS_MISMATCH, "CAS_MISMATCH: {detail}";
    /// The temporary node or lock belongs to another client.
    NotOwner = 18, NOT_OWNER, "NOT_OWNER: {detail}";
    /// A TTL operation on a node that is not temporary.
    NotTempNode = 19, NOT_TEMP_NODE, "NOT_TEMP_NODE: {detail}";
    /// A plain write (put, mkdir, cas) on a temporary node.
    IsTempNode = 20, IS_TEMP_NODE, "IS_TEMP_NODE: {detail}";
    /// A TTL, lease or wait time of zero or above the configured maximum.
    InvalidTtl = 22, INVALID_TTL, "INVALID_TTL: {detail}";
    /// A lock may not be created under a temporary directory.
    UnderTempDir = 24, UNDER_TEMP_DIR, "UNDER_TEMP_DIR: {detail}";
    /// The key's parent is a lock node, which has no children.
    ParentIsLock = 25, PARENT_IS_LOCK, "PARENT_IS_LOCK: {detail}";
    /// A lock operation on a node that is not a lock.
    NotLockNode = 26, NOT_LOCK_NODE, "NOT_LOCK_NODE: {detail}";
    /// A value or directory operation on a lock node.
    IsLock = 27, IS_LOCK, "IS_LOCK: {detail}";
    /// The bytes are not a valid DtKV command, result or request.
    InvalidCommand = 100, INVALID_COMMAND, "INVALID_COMMAND: {detail}";
    /// A batch with no keys or more keys than the configured limit.
    TooManyKeys = 101, TOO_MANY_KEYS, "TOO_MANY_KEYS: {detail}";
    /// A retried write whose original result is no longer kept; this attempt was
    /// not applied, and whether an earlier attempt was is unknown.
    SeqTooOld = 102, SEQ_TOO_OLD, "SEQ_TOO_OLD: {detail}";
    /// The runtime applied a raft index not above the last applied one.
    IndexNotIncreasing = 103, INDEX_NOT_INCREASING, "INDEX_NOT_INCREASING: {detail}";
    /// Watch resume point older than the retained event history: re-read.
    HistoryCompacted = 104, HISTORY_COMPACTED, "HISTORY_COMPACTED: {detail}";
    /// A snapshot chunk stream that is malformed, truncated or out of order.
    InvalidSnapshot = 105, INVALID_SNAPSHOT, "INVALID_SNAPSHOT: {detail}";
    /// The lock already has the configured maximum number of waiters.
    TooManyWaiters = 106, TOO_MANY_WAITERS, "TOO_MANY_WAITERS: {detail}";
}

/// One row of [`KvError::CODES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCode {
    /// The stable number sent on the wire.
    pub code: u16,
    /// The stable symbolic name, e.g. `"NOT_FOUND"`.
    pub name: &'static str,
    /// One sentence saying when the code is returned.
    pub meaning: &'static str,
}

impl KvCode {
    /// Whether an error with this code may be resent unchanged
    /// ([`KvError::is_retryable`]).
    pub fn retryable(&self) -> bool {
        KvError::from_code(self.code, String::new()).is_retryable()
    }
}

impl KvError {
    /// Whether the caller may resend the same request unchanged and possibly
    /// succeed. Only conditions that depend on other writes (CAS mismatch, a busy
    /// lock queue) qualify; a malformed request never does.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KvError::TooManyWaiters(_) | KvError::Internal(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &(code, name) in KvError::all_codes() {
            assert!(code != 0, "0 is reserved for success");
            assert!(seen.insert(code), "duplicate code {code}");
            let e = KvError::from_code(code, "d");
            assert_eq!(e.code(), code);
            assert_eq!(e.name(), name);
            assert_eq!(e.detail(), "d");
            assert!(e.to_string().starts_with(name));
        }
    }

    #[test]
    fn the_code_table_matches_the_variants() {
        let pairs: Vec<(u16, &str)> = KvError::CODES.iter().map(|c| (c.code, c.name)).collect();
        assert_eq!(pairs, KvError::all_codes());
        assert_eq!(KvError::CAS_MISMATCH, 14);
        for c in KvError::CODES {
            assert!(
                !c.meaning.is_empty() && !c.meaning.starts_with(' '),
                "{c:?}"
            );
        }
        let seq = KvError::CODES
            .iter()
            .find(|c| c.code == KvError::SEQ_TOO_OLD);
        assert!(seq.is_some_and(|c| c.meaning.contains("was not applied")));
        assert!(
            KvError::CODES
                .iter()
                .any(|c| c.code == KvError::TOO_MANY_WAITERS && c.retryable())
        );
    }

    #[test]
    fn unknown_code_is_kept_in_detail() {
        let e = KvError::from_code(999, "x");
        assert_eq!(e.code(), 1);
        assert!(e.detail().contains("999"));
    }
}
