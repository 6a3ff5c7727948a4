//! Lock notifications pushed to clients (command [`CMD_KV_LOCK_PUSH`]).
//!
//! A push is a hint, not a promise: it is lost when the connection breaks or
//! leadership moved to a node that never saw the client's tryLock, so the
//! client also re-checks with a lock-info read (see `docs/kv.md`).

use bytes::Bytes;
use dongting_kv::LockNotificationKind;
use flatbuffers::FlatBufferBuilder;

use crate::codec::BodyError;
use crate::generated::lock_generated::dongting::server::fb as lfb;

/// Service port, server to client: a lock notification (PUSH, `LockPush`).
pub const CMD_KV_LOCK_PUSH: u16 = 125;

/// A decoded lock notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPush {
    /// The group of the lock.
    pub group_id: u32,
    /// Raft index of the entry that produced it.
    pub index: u64,
    /// The lock's key.
    pub key: Bytes,
    /// Acquired (with token and lease deadline) or wait timed out.
    pub kind: LockNotificationKind,
}

impl LockPush {
    /// Encodes the push body. Cost: one buffer of about the key's size.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(self.key.len() + 64);
        let key = fbb.create_vector(&self.key);
        let (kind, token, lease_deadline_ms) = match self.kind {
            LockNotificationKind::Acquired {
                token,
                lease_deadline_ms,
            } => (lfb::LockPushKind::Acquired, token, lease_deadline_ms),
            LockNotificationKind::WaitTimedOut => (lfb::LockPushKind::WaitTimedOut, 0, 0),
        };
        let root = lfb::LockPush::create(
            &mut fbb,
            &lfb::LockPushArgs {
                group_id: self.group_id,
                index: self.index,
                key: Some(key),
                kind,
                token,
                lease_deadline_ms,
            },
        );
        fbb.finish_minimal(root);
        let (buf, head) = fbb.collapse();
        let mut out = Bytes::from(buf);
        bytes::Buf::advance(&mut out, head);
        out
    }

    /// Verifies and decodes a push body.
    pub fn decode(body: &[u8]) -> Result<LockPush, BodyError> {
        let t = flatbuffers::root::<lfb::LockPush<'_>>(body)
            .map_err(|e| BodyError::new("lock push", e))?;
        let kind = match t.kind() {
            lfb::LockPushKind::Acquired => LockNotificationKind::Acquired {
                token: t.token(),
                lease_deadline_ms: t.lease_deadline_ms(),
            },
            lfb::LockPushKind::WaitTimedOut => LockNotificationKind::WaitTimedOut,
            other => {
                return Err(BodyError::new(
                    "lock push",
                    format!("unknown kind {}", other.0),
                ));
            }
        };
        let key = t
            .key()
            .map(|k| Bytes::copy_from_slice(k.bytes()))
            .ok_or_else(|| BodyError::new("lock push", "no key"))?;
        Ok(LockPush {
            group_id: t.group_id(),
            index: t.index(),
            key,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_round_trips() {
        for kind in [
            LockNotificationKind::Acquired {
                token: 42,
                lease_deadline_ms: 1_700_000_000_123,
            },
            LockNotificationKind::WaitTimedOut,
        ] {
            let p = LockPush {
                group_id: 7,
                index: 99,
                key: Bytes::from_static(b"app.lock"),
                kind,
            };
            assert_eq!(LockPush::decode(&p.encode()).expect("decodes"), p);
        }
    }

    #[test]
    fn garbage_is_refused() {
        let e = LockPush::decode(b"not a flatbuffer").expect_err("garbage");
        assert_eq!(e.what, "lock push");
    }
}
