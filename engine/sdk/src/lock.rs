//! [`Lock`]: a DtKV distributed lock with no generics or lifetimes.

use crate::args::{self, MAX_TTL_MS};
use crate::client::KvClient;
use crate::error::{Error, code};
use crate::op::OpFuture;
use crate::reply::{Reply, ReplyKind};
use crate::runtime::Runtime;

/// A distributed lock on one key, used through the session of the
/// [`KvClient`] that created it (see `docs/kv.md`, "Locks").
///
/// Like the client, every call exists as `*_async` returning an [`OpFuture`]
/// and as a blocking form (never call that on a runtime thread). Cloning is
/// cheap; clones share the hold.
#[derive(Clone)]
pub struct Lock {
    rt: Runtime,
    lock: dongting_client::DistributedLock,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lock.fmt(f)
    }
}

impl KvClient {
    /// A handle on the lock at `key` in `group`; nothing is sent until
    /// [`Lock::try_lock`]. Fails with INVALID_KEY for a key that breaks the
    /// key rules.
    pub fn create_lock(&self, group: u32, key: &[u8]) -> Result<Lock, Error> {
        let key = std::str::from_utf8(key).map_err(|_| {
            Error::new(
                code::KV_INVALID_KEY,
                "INVALID_KEY: the key is not valid UTF-8",
            )
        })?;
        dongting_kv::validate_key(key.as_bytes(), usize::MAX, false)
            .map_err(|e| Error::from_kv(&e))?;
        let lock = self
            .inner_client()
            .create_lock(group, key)
            .map_err(Error::from)?;
        Ok(Lock {
            rt: self.runtime().clone(),
            lock,
        })
    }
}

impl Lock {
    /// Acquires the lock with a lease of `lease_ms` (1 to [`MAX_TTL_MS`]),
    /// waiting up to `wait_timeout_ms` (0: not at all; at most
    /// [`MAX_TTL_MS`]); INVALID_ARGUMENT outside these ranges. Reply: kind
    /// `Lock`, `token` the fencing token, or 0 when the wait ended without
    /// the lock.
    pub fn try_lock_async(&self, lease_ms: u64, wait_timeout_ms: u64) -> OpFuture {
        if let Err(e) = args::lease("lease_ms", lease_ms)
            .and_then(|()| args::wait("wait_timeout_ms", wait_timeout_ms, MAX_TTL_MS))
        {
            return OpFuture::ready(Err(e));
        }
        let lock = self.lock.clone();
        self.rt.spawn_op(async move {
            let token = lock
                .try_lock(lease_ms, wait_timeout_ms)
                .await
                .map_err(Error::from)?;
            Ok(Reply {
                kind: ReplyKind::Lock,
                token: token.unwrap_or(0),
                ..Reply::default()
            })
        })
    }

    /// Blocking [`Lock::try_lock_async`]: the fencing token, 0 when not acquired.
    pub fn try_lock(&self, lease_ms: u64, wait_timeout_ms: u64) -> Result<u64, Error> {
        self.try_lock_async(lease_ms, wait_timeout_ms)
            .wait_result()
            .map(|r| r.token)
    }

    /// Releases the lock or leaves its queue; succeeds when this client
    /// neither holds nor waits for it.
    pub fn unlock_async(&self) -> OpFuture {
        let lock = self.lock.clone();
        self.rt.spawn_op(async move {
            lock.unlock().await.map_err(Error::from)?;
            Ok(Reply::default())
        })
    }

    /// Blocking [`Lock::unlock_async`].
    pub fn unlock(&self) -> Result<(), Error> {
        self.unlock_async().wait_result().map(|_| ())
    }

    /// Extends the lease to `lease_ms` from now (1 to [`MAX_TTL_MS`];
    /// NOT_OWNER when not held).
    pub fn update_lease_async(&self, lease_ms: u64) -> OpFuture {
        if let Err(e) = args::lease("lease_ms", lease_ms) {
            return OpFuture::ready(Err(e));
        }
        let lock = self.lock.clone();
        self.rt.spawn_op(async move {
            lock.update_lease(lease_ms).await.map_err(Error::from)?;
            Ok(Reply::default())
        })
    }

    /// Blocking [`Lock::update_lease_async`].
    pub fn update_lease(&self, lease_ms: u64) -> Result<(), Error> {
        self.update_lease_async(lease_ms).wait_result().map(|_| ())
    }

    /// True while this client holds the lock by its own count (the lease
    /// counted from the request that set it). Local: sends nothing.
    pub fn is_held(&self) -> bool {
        self.lock.is_held_by_current_client()
    }

    /// Milliseconds left of the lease by this client's count (0 when not held).
    pub fn lease_rest_ms(&self) -> u64 {
        self.lock.lease_rest_millis()
    }

    /// The fencing token of the current hold, 0 when not held.
    pub fn token(&self) -> u64 {
        self.lock.token().unwrap_or(0)
    }

    /// Releases the lock if held (blocking); the handle stays usable.
    pub fn close(&self) -> Result<(), Error> {
        self.unlock()
    }
}
