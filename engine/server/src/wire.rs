//! Raft messages on the wire: a batch of one group's messages in one frame body
//! (`RaftBatch` of `schema/raft.fbs`).
//!
//! Encoding copies each entry's payload once into the frame; decoding verifies the
//! body and hands out entry payloads as zero-copy slices of the received frame.

use bytes::Bytes;
use dongting_raft::{Entry, EntryKind, Membership, Message, MessageBody, NodeId, SnapshotMeta};
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::generated::raft_generated::dongting::server::fb;
use dongting_proto::codec::BodyError;

/// Encodes `messages` (owned or borrowed) of `group_id` into one body. Cost: one
/// builder that grows to the batch size, and one copy of every payload; the
/// builder's buffer becomes the body without another copy.
pub fn encode_batch<M: std::borrow::Borrow<Message>>(group_id: u32, messages: &[M]) -> Bytes {
    let payload: usize = messages.iter().map(|m| message_size(m.borrow())).sum();
    let mut fbb = FlatBufferBuilder::with_capacity(64 + payload);
    let msgs: Vec<_> = messages
        .iter()
        .map(|m| build_msg(&mut fbb, m.borrow()))
        .collect();
    let msgs = fbb.create_vector(&msgs);
    let root = fb::RaftBatch::create(
        &mut fbb,
        &fb::RaftBatchArgs {
            group_id,
            messages: Some(msgs),
        },
    );
    fbb.finish_minimal(root);
    let (buf, head) = fbb.collapse();
    let mut out = Bytes::from(buf);
    bytes::Buf::advance(&mut out, head);
    out
}

fn message_size(m: &Message) -> usize {
    match &m.body {
        MessageBody::Append { entries, .. } => {
            entries.iter().map(|e| e.data.len() + 48).sum::<usize>() + 160
        }
        MessageBody::InstallSnapshot { data, .. } => data.len() + 256,
        _ => 160,
    }
}

fn build_msg<'a>(fbb: &mut FlatBufferBuilder<'a>, m: &Message) -> WIPOffset<fb::RaftMsg<'a>> {
    let mut a = fb::RaftMsgArgs {
        from: m.from,
        to: m.to,
        term: m.term,
        ..Default::default()
    };
    match &m.body {
        MessageBody::RequestVote {
            pre_vote,
            last_index,
            last_term,
            transfer,
        } => {
            a.kind = fb::MsgKind::RequestVote;
            a.pre_vote = *pre_vote;
            a.last_index = *last_index;
            a.last_term = *last_term;
            a.transfer = *transfer;
        }
        MessageBody::RequestVoteResponse { pre_vote, granted } => {
            a.kind = fb::MsgKind::RequestVoteResponse;
            a.pre_vote = *pre_vote;
            a.granted = *granted;
        }
        MessageBody::Append {
            prev_index,
            prev_term,
            commit,
            entries,
            seq,
            send_ms,
        } => {
            a.kind = fb::MsgKind::Append;
            a.prev_index = *prev_index;
            a.prev_term = *prev_term;
            a.commit = *commit;
            a.seq = *seq;
            a.send_ms = *send_ms;
            let es: Vec<_> = entries
                .iter()
                .map(|e| {
                    let data = fbb.create_vector(&e.data[..]);
                    fb::WireEntry::create(
                        fbb,
                        &fb::WireEntryArgs {
                            term: e.term,
                            index: e.index,
                            kind: e.kind.code(),
                            data: Some(data),
                        },
                    )
                })
                .collect();
            a.entries = Some(fbb.create_vector(&es));
        }
        MessageBody::AppendResponse {
            reject,
            index,
            hint_index,
            hint_term,
            applied,
            seq,
            send_ms,
        } => {
            a.kind = fb::MsgKind::AppendResponse;
            a.reject = *reject;
            a.index = *index;
            a.hint_index = *hint_index;
            a.hint_term = *hint_term;
            a.applied = *applied;
            a.seq = *seq;
            a.send_ms = *send_ms;
        }
        MessageBody::Heartbeat {
            commit,
            seq,
            send_ms,
        } => {
            a.kind = fb::MsgKind::Heartbeat;
            a.commit = *commit;
            a.seq = *seq;
            a.send_ms = *send_ms;
        }
        MessageBody::HeartbeatResponse {
            applied,
            seq,
            send_ms,
        } => {
            a.kind = fb::MsgKind::HeartbeatResponse;
            a.applied = *applied;
            a.seq = *seq;
            a.send_ms = *send_ms;
        }
        MessageBody::InstallSnapshot {
            meta,
            offset,
            data,
            done,
            seq,
            send_ms,
        } => {
            a.kind = fb::MsgKind::InstallSnapshot;
            let membership = fbb.create_vector(&meta.membership.encode()[..]);
            a.snapshot = Some(fb::WireSnapshotMeta::create(
                fbb,
                &fb::WireSnapshotMetaArgs {
                    index: meta.index,
                    term: meta.term,
                    membership: Some(membership),
                },
            ));
            a.offset = *offset;
            a.data = Some(fbb.create_vector(&data[..]));
            a.done = *done;
            a.seq = *seq;
            a.send_ms = *send_ms;
        }
        MessageBody::SnapshotResponse {
            snapshot_index,
            next_offset,
            done,
            seq,
            send_ms,
        } => {
            a.kind = fb::MsgKind::SnapshotResponse;
            a.snapshot_index = *snapshot_index;
            a.next_offset = *next_offset;
            a.done = *done;
            a.seq = *seq;
            a.send_ms = *send_ms;
        }
        MessageBody::TimeoutNow => a.kind = fb::MsgKind::TimeoutNow,
        MessageBody::ReadIndex { ctx } => {
            a.kind = fb::MsgKind::ReadIndex;
            a.ctx = *ctx;
        }
        MessageBody::ReadIndexResponse { ctx, index } => {
            a.kind = fb::MsgKind::ReadIndexResponse;
            a.ctx = *ctx;
            a.has_index = index.is_some();
            a.index = index.unwrap_or(0);
        }
    }
    fb::RaftMsg::create(fbb, &a)
}

