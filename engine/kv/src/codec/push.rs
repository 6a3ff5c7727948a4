//! Pushes to clients: watch events and lock notifications.

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::error::KvError;
use crate::fb;
use crate::types::{ClientId, LockNotification, LockNotificationKind, WatchEvent};

use super::{Copied, bytes_of, finish, invalid, state_from_fb, state_to_fb};

/// Encodes a watch event.
pub fn encode_watch_event(e: &WatchEvent) -> Bytes {
    let mut b = FlatBufferBuilder::with_capacity(64 + e.key.len() + e.value.len());
    let key = Some(b.create_vector(&e.key));
    let value = Some(b.create_vector(&e.value));
    let root = fb::WatchEvent::create(
        &mut b,
        &fb::WatchEventArgs {
            index: e.index,
            key,
            state: state_to_fb(e.state),
            value,
        },
    );
    b.finish(root, None);
    finish(b)
}

/// Decodes a watch event.
pub fn decode_watch_event(data: &[u8]) -> Result<WatchEvent, KvError> {
    let e = flatbuffers::root::<fb::WatchEvent<'_>>(data).map_err(|e| invalid("watch event", e))?;
    Ok(WatchEvent {
        index: e.index(),
        key: bytes_of(&Copied, e.key()),
        state: state_from_fb(e.state())?,
        value: bytes_of(&Copied, e.value()),
    })
}

/// Encodes a lock notification; `index` is the raft index that produced it.
pub fn encode_lock_notification(n: &LockNotification, index: u64) -> Bytes {
    let mut b = FlatBufferBuilder::with_capacity(64 + n.key.len());
    let key = Some(b.create_vector(&n.key));
    let (kind, token, lease_deadline_ms) = match n.kind {
        LockNotificationKind::Acquired {
            token,
            lease_deadline_ms,
        } => (fb::LockNotificationKind::Acquired, token, lease_deadline_ms),
        LockNotificationKind::WaitTimedOut => (fb::LockNotificationKind::WaitTimedOut, 0, 0),
    };
    let root = fb::LockNotification::create(
        &mut b,
        &fb::LockNotificationArgs {
            client_id: n.client_id,
            key,
            kind,
            token,
            lease_deadline_ms,
            index,
        },
    );
    b.finish(root, None);
    finish(b)
}

/// Decodes a lock notification and the raft index that produced it.
pub fn decode_lock_notification(data: &[u8]) -> Result<(LockNotification, u64), KvError> {
    let n = flatbuffers::root::<fb::LockNotification<'_>>(data)
        .map_err(|e| invalid("lock notification", e))?;
    let kind = match n.kind() {
        fb::LockNotificationKind::Acquired => LockNotificationKind::Acquired {
            token: n.token(),
            lease_deadline_ms: n.lease_deadline_ms(),
        },
        fb::LockNotificationKind::WaitTimedOut => LockNotificationKind::WaitTimedOut,
        other => {
            return Err(invalid(
                "lock notification",
                format!("unknown kind {}", other.0),
            ));
        }
    };
    let client_id: ClientId = n.client_id();
    Ok((
        LockNotification {
            client_id,
            key: bytes_of(&Copied, n.key()),
            kind,
        },
        n.index(),
    ))
}
