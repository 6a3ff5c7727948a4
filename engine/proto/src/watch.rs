//! The wire bodies of the DtKV watch commands and pushes.
//!
//! A client registers a watch ([`WatchRequest`], answered by
//! [`WatchResponse`]) and removes it ([`encode_unwatch`]); the node sends the
//! watch's events, heartbeats and notices as [`WatchPush`] frames on the same
//! connection (see docs/kv.md, "Watches").

use bytes::Bytes;
use dongting_kv::{NodeState, WatchEvent};
use flatbuffers::FlatBufferBuilder;

use crate::codec::BodyError;
use crate::generated::watch_generated::dongting::server::fb as wfb;

/// Service port: register a watch (REQ `WatchRequest`, answer `WatchResponse`).
pub const CMD_KV_WATCH: u16 = 130;
/// Service port: remove a watch (REQ `UnwatchRequest`, empty answer).
pub const CMD_KV_UNWATCH: u16 = 131;
/// Service port, server to client: the events, heartbeats and notices of a
/// registered watch (PUSH `WatchPush`).
pub const CMD_KV_WATCH_PUSH: u16 = 132;

/// Most keys one watch may name.
pub const MAX_KEYS_PER_WATCH: usize = 1024;

/// A watch registration as sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRequest {
    /// The group.
    pub group_id: u32,
    /// Client-chosen id, unique among the client's watches on the connection.
    pub watch_id: u64,
    /// Watched keys; each covers itself and every key under it. The empty key
    /// is the root (the whole tree).
    pub keys: Vec<Bytes>,
    /// Events with a raft index above this one are sent; 0 means from the
    /// serving node's applied index.
    pub from_index: u64,
}

