//! Command numbers of the node's ports and the bodies that are not DtKV's own:
//! the client envelope (`KvRequest`), status requests and admin requests.
//!
//! Numbers from 100 up belong to the node runtime (see `docs/protocol.md`).

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::codec::{BodyError, u32_list};
use crate::generated::admin_generated::dongting::server::fb as afb;
use crate::generated::service_generated::dongting::server::fb as sfb;

/// Replicate port: the config check between peers (REQ, `RaftPing` both ways).
pub const CMD_RAFT_PING: u16 = 100;
/// Replicate port: a batch of one group's raft messages (ONE_WAY, `RaftBatch`).
pub const CMD_RAFT_MESSAGES: u16 = 101;
/// Both ports: node and group status (REQ `StatusRequest`, answer `NodeStatus`).
pub const CMD_STATUS: u16 = 110;
/// Replicate port: hand leadership of a group to `node_id`.
pub const CMD_ADMIN_TRANSFER_LEADER: u16 = 111;
/// Replicate port: start a joint-consensus change to `members` / `observers`.
pub const CMD_ADMIN_PREPARE: u16 = 112;
/// Replicate port: finish the change prepared at `prepare_index`.
pub const CMD_ADMIN_COMMIT: u16 = 113;
/// Replicate port: abandon the running change.
pub const CMD_ADMIN_ABORT: u16 = 114;
/// Replicate port: start hosting a group (`group_id`, `members`, `observers`).
pub const CMD_ADMIN_ADD_GROUP: u16 = 115;
/// Replicate port: stop hosting a group and delete its data.
pub const CMD_ADMIN_REMOVE_GROUP: u16 = 116;
/// Replicate port: take a snapshot of a group now.
pub const CMD_ADMIN_SNAPSHOT: u16 = 117;
/// Replicate port: list hosted group ids (answer `AdminResponse.message`).
pub const CMD_ADMIN_LIST_GROUPS: u16 = 118;
/// Replicate port: read a slice of a group's snapshot file (`BackupReadRequest`,
/// answer `BackupChunk`), to copy it off the node as a backup.
pub const CMD_ADMIN_BACKUP_READ: u16 = 119;
/// Replicate port: add `node_id` at `address` to this node's servers list.
pub const CMD_ADMIN_ADD_NODE: u16 = 140;
/// Replicate port: remove `node_id` from this node's servers list.
pub const CMD_ADMIN_REMOVE_NODE: u16 = 141;
/// Service port: a DtKV write (`KvRequest` around a DtKV `Command`; answer a
/// DtKV `CommandResult`).
pub const CMD_KV_WRITE: u16 = 120;
/// Service port: a DtKV read (`KvRequest` around a DtKV `ReadRequest`; answer a
/// DtKV `ReadResult`).
pub const CMD_KV_READ: u16 = 121;

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Linearizable: on the leader, by lease or ReadIndex.
    #[default]
    Linearizable,
    /// On whichever node receives it, after a ReadIndex from the leader.
    Follower,
    /// From local state with no check; may be stale.
    Stale,
}

impl ReadMode {
    fn to_fb(self) -> sfb::ReadMode {
        match self {
            ReadMode::Linearizable => sfb::ReadMode::Linearizable,
            ReadMode::Follower => sfb::ReadMode::Follower,
            ReadMode::Stale => sfb::ReadMode::Stale,
        }
    }
}

/// A decoded client envelope; `body` is a zero-copy slice of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEnvelope {
    /// Target group.
    pub group_id: u32,
    /// Read mode (ignored for writes).
    pub read_mode: ReadMode,
    /// The DtKV command or read request.
    pub body: Bytes,
}

/// Encodes a client envelope. Cost: two copies of `body` (into the builder,
/// then into the result of exactly the envelope's size); no allocation but
/// the result's once the thread's builders are warm (the body is usually
/// built in one of them: see `dongting_kv::with_built`).
pub fn encode_kv_request(group_id: u32, read_mode: ReadMode, body: &[u8]) -> Bytes {
    dongting_kv::with_built(
        |fbb| {
            let b = fbb.create_vector(body);
            let root = sfb::KvRequest::create(
                fbb,
                &sfb::KvRequestArgs {
                    group_id,
                    read_mode: read_mode.to_fb(),
                    body: Some(b),
                },
            );
            fbb.finish_minimal(root);
        },
        Bytes::copy_from_slice,
    )
}

