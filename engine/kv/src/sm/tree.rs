//! Plain values and directories: put, remove, mkdir and compare-and-set.

use bytes::Bytes;

use crate::error::KvError;
use crate::key::show;
use crate::store::{Node, NodeKind};
use crate::types::{NodeState, Outcome, WatchEvent};

use super::{Ctx, KvStateMachine};

impl KvStateMachine {
    pub(super) fn put(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        value: &Bytes,
    ) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        self.check_value(key, value)?;
        self.check_parent(key)?;
        // One lookup when the key exists: check and overwrite in place.
        let (index, now) = (ctx.index, ctx.now_ms);
        let updated = self.store.update(key, |n| {
            Self::check_plain_value(key, n)?;
            n.kind = NodeKind::Value(value.clone());
            n.update_index = index;
            n.update_time_ms = now;
            Ok(())
        });
        match updated {
            None => {
                let node = Node::new(NodeKind::Value(value.clone()), ctx.index, ctx.now_ms);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
                Ok(Outcome::Put { created: true })
            }
            Some(r) => {
                r?;
                ctx.events.push(WatchEvent {
                    index,
                    key: Bytes::copy_from_slice(key),
                    state: NodeState::Value,
                    value: value.clone(),
                });
                Ok(Outcome::Put { created: false })
            }
        }
    }

    /// A plain (non-temporary) value may be overwritten by put and cas.
    fn check_plain_value(key: &[u8], n: &Node) -> Result<(), KvError> {
        match n.kind {
            NodeKind::Dir => Err(KvError::IsDir(format!("{} is a directory", show(key)))),
            NodeKind::Lock(_) => Err(KvError::IsLock(format!("{} is a lock", show(key)))),
            NodeKind::Value(_) if n.ttl.is_some() => Err(KvError::IsTempNode(format!(
                "{} is a temporary node; use putTemp",
                show(key)
            ))),
            NodeKind::Value(_) => Ok(()),
        }
    }

    pub(super) fn set_value(&mut self, ctx: &mut Ctx, key: &[u8], value: Bytes) {
        let (index, now) = (ctx.index, ctx.now_ms);
        let event_value = value.clone();
        let updated = self.store.update(key, |n| {
            n.kind = NodeKind::Value(value);
            n.update_index = index;
            n.update_time_ms = now;
        });
        debug_assert!(updated.is_some(), "set_value on a missing key");
        ctx.events.push(WatchEvent {
            index,
            key: Bytes::copy_from_slice(key),
            state: NodeState::Value,
            value: event_value,
        });
    }

    pub(super) fn remove(&mut self, ctx: &mut Ctx, key: &[u8]) -> Result<(), KvError> {
        self.check_key(key)?;
        let Some(n) = self.store.get(key) else {
            return Err(KvError::NotFound(format!("{} does not exist", show(key))));
        };
        if let NodeKind::Lock(_) = n.kind {
            return Err(KvError::IsLock(format!(
                "{} is a lock; use unlock",
                show(key)
            )));
        }
        if let Some(ttl) = n.ttl
            && ttl.owner != ctx.client
        {
            return Err(KvError::NotOwner(format!(
                "{} is a temporary node of client {}",
                show(key),
                ttl.owner
            )));
        }
        if n.is_dir() && self.store.child_count(key) > 0 {
            return Err(KvError::DirNotEmpty(format!(
                "directory {} has {} children",
                show(key),
                self.store.child_count(key)
            )));
        }
        self.store.remove(key);
        ctx.event(key, None);
        Ok(())
    }

    pub(super) fn mkdir(&mut self, ctx: &mut Ctx, key: &[u8]) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        self.check_parent(key)?;
        match self.store.get(key) {
            None => {
                let node = Node::new(NodeKind::Dir, ctx.index, ctx.now_ms);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
                Ok(Outcome::Mkdir { created: true })
            }
            Some(n) => match n.kind {
                NodeKind::Dir if n.ttl.is_some() => Err(KvError::IsTempNode(format!(
                    "{} is a temporary directory; use makeTempDir",
                    show(key)
                ))),
                NodeKind::Dir => Ok(Outcome::Mkdir { created: false }),
                NodeKind::Value(_) => Err(KvError::NotDir(format!(
                    "{} is a value, not a directory",
                    show(key)
                ))),
                NodeKind::Lock(_) => Err(KvError::IsLock(format!("{} is a lock", show(key)))),
            },
        }
    }

    pub(super) fn compare_and_set(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        expected: &Bytes,
        new_value: &Bytes,
    ) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        if !new_value.is_empty() {
            self.check_value(key, new_value)?;
        }
        match self.store.get(key) {
            None => {
                if !expected.is_empty() {
                    return Err(KvError::CasMismatch(format!(
                        "{} is absent, expected a value",
                        show(key)
                    )));
                }
                if !new_value.is_empty() {
                    self.check_parent(key)?;
                    let node = Node::new(NodeKind::Value(new_value.clone()), ctx.index, ctx.now_ms);
                    ctx.event(key, Some(&node));
                    self.store.insert(key, node);
                }
                Ok(Outcome::Done)
            }
            Some(n) => {
                Self::check_plain_value(key, n)?;
                let NodeKind::Value(cur) = &n.kind else {
                    return Err(KvError::Internal("checked value is not a value".into()));
                };
                if expected.is_empty() {
                    return Err(KvError::CasMismatch(format!(
                        "{} exists, expected it absent",
                        show(key)
                    )));
                }
                if cur != expected {
                    return Err(KvError::CasMismatch(format!(
                        "{} holds a different value ({} bytes)",
                        show(key),
                        cur.len()
                    )));
                }
                if new_value.is_empty() {
                    self.store.remove(key);
                    ctx.event(key, None);
                } else {
                    self.set_value(ctx, key, new_value.clone());
                }
                Ok(Outcome::Done)
            }
        }
    }
}
