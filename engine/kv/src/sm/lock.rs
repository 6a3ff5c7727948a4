//! Locks: try-lock with a FIFO wait queue, unlock, lease renewal, and the
//! release that hands the lock to the next waiter with a fresh fencing token.

use bytes::Bytes;

use crate::error::KvError;
use crate::key::{parent_of, show};
use crate::store::{Holder, LockState, Node, NodeKind, Waiter};
use crate::types::{LockNotification, LockNotificationKind, LockOutcome, Outcome};

use super::{Ctx, KvStateMachine, deadline};

impl KvStateMachine {
    pub(super) fn try_lock(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        lease_ms: u64,
        wait_timeout_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "tryLock")?;
        self.check_key(key)?;
        self.check_ms("lease", lease_ms, false)?;
        self.check_ms("wait timeout", wait_timeout_ms, true)?;
        self.check_parent(key)?;
        let mut dir = parent_of(key);
        while !dir.is_empty() {
            if self.store.get(dir).is_some_and(|n| n.ttl.is_some()) {
                return Err(KvError::UnderTempDir(format!(
                    "lock {} would be under temporary directory {}",
                    show(key),
                    show(dir)
                )));
            }
            dir = parent_of(dir);
        }
        let client = ctx.client;
        let lease_deadline_ms = deadline(ctx.now_ms, lease_ms);
        let Some(n) = self.store.get(key) else {
            let holder = Holder {
                client_id: client,
                token: ctx.index,
                lease_deadline_ms,
            };
            let lock = LockState {
                holder,
                waiters: Default::default(),
            };
            let node = Node::new(NodeKind::Lock(Box::new(lock)), ctx.index, ctx.now_ms);
            ctx.event(key, Some(&node));
            self.store.insert(key, node);
            return Ok(Outcome::Lock(LockOutcome::Acquired {
                token: ctx.index,
                lease_deadline_ms,
            }));
        };
        let NodeKind::Lock(lock) = &n.kind else {
            return Err(KvError::NotLockNode(format!("{} is not a lock", show(key))));
        };
        if lock.holder.client_id == client {
            let token = lock.holder.token;
            let index = ctx.index;
            self.store.update(key, |n| {
                if let NodeKind::Lock(l) = &mut n.kind {
                    l.holder.lease_deadline_ms = lease_deadline_ms;
                    n.expire_version = index;
                }
            });
            return Ok(Outcome::Lock(LockOutcome::Acquired {
                token,
                lease_deadline_ms,
            }));
        }
        if wait_timeout_ms == 0 {
            return Ok(Outcome::Lock(LockOutcome::NotAcquired {
                holder: lock.holder.client_id,
            }));
        }
        let queued = lock.waiters.iter().position(|w| w.client_id == client);
        if queued.is_none() && lock.waiters.len() >= self.limits.max_lock_waiters {
            return Err(KvError::TooManyWaiters(format!(
                "lock {} already has {} waiters",
                show(key),
                lock.waiters.len()
            )));
        }
        let waiter = Waiter {
            client_id: client,
            lease_ms,
            wait_deadline_ms: deadline(ctx.now_ms, wait_timeout_ms),
        };
        let position = self
            .store
            .update(key, |n| {
                let NodeKind::Lock(l) = &mut n.kind else {
                    return 0;
                };
                match queued {
                    Some(p) => {
                        l.waiters[p] = waiter;
                        p
                    }
                    None => {
                        l.waiters.push_back(waiter);
                        l.waiters.len() - 1
                    }
                }
            })
            .unwrap_or(0);
        Ok(Outcome::Lock(LockOutcome::Queued {
            position: u32::try_from(position).unwrap_or(u32::MAX),
            wait_deadline_ms: waiter.wait_deadline_ms,
        }))
    }

    fn lock_of<'a>(&'a self, key: &[u8]) -> Result<&'a LockState, KvError> {
        match self.store.get(key).map(|n| &n.kind) {
            None => Err(KvError::NotFound(format!(
                "lock {} does not exist",
                show(key)
            ))),
            Some(NodeKind::Lock(l)) => Ok(l),
            Some(_) => Err(KvError::NotLockNode(format!("{} is not a lock", show(key)))),
        }
    }

    pub(super) fn unlock(&mut self, ctx: &mut Ctx, key: &[u8]) -> Result<Outcome, KvError> {
        self.require_client(ctx, "unlock")?;
        self.check_key(key)?;
        let lock = self.lock_of(key)?;
        if lock.holder.client_id == ctx.client {
            self.release(ctx, key);
            return Ok(Outcome::Done);
        }
        let Some(p) = lock.waiters.iter().position(|w| w.client_id == ctx.client) else {
            return Err(KvError::NotOwner(format!(
                "lock {} is held by client {}",
                show(key),
                lock.holder.client_id
            )));
        };
        self.store.update(key, |n| {
            if let NodeKind::Lock(l) = &mut n.kind {
                l.waiters.remove(p);
            }
        });
        Ok(Outcome::Done)
    }

    /// The holder leaves: the first waiter whose wait has not timed out becomes
    /// the holder with a fresh token (this index), or the lock node is removed.
    fn release(&mut self, ctx: &mut Ctx, key: &[u8]) {
        let (index, now) = (ctx.index, ctx.now_ms);
        let mut timed_out = Vec::new();
        let promoted = self
            .store
            .update(key, |n| {
                let NodeKind::Lock(l) = &mut n.kind else {
                    return None;
                };
                while let Some(w) = l.waiters.pop_front() {
                    if w.wait_deadline_ms <= now {
                        timed_out.push(w.client_id);
                        continue;
                    }
                    l.holder = Holder {
                        client_id: w.client_id,
                        token: index,
                        lease_deadline_ms: deadline(now, w.lease_ms),
                    };
                    n.expire_version = index;
                    n.update_index = index;
                    n.update_time_ms = now;
                    return Some(l.holder);
                }
                None
            })
            .flatten();
        let key_bytes = Bytes::copy_from_slice(key);
        for client_id in timed_out {
            ctx.notifications.push(LockNotification {
                client_id,
                key: key_bytes.clone(),
                kind: LockNotificationKind::WaitTimedOut,
            });
        }
        match promoted {
            Some(h) => {
                ctx.notifications.push(LockNotification {
                    client_id: h.client_id,
                    key: key_bytes,
                    kind: LockNotificationKind::Acquired {
                        token: h.token,
                        lease_deadline_ms: h.lease_deadline_ms,
                    },
                });
                ctx.event(key, self.store.get(key));
            }
            None => {
                self.store.remove(key);
                ctx.event(key, None);
            }
        }
    }

    /// Lock expiry: drops waiters whose wait passed and, when the lease passed
    /// and the version matches, releases the lock to the next waiter.
    pub(super) fn expire_lock(&mut self, ctx: &mut Ctx, key: &[u8], version_ok: bool) -> bool {
        let now = ctx.now_ms;
        let mut timed_out = Vec::new();
        let lease_due = self
            .store
            .update(key, |n| {
                let NodeKind::Lock(l) = &mut n.kind else {
                    return false;
                };
                l.waiters.retain(|w| {
                    let keep = w.wait_deadline_ms > now;
                    if !keep {
                        timed_out.push(w.client_id);
                    }
                    keep
                });
                l.holder.lease_deadline_ms <= now
            })
            .unwrap_or(false);
        let changed = !timed_out.is_empty();
        for client_id in timed_out {
            ctx.notifications.push(LockNotification {
                client_id,
                key: Bytes::copy_from_slice(key),
                kind: LockNotificationKind::WaitTimedOut,
            });
        }
        if version_ok && lease_due {
            tracing::debug!(index = ctx.index, key = %show(key), "kv lock lease expired");
            self.release(ctx, key);
            return true;
        }
        changed
    }

    pub(super) fn update_lease(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        lease_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "updateLease")?;
        self.check_key(key)?;
        self.check_ms("lease", lease_ms, false)?;
        let lock = self.lock_of(key)?;
        if lock.holder.client_id != ctx.client {
            return Err(KvError::NotOwner(format!(
                "lock {} is held by client {}",
                show(key),
                lock.holder.client_id
            )));
        }
        let lease_deadline_ms = deadline(ctx.now_ms, lease_ms);
        let index = ctx.index;
        self.store.update(key, |n| {
            if let NodeKind::Lock(l) = &mut n.kind {
                l.holder.lease_deadline_ms = lease_deadline_ms;
                n.expire_version = index;
            }
        });
        Ok(Outcome::Deadline {
            deadline_ms: lease_deadline_ms,
        })
    }
}
