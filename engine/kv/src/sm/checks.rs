//! Checks shared by the operations: batch size, key, value, TTL and lease
//! bounds, the parent directory and the client that owns a session.

use crate::error::KvError;
use crate::key::{parent_of, show, validate_key};
use crate::store::NodeKind;

use super::{Ctx, KvStateMachine};

impl KvStateMachine {
    pub(super) fn check_batch(&self, n: usize) -> Result<(), KvError> {
        if n == 0 || n > self.limits.max_batch_keys {
            return Err(KvError::TooManyKeys(format!(
                "a batch needs 1 to {} keys, got {n}",
                self.limits.max_batch_keys
            )));
        }
        Ok(())
    }

    pub(super) fn check_key(&self, key: &[u8]) -> Result<(), KvError> {
        validate_key(key, self.limits.max_key_bytes, false)
    }

    pub(super) fn check_value(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        if value.is_empty() {
            return Err(KvError::InvalidValue(format!(
                "value for {} is empty (use remove to delete, mkdir for a directory)",
                show(key)
            )));
        }
        if value.len() > self.limits.max_value_bytes {
            return Err(KvError::ValueTooLarge(format!(
                "value for {} is {} bytes, limit is {}",
                show(key),
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_ms(&self, what: &str, ms: u64, allow_zero: bool) -> Result<(), KvError> {
        if (ms == 0 && !allow_zero) || ms > self.limits.max_ttl_ms {
            let min = u64::from(!allow_zero);
            return Err(KvError::InvalidTtl(format!(
                "{what} is {ms} ms, must be {min} to {} ms",
                self.limits.max_ttl_ms
            )));
        }
        Ok(())
    }

    /// The parent of `key` must exist and be a plain or temporary directory.
    pub(super) fn check_parent(&self, key: &[u8]) -> Result<(), KvError> {
        let parent = parent_of(key);
        if parent.is_empty() {
            return Ok(());
        }
        match self.store.get(parent).map(|n| &n.kind) {
            None => Err(KvError::ParentNotFound(format!(
                "parent directory {} of {} does not exist",
                show(parent),
                show(key)
            ))),
            Some(NodeKind::Dir) => Ok(()),
            Some(NodeKind::Value(_)) => Err(KvError::ParentNotDir(format!(
                "parent {} of {} is a value, not a directory",
                show(parent),
                show(key)
            ))),
            Some(NodeKind::Lock(_)) => Err(KvError::ParentIsLock(format!(
                "parent {} of {} is a lock",
                show(parent),
                show(key)
            ))),
        }
    }

    pub(super) fn require_client(&self, ctx: &Ctx, what: &str) -> Result<(), KvError> {
        if ctx.client == 0 {
            return Err(KvError::InvalidCommand(format!(
                "{what} needs a client id (the owner); client id 0 means no session"
            )));
        }
        Ok(())
    }
}
