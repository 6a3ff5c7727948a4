//! Temporary nodes and their TTL: put and re-arm, temporary directories,
//! expiry, and the leader-side scheduling of expiry proposals.

use bytes::Bytes;

use crate::error::KvError;
use crate::key::show;
use crate::store::{Node, NodeKind, Ttl};
use crate::types::{ExpireCandidate, Outcome};

use super::{Ctx, KvStateMachine, deadline};

impl KvStateMachine {
    pub(super) fn put_temp(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        value: &Bytes,
        ttl_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "putTemp")?;
        self.check_key(key)?;
        self.check_value(key, value)?;
        self.check_ms("ttl", ttl_ms, false)?;
        self.check_parent(key)?;
        let ttl = Ttl {
            owner: ctx.client,
            deadline_ms: deadline(ctx.now_ms, ttl_ms),
        };
        match self.store.get(key) {
            None => {
                let mut node = Node::new(NodeKind::Value(value.clone()), ctx.index, ctx.now_ms);
                node.ttl = Some(ttl);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
            }
            Some(n) => {
                match n.kind {
                    NodeKind::Dir => {
                        return Err(KvError::IsDir(format!("{} is a directory", show(key))));
                    }
                    NodeKind::Lock(_) => {
                        return Err(KvError::IsLock(format!("{} is a lock", show(key))));
                    }
                    NodeKind::Value(_) => {}
                }
                self.check_owner(ctx, key, n)?;
                self.rearm(ctx, key, ttl);
                self.set_value(ctx, key, value.clone());
            }
        }
        Ok(Outcome::Deadline {
            deadline_ms: ttl.deadline_ms,
        })
    }

    fn check_owner(&self, ctx: &Ctx, key: &[u8], n: &Node) -> Result<(), KvError> {
        match n.ttl {
            None => Err(KvError::NotTempNode(format!(
                "{} is not a temporary node",
                show(key)
            ))),
            Some(t) if t.owner != ctx.client => Err(KvError::NotOwner(format!(
                "{} is a temporary node of client {}",
                show(key),
                t.owner
            ))),
            Some(_) => Ok(()),
        }
    }

    fn rearm(&mut self, ctx: &Ctx, key: &[u8], ttl: Ttl) {
        let index = ctx.index;
        self.store.update(key, |n| {
            n.ttl = Some(ttl);
            n.expire_version = index;
        });
    }

    pub(super) fn make_temp_dir(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        ttl_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "makeTempDir")?;
        self.check_key(key)?;
        self.check_ms("ttl", ttl_ms, false)?;
        self.check_parent(key)?;
        let ttl = Ttl {
            owner: ctx.client,
            deadline_ms: deadline(ctx.now_ms, ttl_ms),
        };
        match self.store.get(key) {
            None => {
                let mut node = Node::new(NodeKind::Dir, ctx.index, ctx.now_ms);
                node.ttl = Some(ttl);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
            }
            Some(n) => {
                match n.kind {
                    NodeKind::Value(_) => {
                        return Err(KvError::NotDir(format!(
                            "{} is a value, not a directory",
                            show(key)
                        )));
                    }
                    NodeKind::Lock(_) => {
                        return Err(KvError::IsLock(format!("{} is a lock", show(key))));
                    }
                    NodeKind::Dir => {}
                }
                self.check_owner(ctx, key, n)?;
                self.rearm(ctx, key, ttl);
            }
        }
        Ok(Outcome::Deadline {
            deadline_ms: ttl.deadline_ms,
        })
    }

    pub(super) fn update_ttl(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        ttl_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "updateTtl")?;
        self.check_key(key)?;
        self.check_ms("ttl", ttl_ms, false)?;
        let Some(n) = self.store.get(key) else {
            return Err(KvError::NotFound(format!("{} does not exist", show(key))));
        };
        self.check_owner(ctx, key, n)?;
        let ttl = Ttl {
            owner: ctx.client,
            deadline_ms: deadline(ctx.now_ms, ttl_ms),
        };
        self.rearm(ctx, key, ttl);
        Ok(Outcome::Deadline {
            deadline_ms: ttl.deadline_ms,
        })
    }

    /// Applies a leader's expiry proposal. Nothing happens (and `expired` is
    /// false) when the node is gone, was re-armed since (its expire version is
    /// not `expected_version`), or its deadline is after this command's time.
    pub(super) fn expire(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        expected_version: u64,
    ) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        let Some(n) = self.store.get(key) else {
            return Ok(Outcome::Expire { expired: false });
        };
        let version_ok = n.expire_version == expected_version;
        if let NodeKind::Lock(_) = n.kind {
            let expired = self.expire_lock(ctx, key, version_ok);
            return Ok(Outcome::Expire { expired });
        }
        let due = n.ttl.is_some_and(|t| t.deadline_ms <= ctx.now_ms);
        if !(version_ok && due) {
            return Ok(Outcome::Expire { expired: false });
        }
        // The whole subtree goes in this one entry, deepest first, so no reader
        // ever sees a child without its parent.
        for k in self.store.subtree_post_order(key) {
            self.store.remove(&k);
            ctx.event(&k, None);
        }
        self.store.remove(key);
        ctx.event(key, None);
        tracing::debug!(index = ctx.index, key = %show(key), "kv temporary node expired");
        Ok(Outcome::Expire { expired: true })
    }

    // ----- expiry scheduling (leader side) -----

    /// Nodes whose deadline is at or before `now_ms` (the leader's wall clock),
    /// earliest first, at most `max`. The leader proposes
    /// `Op::Expire { key, expected_version }` for each; proposing the same
    /// candidate twice is harmless (the second apply is a no-op).
    /// Cost: O(log n + max).
    pub fn expired_candidates(&self, now_ms: u64, max: usize) -> Vec<ExpireCandidate> {
        let mut out: Vec<ExpireCandidate> = Vec::new();
        for (d, key) in self.store.due(now_ms) {
            if out.len() >= max {
                break;
            }
            if let Some(n) = self.store.get(key) {
                out.push(ExpireCandidate {
                    key: key.clone(),
                    expected_version: n.expire_version,
                    deadline_ms: d,
                });
            }
        }
        out
    }

    /// The earliest deadline in state (leader wall-clock ms), for arming a timer.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.store.next_deadline()
    }
}