/// Verifies and decodes a batch. Entry and snapshot payloads are slices of
/// `body` (no copy). Fails on anything the verifier refuses, an unknown
/// message or entry kind, or a node id of 0 as sender or receiver.
pub fn decode_batch(body: &Bytes) -> Result<(u32, Vec<Message>), BodyError> {
    let t = flatbuffers::root::<fb::RaftBatch<'_>>(body)
        .map_err(|e| BodyError::new("raft batch", e))?;
    let mut out = Vec::new();
    if let Some(msgs) = t.messages() {
        out.reserve(msgs.len());
        for m in msgs.iter() {
            out.push(decode_msg(body, m)?);
        }
    }
    Ok((t.group_id(), out))
}

fn slice(body: &Bytes, v: Option<flatbuffers::Vector<'_, u8>>) -> Bytes {
    match v {
        Some(v) if !v.bytes().is_empty() => body.slice_ref(v.bytes()),
        _ => Bytes::new(),
    }
}

fn decode_msg(body: &Bytes, m: fb::RaftMsg<'_>) -> Result<Message, BodyError> {
    let from: NodeId = m.from();
    let to: NodeId = m.to();
    if from == 0 || to == 0 {
        return Err(BodyError::new("raft message", "node id 0"));
    }
    let b = match m.kind() {
        fb::MsgKind::RequestVote => MessageBody::RequestVote {
            pre_vote: m.pre_vote(),
            last_index: m.last_index(),
            last_term: m.last_term(),
            transfer: m.transfer(),
        },
        fb::MsgKind::RequestVoteResponse => MessageBody::RequestVoteResponse {
            pre_vote: m.pre_vote(),
            granted: m.granted(),
        },
        fb::MsgKind::Append => {
            let mut entries = Vec::new();
            if let Some(es) = m.entries() {
                entries.reserve(es.len());
                for e in es.iter() {
                    let kind = EntryKind::from_code(e.kind()).ok_or_else(|| {
                        BodyError::new("raft entry", format!("unknown kind {}", e.kind()))
                    })?;
                    entries.push(Entry {
                        term: e.term(),
                        index: e.index(),
                        kind,
                        data: slice(body, e.data()),
                    });
                }
            }
            MessageBody::Append {
                prev_index: m.prev_index(),
                prev_term: m.prev_term(),
                commit: m.commit(),
                entries,
                seq: m.seq(),
                send_ms: m.send_ms(),
            }
        }
        fb::MsgKind::AppendResponse => MessageBody::AppendResponse {
            reject: m.reject(),
            index: m.index(),
            hint_index: m.hint_index(),
            hint_term: m.hint_term(),
            applied: m.applied(),
            seq: m.seq(),
            send_ms: m.send_ms(),
        },
        fb::MsgKind::Heartbeat => MessageBody::Heartbeat {
            commit: m.commit(),
            seq: m.seq(),
            send_ms: m.send_ms(),
        },
        fb::MsgKind::HeartbeatResponse => MessageBody::HeartbeatResponse {
            applied: m.applied(),
            seq: m.seq(),
            send_ms: m.send_ms(),
        },
        fb::MsgKind::InstallSnapshot => {
            let s = m
                .snapshot()
                .ok_or_else(|| BodyError::new("raft message", "snapshot chunk without meta"))?;
            let membership = Membership::decode(s.membership().map(|v| v.bytes()).unwrap_or(&[]))
                .map_err(|e| BodyError::new("snapshot membership", e))?;
            MessageBody::InstallSnapshot {
                meta: SnapshotMeta {
                    index: s.index(),
                    term: s.term(),
                    membership,
                },
                offset: m.offset(),
                data: slice(body, m.data()),
                done: m.done(),
                seq: m.seq(),
                send_ms: m.send_ms(),
            }
        }
        fb::MsgKind::SnapshotResponse => MessageBody::SnapshotResponse {
            snapshot_index: m.snapshot_index(),
            next_offset: m.next_offset(),
            done: m.done(),
            seq: m.seq(),
            send_ms: m.send_ms(),
        },
        fb::MsgKind::TimeoutNow => MessageBody::TimeoutNow,
        fb::MsgKind::ReadIndex => MessageBody::ReadIndex { ctx: m.ctx() },
        fb::MsgKind::ReadIndexResponse => MessageBody::ReadIndexResponse {
            ctx: m.ctx(),
            index: m.has_index().then_some(m.index()),
        },
        other => {
            return Err(BodyError::new(
                "raft message",
                format!("unknown kind {}", other.0),
            ));
        }
    };
    Ok(Message {
        from,
        to,
        term: m.term(),
        body: b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: MessageBody) -> Message {
        Message {
            from: 1,
            to: 2,
            term: 7,
            body,
        }
    }

    #[test]
    fn every_message_kind_round_trips() {
        let entries = vec![
            Entry {
                term: 7,
                index: 10,
                kind: EntryKind::Normal,
                data: Bytes::from_static(b"hello"),
            },
            Entry {
                term: 7,
                index: 11,
                kind: EntryKind::Noop,
                data: Bytes::new(),
            },
        ];
        let msgs = vec![
            msg(MessageBody::RequestVote {
                pre_vote: true,
                last_index: 3,
                last_term: 2,
                transfer: true,
            }),
            msg(MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            }),
            msg(MessageBody::Append {
                prev_index: 9,
                prev_term: 6,
                commit: 8,
                entries,
                seq: 5,
                send_ms: 1234,
            }),
            msg(MessageBody::AppendResponse {
                reject: true,
                index: 9,
                hint_index: 4,
                hint_term: 3,
                applied: 2,
                seq: 5,
                send_ms: 1234,
            }),
            msg(MessageBody::Heartbeat {
                commit: 1,
                seq: 2,
                send_ms: 3,
            }),
            msg(MessageBody::HeartbeatResponse {
                applied: 1,
                seq: 2,
                send_ms: 3,
            }),
            msg(MessageBody::InstallSnapshot {
                meta: SnapshotMeta {
                    index: 100,
                    term: 6,
                    membership: Membership::new(&[1, 2, 3], &[4]),
                },
                offset: 4096,
                data: Bytes::from(vec![9u8; 300]),
                done: true,
                seq: 8,
                send_ms: 9,
            }),
            msg(MessageBody::SnapshotResponse {
                snapshot_index: 100,
                next_offset: 4396,
                done: true,
                seq: 8,
                send_ms: 9,
            }),
            msg(MessageBody::TimeoutNow),
            msg(MessageBody::ReadIndex { ctx: 77 }),
            msg(MessageBody::ReadIndexResponse {
                ctx: 77,
                index: Some(0),
            }),
            msg(MessageBody::ReadIndexResponse {
                ctx: 78,
                index: None,
            }),
        ];
        let body = encode_batch(42, &msgs);
        let (group, decoded) = decode_batch(&body).expect("decode");
        assert_eq!(group, 42);
        assert_eq!(decoded, msgs);
    }

    #[test]
    fn garbage_and_bad_ids_are_refused() {
        assert!(decode_batch(&Bytes::from_static(b"not a flatbuffer")).is_err());
        assert!(decode_batch(&Bytes::new()).is_err());
        let mut m = msg(MessageBody::TimeoutNow);
        m.from = 0;
        assert!(decode_batch(&encode_batch(1, &[m])).is_err());
    }

    #[test]
    fn decoding_random_bytes_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let good = encode_batch(
            1,
            &[msg(MessageBody::Heartbeat {
                commit: 1,
                seq: 1,
                send_ms: 1,
            })],
        );
        for round in 0..2000 {
            let mut bytes = good.to_vec();
            for _ in 0..(round % 7 + 1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % bytes.len();
                bytes[i] = (seed >> 32) as u8;
            }
            let _ = decode_batch(&Bytes::from(bytes));
        }
    }
}
