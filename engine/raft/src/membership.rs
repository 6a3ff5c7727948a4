//! Group configuration and joint consensus.
//!
//! A configuration is a set of voting members plus non-voting observers. A change
//! goes through three log entries driven by admin operations:
//! `ConfigPrepare(target)` enters the joint configuration (old and new members must
//! both form a quorum for commit and election), `ConfigCommit(prepare_index)` moves
//! to the target, `ConfigAbort(prepare_index)` returns to the old configuration.
//! A configuration entry takes effect on a node when the node learns that it is
//! committed (the same rule as etcd's raft, which applies changes after commit).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::types::NodeId;

/// The target of a membership change: new members and new observers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigTarget {
    /// Voting members (sorted, unique).
    pub members: Vec<NodeId>,
    /// Observers: receive the log, never count toward a quorum (sorted, unique).
    pub observers: Vec<NodeId>,
}

/// The joint half of a configuration: what the group moves to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JointConfig {
    /// Index of the `ConfigPrepare` entry that started the joint phase.
    pub prepare_index: u64,
    /// The target configuration.
    pub target: ConfigTarget,
}

/// How the last joint phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Index of the prepare entry that was resolved.
    pub prepare_index: u64,
    /// `true` when committed (moved to the target), `false` when aborted.
    pub committed: bool,
}

/// The configuration in force on a node, persisted opaquely by the storage crate
/// (see [`Membership::encode`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Log index of the entry that produced this configuration (0 for the
    /// bootstrap configuration).
    pub index: u64,
    /// Voting members of the current (old, while joint) configuration.
    pub members: Vec<NodeId>,
    /// Observers of the current configuration.
    pub observers: Vec<NodeId>,
    /// Present while a change is prepared but not yet committed or aborted.
    pub joint: Option<JointConfig>,
    /// How the most recent joint phase ended, for idempotent admin operations.
    pub last_resolution: Option<Resolution>,
}

const MAGIC: u8 = 0xD7;
const VERSION: u8 = 1;

fn normalize(ids: &[NodeId]) -> Vec<NodeId> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

impl ConfigTarget {
    /// Build a validated target: members non-empty, no id 0, members and
    /// observers disjoint. Duplicates are removed.
    pub fn new(members: &[NodeId], observers: &[NodeId]) -> Result<ConfigTarget, DecodeError> {
        let members = normalize(members);
        let observers = normalize(observers);
        if members.is_empty() {
            return Err(DecodeError::Invalid(
                "a configuration needs at least one member",
            ));
        }
        if members.contains(&0) || observers.contains(&0) {
            return Err(DecodeError::Invalid("node id 0 is reserved"));
        }
        if members.iter().any(|m| observers.binary_search(m).is_ok()) {
            return Err(DecodeError::Invalid(
                "a node cannot be both member and observer",
            ));
        }
        Ok(ConfigTarget { members, observers })
    }

    /// Encode as the payload of a `ConfigPrepare` entry. Allocates once.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(8 + 8 * (self.members.len() + self.observers.len()));
        put_ids(&mut b, &self.members);
        put_ids(&mut b, &self.observers);
        b.freeze()
    }

    /// Decode a `ConfigPrepare` payload, validating it.
    pub fn decode(data: &[u8]) -> Result<ConfigTarget, DecodeError> {
        let mut r = Reader { buf: data, pos: 0 };
        let members = r.ids()?;
        let observers = r.ids()?;
        r.finish()?;
        ConfigTarget::new(&members, &observers)
    }
}

fn put_ids(b: &mut BytesMut, ids: &[NodeId]) {
    b.put_u32_le(ids.len() as u32);
    for id in ids {
        b.put_u64_le(*id);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn ids(&mut self) -> Result<Vec<NodeId>, DecodeError> {
        let n = self.u32()? as usize;
        if n > (self.buf.len() - self.pos) / 8 {
            return Err(DecodeError::Truncated);
        }
        (0..n).map(|_| self.u64()).collect()
    }
    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return Err(DecodeError::Invalid("trailing bytes"));
        }
        Ok(())
    }
}

/// Encode a prepare index as the payload of a `ConfigCommit`/`ConfigAbort` entry.
pub fn encode_prepare_index(index: u64) -> Bytes {
    Bytes::copy_from_slice(&index.to_le_bytes())
}

/// Decode the payload of a `ConfigCommit`/`ConfigAbort` entry.
pub fn decode_prepare_index(data: &[u8]) -> Result<u64, DecodeError> {
    let mut r = Reader { buf: data, pos: 0 };
    let v = r.u64()?;
    r.finish()?;
    Ok(v)
}

impl Membership {
    /// A bootstrap configuration (index 0, not joint). Ids are sorted and
    /// deduplicated.
    pub fn new(members: &[NodeId], observers: &[NodeId]) -> Membership {
        Membership {
            index: 0,
            members: normalize(members),
            observers: normalize(observers),
            joint: None,
            last_resolution: None,
        }
    }

    /// Whether a change is in progress.
    pub fn is_joint(&self) -> bool {
        self.joint.is_some()
    }