impl WatchRequest {
    /// Encodes the request. Cost: one copy of every key.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(
            64 + self.keys.iter().map(|k| k.len() + 16).sum::<usize>(),
        );
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                let key = fbb.create_vector(k);
                wfb::WatchKey::create(&mut fbb, &wfb::WatchKeyArgs { key: Some(key) })
            })
            .collect();
        let keys = fbb.create_vector(&keys);
        let root = wfb::WatchRequest::create(
            &mut fbb,
            &wfb::WatchRequestArgs {
                group_id: self.group_id,
                watch_id: self.watch_id,
                keys: Some(keys),
                from_index: self.from_index,
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes a request; keys are zero-copy slices of `body`.
    pub fn decode(body: &Bytes) -> Result<WatchRequest, BodyError> {
        let t = flatbuffers::root::<wfb::WatchRequest<'_>>(body)
            .map_err(|e| BodyError::new("watch request", e))?;
        let keys = t
            .keys()
            .map(|v| {
                v.iter()
                    .map(|k| {
                        k.key()
                            .map(|b| slice_of(body, b.bytes()))
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(WatchRequest {
            group_id: t.group_id(),
            watch_id: t.watch_id(),
            keys,
            from_index: t.from_index(),
        })
    }
}

/// The answer to a watch registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchResponse {
    /// The watch sends events with an index above this one.
    pub start_index: u64,
    /// The serving node's applied index at registration.
    pub applied_index: u64,
    /// The node's `watch_heartbeat_ms`.
    pub heartbeat_ms: u64,
    /// The connection already had this watch id; nothing changed.
    pub existing: bool,
}

impl WatchResponse {
    /// Encodes the answer.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(64);
        let root = wfb::WatchResponse::create(
            &mut fbb,
            &wfb::WatchResponseArgs {
                start_index: self.start_index,
                applied_index: self.applied_index,
                heartbeat_ms: self.heartbeat_ms,
                existing: self.existing,
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes an answer.
    pub fn decode(body: &[u8]) -> Result<WatchResponse, BodyError> {
        let t = flatbuffers::root::<wfb::WatchResponse<'_>>(body)
            .map_err(|e| BodyError::new("watch response", e))?;
        Ok(WatchResponse {
            start_index: t.start_index(),
            applied_index: t.applied_index(),
            heartbeat_ms: t.heartbeat_ms(),
            existing: t.existing(),
        })
    }
}

/// Removes a watch: `(group_id, watch_id)`.
pub fn encode_unwatch(group_id: u32, watch_id: u64) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(32);
    let root =
        wfb::UnwatchRequest::create(&mut fbb, &wfb::UnwatchRequestArgs { group_id, watch_id });
    fbb.finish_minimal(root);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Decodes an unwatch request into `(group_id, watch_id)`.
pub fn decode_unwatch(body: &[u8]) -> Result<(u32, u64), BodyError> {
    let t = flatbuffers::root::<wfb::UnwatchRequest<'_>>(body)
        .map_err(|e| BodyError::new("unwatch request", e))?;
    Ok((t.group_id(), t.watch_id()))
}

/// What a watch push carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchPushKind {
    /// Events of whole raft indexes, in index order.
    Events,
    /// No events; the watch is complete up to `progress_index`.
    Heartbeat,
    /// Events the watcher had not received are gone from the history: it must
    /// re-read its keys. Events continue after `progress_index`.
    Compacted,
    /// The server dropped the watch; register again from the last index seen.
    Cancelled,
}

impl WatchPushKind {
    fn to_fb(self) -> wfb::WatchPushKind {
        match self {
            WatchPushKind::Events => wfb::WatchPushKind::Events,
            WatchPushKind::Heartbeat => wfb::WatchPushKind::Heartbeat,
            WatchPushKind::Compacted => wfb::WatchPushKind::Compacted,
            WatchPushKind::Cancelled => wfb::WatchPushKind::Cancelled,
        }
    }
}

/// A decoded watch push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPush {
    /// The group.
    pub group_id: u32,
    /// The client's watch id.
    pub watch_id: u64,
    /// What the push carries.
    pub kind: WatchPushKind,
    /// The watch has every event with an index at or below this one.
    pub progress_index: u64,
    /// Events (kind `Events`), ordered by index; keys and values are
    /// zero-copy slices of the frame.
    pub events: Vec<WatchEvent>,
    /// `Compacted`: the lowest index the history can resume after.
    pub history_floor: u64,
    /// `Compacted` and `Cancelled`: why.
    pub message: String,
}

fn state_code(s: NodeState) -> u8 {
    match s {
        NodeState::Absent => 0,
        NodeState::Value => 1,
        NodeState::Dir => 2,
        NodeState::Lock => 3,
    }
}

/// Encodes a push. Cost: one copy of every key and value into the frame.
pub fn encode_push(
    group_id: u32,
    watch_id: u64,
    kind: WatchPushKind,
    progress_index: u64,
    events: &[&WatchEvent],
    history_floor: u64,
    message: &str,
) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| e.key.len() + e.value.len() + 48)
        .sum();
    let mut fbb = FlatBufferBuilder::with_capacity(size + 96 + message.len());
    let evs: Vec<_> = events
        .iter()
        .map(|e| {
            let key = fbb.create_vector(&e.key[..]);
            let value = if e.value.is_empty() {
                None
            } else {
                Some(fbb.create_vector(&e.value[..]))
            };
            wfb::WatchEventFb::create(
                &mut fbb,
                &wfb::WatchEventFbArgs {
                    index: e.index,
                    key: Some(key),
                    state: state_code(e.state),
                    value,
                },
            )
        })
        .collect();
    let evs = if evs.is_empty() {
        None
    } else {
        Some(fbb.create_vector(&evs))
    };
    let message = if message.is_empty() {
        None
    } else {
        Some(fbb.create_string(message))
    };
    let root = wfb::WatchPush::create(
        &mut fbb,
        &wfb::WatchPushArgs {
            group_id,
            watch_id,
            kind: kind.to_fb(),
            progress_index,
            events: evs,
            history_floor,
            message,
        },
    );
    fbb.finish_minimal(root);
    let (buf, head) = fbb.collapse();
    if head == 0 { buf } else { buf[head..].to_vec() }
}

/// Verifies and decodes a push; keys and values are slices of `body`.
/// Refuses unknown kinds and states, and events out of index order.
pub fn decode_push(body: &Bytes) -> Result<WatchPush, BodyError> {
    let t = flatbuffers::root::<wfb::WatchPush<'_>>(body)
        .map_err(|e| BodyError::new("watch push", e))?;
    let kind = match t.kind() {
        wfb::WatchPushKind::Events => WatchPushKind::Events,
        wfb::WatchPushKind::Heartbeat => WatchPushKind::Heartbeat,
        wfb::WatchPushKind::Compacted => WatchPushKind::Compacted,
        wfb::WatchPushKind::Cancelled => WatchPushKind::Cancelled,
        other => {
            return Err(BodyError::new(
                "watch push",
                format!("unknown kind {}", other.0),
            ));
        }
    };
    let mut events = Vec::new();
    let mut last = 0;
    if let Some(v) = t.events() {
        events.reserve(v.len());
        for e in v.iter() {
            let state = match e.state() {
                0 => NodeState::Absent,
                1 => NodeState::Value,
                2 => NodeState::Dir,
                3 => NodeState::Lock,
                s => {
                    return Err(BodyError::new(
                        "watch push",
                        format!("unknown node state {s}"),
                    ));
                }
            };
            if e.index() < last {
                return Err(BodyError::new(
                    "watch push",
                    format!("event index {} after {last}", e.index()),
                ));
            }
            last = e.index();
            events.push(WatchEvent {
                index: e.index(),
                key: e
                    .key()
                    .map(|b| slice_of(body, b.bytes()))
                    .unwrap_or_default(),
                state,
                value: e
                    .value()
                    .map(|b| slice_of(body, b.bytes()))
                    .unwrap_or_default(),
            });
        }
    }
    if last > t.progress_index() {
        return Err(BodyError::new(
            "watch push",
            format!(
                "event index {last} above the progress index {}",
                t.progress_index()
            ),
        ));
    }
    Ok(WatchPush {
        group_id: t.group_id(),
        watch_id: t.watch_id(),
        kind,
        progress_index: t.progress_index(),
        events,
        history_floor: t.history_floor(),
        message: t.message().unwrap_or_default().to_string(),
    })
}

/// `part` (a slice inside `whole`) as a zero-copy `Bytes`.
fn slice_of(whole: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        Bytes::new()
    } else {
        // `part` comes from the verified view of `whole`, so it lies inside it.
        whole.slice_ref(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, key: &str, value: &str) -> WatchEvent {
        WatchEvent {
            index,
            key: Bytes::copy_from_slice(key.as_bytes()),
            state: if value.is_empty() {
                NodeState::Absent
            } else {
                NodeState::Value
            },
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn bodies_round_trip() {
        let req = WatchRequest {
            group_id: 3,
            watch_id: 99,
            keys: vec![Bytes::from_static(b"a.b"), Bytes::new()],
            from_index: 17,
        };
        assert_eq!(WatchRequest::decode(&req.encode()).expect("decode"), req);
        let resp = WatchResponse {
            start_index: 17,
            applied_index: 20,
            heartbeat_ms: 1000,
            existing: true,
        };
        assert_eq!(WatchResponse::decode(&resp.encode()).expect("decode"), resp);
        assert_eq!(
            decode_unwatch(&encode_unwatch(4, 5)).expect("decode"),
            (4, 5)
        );
        let a = ev(5, "a.b", "v1");
        let b = ev(6, "a.b.c", "");
        let body = Bytes::from(encode_push(
            3,
            99,
            WatchPushKind::Events,
            6,
            &[&a, &b],
            0,
            "",
        ));
        let p = decode_push(&body).expect("decode");
        assert_eq!(p.kind, WatchPushKind::Events);
        assert_eq!(p.events, vec![a.clone(), b.clone()]);
        assert_eq!((p.group_id, p.watch_id, p.progress_index), (3, 99, 6));
        let c = Bytes::from(encode_push(
            3,
            99,
            WatchPushKind::Compacted,
            40,
            &[],
            30,
            "gone",
        ));
        let p = decode_push(&c).expect("decode");
        assert_eq!(
            (p.kind, p.history_floor, p.message.as_str()),
            (WatchPushKind::Compacted, 30, "gone")
        );
    }

    #[test]
    fn pushes_that_break_the_rules_are_refused() {
        assert!(decode_push(&Bytes::from_static(b"not a push")).is_err());
        let a = ev(7, "k", "v");
        let b = ev(5, "k", "w");
        // Out of order.
        let body = Bytes::from(encode_push(
            1,
            1,
            WatchPushKind::Events,
            7,
            &[&a, &b],
            0,
            "",
        ));
        assert!(decode_push(&body).is_err());
        // An event above the progress index.
        let body = Bytes::from(encode_push(1, 1, WatchPushKind::Events, 6, &[&a], 0, ""));
        assert!(decode_push(&body).is_err());
    }
}