/// Verifies and decodes a client envelope; the body is not copied.
pub fn decode_kv_request(frame: &Bytes) -> Result<KvEnvelope, BodyError> {
    let t = flatbuffers::root::<sfb::KvRequest<'_>>(frame)
        .map_err(|e| BodyError::new("kv request", e))?;
    let read_mode = match t.read_mode() {
        sfb::ReadMode::Linearizable => ReadMode::Linearizable,
        sfb::ReadMode::Follower => ReadMode::Follower,
        sfb::ReadMode::Stale => ReadMode::Stale,
        other => {
            return Err(BodyError::new(
                "kv request",
                format!("unknown read mode {}", other.0),
            ));
        }
    };
    let body = match t.body() {
        Some(v) => {
            let s = v.bytes();
            let start = s.as_ptr() as usize - frame.as_ptr() as usize;
            frame.slice(start..start + s.len())
        }
        None => Bytes::new(),
    };
    Ok(KvEnvelope {
        group_id: t.group_id(),
        read_mode,
        body,
    })
}

/// Encodes a status request: one group, or (`all_groups`) the node and all groups.
pub fn encode_status_request(group_id: u32, all_groups: bool) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(32);
    let root = sfb::StatusRequest::create(
        &mut fbb,
        &sfb::StatusRequestArgs {
            group_id,
            all_groups,
        },
    );
    fbb.finish_minimal(root);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Decodes a status request into `(group_id, all_groups)`.
pub fn decode_status_request(body: &[u8]) -> Result<(u32, bool), BodyError> {
    let t = flatbuffers::root::<sfb::StatusRequest<'_>>(body)
        .map_err(|e| BodyError::new("status request", e))?;
    Ok((t.group_id(), t.all_groups()))
}

/// The body of every admin command; each command reads the fields it needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminRequest {
    /// Group the command acts on.
    pub group_id: u32,
    /// Target node (transfer-leader, add-node, remove-node).
    pub node_id: u32,
    /// Members (prepare, add-group).
    pub members: Vec<u32>,
    /// Observers (prepare, add-group).
    pub observers: Vec<u32>,
    /// Prepare index (commit).
    pub prepare_index: u64,
    /// Time the operation may take, in ms (transfer-leader).
    pub timeout_ms: u64,
    /// `host:replicatePort` of the node (add-node); empty otherwise.
    pub address: String,
}