    /// Whether `id` votes (in either half while joint).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members.contains(&id)
            || self
                .joint
                .as_ref()
                .is_some_and(|j| j.target.members.contains(&id))
    }

    /// Whether `id` receives the log (voter or observer in either half).
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id)
            || self.observers.contains(&id)
            || self
                .joint
                .as_ref()
                .is_some_and(|j| j.target.observers.contains(&id))
    }

    /// Whether `id` is an observer and not a voter in any half.
    pub fn is_observer(&self, id: NodeId) -> bool {
        self.contains(id) && !self.is_voter(id)
    }

    /// Every node that receives the log, sorted, without duplicates. Allocates.
    pub fn all_nodes(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .members
            .iter()
            .chain(&self.observers)
            .copied()
            .collect();
        if let Some(j) = &self.joint {
            v.extend(j.target.members.iter().chain(&j.target.observers));
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether a quorum holds, given a predicate over voters: a majority of the
    /// members and, while joint, also a majority of the target members.
    pub fn quorum(&self, mut ok: impl FnMut(NodeId) -> bool) -> bool {
        let half = |set: &[NodeId], ok: &mut dyn FnMut(NodeId) -> bool| {
            let n = set.iter().filter(|id| ok(**id)).count();
            n * 2 > set.len()
        };
        if !half(&self.members, &mut ok) {
            return false;
        }
        match &self.joint {
            Some(j) => half(&j.target.members, &mut ok),
            None => true,
        }
    }

    /// The largest value `v` such that a quorum (joint aware) has `value(id) >= v`.
    /// `scratch` is reused to avoid allocation.
    pub fn quorum_min(&self, scratch: &mut Vec<u64>, mut value: impl FnMut(NodeId) -> u64) -> u64 {
        let mut half = |set: &[NodeId]| -> u64 {
            if set.is_empty() {
                return u64::MAX;
            }
            scratch.clear();
            scratch.extend(set.iter().map(|id| value(*id)));
            scratch.sort_unstable_by(|a, b| b.cmp(a));
            scratch[set.len() / 2]
        };
        let a = half(&self.members);
        match &self.joint {
            Some(j) => a.min(half(&j.target.members)),
            None => a,
        }
    }

    /// Stable binary encoding (versioned): persisted opaquely inside hard state and
    /// snapshot metadata. Allocates once.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        b.put_u8(MAGIC);
        b.put_u8(VERSION);
        b.put_u64_le(self.index);
        put_ids(&mut b, &self.members);
        put_ids(&mut b, &self.observers);
        match &self.joint {
            Some(j) => {
                b.put_u8(1);
                b.put_u64_le(j.prepare_index);
                put_ids(&mut b, &j.target.members);
                put_ids(&mut b, &j.target.observers);
            }
            None => b.put_u8(0),
        }
        match &self.last_resolution {
            Some(r) => {
                b.put_u8(1);
                b.put_u64_le(r.prepare_index);
                b.put_u8(u8::from(r.committed));
            }
            None => b.put_u8(0),
        }
        b.freeze()
    }

    /// Decode [`Membership::encode`] output; any malformed input is an error.
    pub fn decode(data: &[u8]) -> Result<Membership, DecodeError> {
        let mut r = Reader { buf: data, pos: 0 };
        if r.u8()? != MAGIC {
            return Err(DecodeError::Invalid("bad membership magic"));
        }
        let v = r.u8()?;
        if v != VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let index = r.u64()?;
        let members = r.ids()?;
        let observers = r.ids()?;
        let joint = match r.u8()? {
            0 => None,
            1 => {
                let prepare_index = r.u64()?;
                let m = r.ids()?;
                let o = r.ids()?;
                Some(JointConfig {
                    prepare_index,
                    target: ConfigTarget::new(&m, &o)?,
                })
            }
            _ => return Err(DecodeError::Invalid("bad joint flag")),
        };
        let last_resolution = match r.u8()? {
            0 => None,
            1 => {
                let prepare_index = r.u64()?;
                let committed = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("bad resolution flag")),
                };
                Some(Resolution {
                    prepare_index,
                    committed,
                })
            }
            _ => return Err(DecodeError::Invalid("bad resolution flag")),
        };
        r.finish()?;
        Ok(Membership {
            index,
            members,
            observers,
            joint,
            last_resolution,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        let mut m = Membership::new(&[3, 1, 2], &[7]);
        m.index = 42;
        m.joint = Some(JointConfig {
            prepare_index: 42,
            target: ConfigTarget::new(&[1, 2, 4], &[3]).unwrap(),
        });
        m.last_resolution = Some(Resolution {
            prepare_index: 9,
            committed: false,
        });
        let b = m.encode();
        assert_eq!(Membership::decode(&b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(Membership::decode(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = b.to_vec();
        bad.push(0);
        assert!(Membership::decode(&bad).is_err());
    }

    #[test]
    fn target_validation() {
        assert!(ConfigTarget::new(&[], &[1]).is_err());
        assert!(ConfigTarget::new(&[1], &[1]).is_err());
        assert!(ConfigTarget::new(&[0], &[]).is_err());
        let t = ConfigTarget::new(&[2, 1, 2], &[5]).unwrap();
        assert_eq!(t.members, vec![1, 2]);
        assert_eq!(ConfigTarget::decode(&t.encode()).unwrap(), t);
        assert!(ConfigTarget::decode(&[1, 0, 0, 0]).is_err());
    }

    #[test]
    fn joint_quorum_needs_both_halves() {
        let mut m = Membership::new(&[1, 2, 3], &[]);
        assert!(m.quorum(|id| id == 1 || id == 2));
        m.joint = Some(JointConfig {
            prepare_index: 5,
            target: ConfigTarget::new(&[3, 4, 5], &[]).unwrap(),
        });
        assert!(!m.quorum(|id| id == 1 || id == 2));
        assert!(m.quorum(|id| [1, 2, 3, 4].contains(&id)));
        let mut s = Vec::new();
        // old: 1->10, 2->8, 3->5 => 8; new: 3->5,4->9,5->1 => 5
        let v = m.quorum_min(&mut s, |id| match id {
            1 => 10,
            2 => 8,
            3 => 5,
            4 => 9,
            _ => 1,
        });
        assert_eq!(v, 5);
    }
}