impl AdminRequest {
    /// Encodes the request.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(64);
        let members = fbb.create_vector(&self.members);
        let observers = fbb.create_vector(&self.observers);
        let address = (!self.address.is_empty()).then(|| fbb.create_string(&self.address));
        let root = afb::AdminRequest::create(
            &mut fbb,
            &afb::AdminRequestArgs {
                group_id: self.group_id,
                node_id: self.node_id,
                members: Some(members),
                observers: Some(observers),
                prepare_index: self.prepare_index,
                timeout_ms: self.timeout_ms,
                address,
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes a request.
    pub fn decode(body: &[u8]) -> Result<AdminRequest, BodyError> {
        let t = flatbuffers::root::<afb::AdminRequest<'_>>(body)
            .map_err(|e| BodyError::new("admin request", e))?;
        Ok(AdminRequest {
            group_id: t.group_id(),
            node_id: t.node_id(),
            members: u32_list(t.members()),
            observers: u32_list(t.observers()),
            prepare_index: t.prepare_index(),
            timeout_ms: t.timeout_ms(),
            address: t.address().unwrap_or_default().to_string(),
        })
    }
}

/// The answer to an admin command: the raft index it was written at (0 when
/// none) and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminResponse {
    /// Raft index of the entry the operation appended, or 0.
    pub index: u64,
    /// What happened, in words.
    pub message: String,
}

impl AdminResponse {
    /// Encodes the answer.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(64);
        let message = fbb.create_string(&self.message);
        let root = afb::AdminResponse::create(
            &mut fbb,
            &afb::AdminResponseArgs {
                index: self.index,
                message: Some(message),
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes an answer.
    pub fn decode(body: &[u8]) -> Result<AdminResponse, BodyError> {
        let t = flatbuffers::root::<afb::AdminResponse<'_>>(body)
            .map_err(|e| BodyError::new("admin response", e))?;
        Ok(AdminResponse {
            index: t.index(),
            message: t.message().unwrap_or_default().to_string(),
        })
    }
}

/// Asks for up to `max_bytes` of the snapshot file at `index` from `offset`
/// (`CMD_ADMIN_BACKUP_READ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupReadRequest {
    /// Group whose snapshot is read.
    pub group_id: u32,
    /// Index of the snapshot (its last included index).
    pub index: u64,
    /// Byte offset in the snapshot file.
    pub offset: u64,
    /// Most bytes wanted; the node may answer fewer.
    pub max_bytes: u32,
}

impl BackupReadRequest {
    /// Encodes the request.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(64);
        let root = afb::BackupReadRequest::create(
            &mut fbb,
            &afb::BackupReadRequestArgs {
                group_id: self.group_id,
                index: self.index,
                offset: self.offset,
                max_bytes: self.max_bytes,
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes a request.
    pub fn decode(body: &[u8]) -> Result<BackupReadRequest, BodyError> {
        let t = flatbuffers::root::<afb::BackupReadRequest<'_>>(body)
            .map_err(|e| BodyError::new("backup read request", e))?;
        Ok(BackupReadRequest {
            group_id: t.group_id(),
            index: t.index(),
            offset: t.offset(),
            max_bytes: t.max_bytes(),
        })
    }
}

/// A slice of a snapshot file, the answer to `CMD_ADMIN_BACKUP_READ`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupChunk {
    /// Group of the snapshot.
    pub group_id: u32,
    /// Last included index of the snapshot.
    pub index: u64,
    /// Last included term of the snapshot.
    pub term: u64,
    /// Size of the whole snapshot file in bytes.
    pub file_bytes: u64,
    /// Offset of `data` in the file.
    pub offset: u64,
    /// The bytes; empty at or past the end of the file.
    pub data: Bytes,
}

impl BackupChunk {
    /// Encodes the answer (one copy of `data`).
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(self.data.len() + 96);
        let data = fbb.create_vector(&self.data[..]);
        let root = afb::BackupChunk::create(
            &mut fbb,
            &afb::BackupChunkArgs {
                group_id: self.group_id,
                index: self.index,
                term: self.term,
                file_bytes: self.file_bytes,
                offset: self.offset,
                data: Some(data),
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes an answer; `data` is a slice of `frame`.
    pub fn decode(frame: &Bytes) -> Result<BackupChunk, BodyError> {
        let t = flatbuffers::root::<afb::BackupChunk<'_>>(frame)
            .map_err(|e| BodyError::new("backup chunk", e))?;
        let data = match t.data() {
            Some(v) => frame.slice_ref(v.bytes()),
            None => Bytes::new(),
        };
        Ok(BackupChunk {
            group_id: t.group_id(),
            index: t.index(),
            term: t.term(),
            file_bytes: t.file_bytes(),
            offset: t.offset(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_refuse_garbage() {
        let b = encode_kv_request(7, ReadMode::Stale, b"payload");
        let e = decode_kv_request(&b).expect("decode");
        assert_eq!(e.group_id, 7);
        assert_eq!(e.read_mode, ReadMode::Stale);
        assert_eq!(&e.body[..], b"payload");
        assert!(decode_kv_request(&Bytes::from_static(b"garbage")).is_err());
        let s = encode_status_request(3, true);
        assert_eq!(decode_status_request(&s).expect("status"), (3, true));
        let a = AdminRequest {
            group_id: 1,
            node_id: 2,
            members: vec![1, 2, 3],
            observers: vec![4],
            prepare_index: 9,
            timeout_ms: 100,
            address: "127.0.0.1:4004".into(),
        };
        assert_eq!(AdminRequest::decode(&a.encode()).expect("admin"), a);
        let r = AdminResponse {
            index: 5,
            message: "ok".into(),
        };
        assert_eq!(AdminResponse::decode(&r.encode()).expect("resp"), r);
        let q = BackupReadRequest {
            group_id: 2,
            index: 77,
            offset: 4096,
            max_bytes: 1 << 20,
        };
        assert_eq!(BackupReadRequest::decode(&q.encode()).expect("read"), q);
        let c = BackupChunk {
            group_id: 2,
            index: 77,
            term: 3,
            file_bytes: 10_000,
            offset: 4096,
            data: Bytes::from_static(b"snapshot bytes"),
        };
        assert_eq!(BackupChunk::decode(&c.encode()).expect("chunk"), c);
        assert!(BackupChunk::decode(&Bytes::from_static(b"garbage")).is_err());
    }
}
