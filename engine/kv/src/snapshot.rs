//! Snapshots: a consistent image of the state machine at its applied index,
//! streamed as chunks while writes continue, and restore from those chunks.
//!
//! Stream layout: one `Header` chunk (format version, applied index, last leader
//! time), `Sessions` chunks, `Nodes` chunks, and a `Trailer` with the session
//! and node counts, so a truncated stream is detected. Each chunk is one
//! verified FlatBuffer (`SnapshotChunk` in `schema/kv.fbs`). Derived indexes
//! (children sets, expiry deadlines) are rebuilt on restore; the watch history
//! is not kept (a restored state machine's history starts at its applied index).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::codec::{build_write_result, state_from_fb, write_result_from_fb};
use crate::error::KvError;
use crate::fb;
use crate::history::EventHistory;
use crate::key::validate_key;
use crate::limits::KvLimits;
use crate::session::{Results, Session, Sessions};
use crate::sm::KvStateMachine;
use crate::store::{Holder, LockState, Node, NodeKind, Shard, Store, Ttl, Waiter};
use crate::types::{ClientId, NodeState};

/// The snapshot format version written in the header; restore refuses others.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// A snapshot being streamed. Holds the state as of `applied_index` (shared
/// copy-on-write shards plus a copy of the session table); iterate it to get the
/// chunks. Dropping it early releases the shards.
pub struct SnapshotStream {
    applied_index: u64,
    last_time_ms: u64,
    chunk_bytes: usize,
    started: bool,
    sessions: Vec<(ClientId, Session)>,
    shards: VecDeque<Arc<Shard>>,
    pending: VecDeque<Bytes>,
    session_count: u64,
    node_count: u64,
    done: bool,
}

impl std::fmt::Debug for SnapshotStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStream")
            .field("applied_index", &self.applied_index)
            .field("shards_left", &self.shards.len())
            .finish()
    }
}

impl SnapshotStream {
    /// The raft index this snapshot reflects.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }
}

impl KvStateMachine {
    /// Starts a snapshot of the current state at the applied index. Cost: one
    /// `Arc` clone per shard and a copy of the session table; the state machine
    /// keeps applying writes while the stream is consumed (each shard is copied
    /// at most once, on its first write, until the stream has passed it).
    pub fn snapshot(&self) -> SnapshotStream {
        let mut sessions: Vec<_> = self
            .sessions
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        sessions.sort_by_key(|(id, _)| *id);
        SnapshotStream {
            applied_index: self.applied_index,
            last_time_ms: self.last_time_ms,
            chunk_bytes: self.limits.snapshot_chunk_bytes.max(1),
            started: false,
            session_count: sessions.len() as u64,
            sessions,
            shards: self.store.share_shards().into(),
            pending: VecDeque::new(),
            node_count: 0,
            done: false,
        }
    }

    /// Replaces the whole state with the snapshot in `chunks`. On error the state
    /// is unchanged. The limits stay this state machine's own.
    pub fn restore<I>(&mut self, chunks: I) -> Result<(), KvError>
    where
        I: IntoIterator<Item = Bytes>,
    {
        let mut r = Restorer::new(self.limits.clone());
        for c in chunks {
            r.push(&c)?;
        }
        *self = r.finish()?;
        Ok(())
    }
}

fn chunk<'b>(b: &mut FlatBufferBuilder<'b>, args: &fb::SnapshotChunkArgs<'b>) -> Bytes {
    let root = fb::SnapshotChunk::create(b, args);
    b.finish(root, None);
    Bytes::copy_from_slice(b.finished_data())
}

fn build_node<'b>(
    b: &mut FlatBufferBuilder<'b>,
    key: &[u8],
    n: &Node,
) -> WIPOffset<fb::SnapNode<'b>> {
    let key = Some(b.create_vector(key));
    let (state, value, lock) = match &n.kind {
        NodeKind::Value(v) => (fb::NodeState::Value, Some(b.create_vector(v)), None),
        NodeKind::Dir => (fb::NodeState::Dir, None, None),
        NodeKind::Lock(l) => (fb::NodeState::Lock, None, Some(l)),
    };
    let waiters = lock.map(|l| {
        let ws: Vec<_> = l
            .waiters
            .iter()
            .map(|w| {
                fb::SnapWaiter::create(
                    b,
                    &fb::SnapWaiterArgs {
                        client_id: w.client_id,
                        lease_ms: w.lease_ms,
                        wait_deadline_ms: w.wait_deadline_ms,
                    },
                )
            })
            .collect();
        b.create_vector(&ws)
    });
    let holder = lock.map(|l| l.holder);
    fb::SnapNode::create(
        b,
        &fb::SnapNodeArgs {
            key,
            state,
            value,
            create_index: n.create_index,
            create_time_ms: n.create_time_ms,
            update_index: n.update_index,
            update_time_ms: n.update_time_ms,
            expire_version: n.expire_version,
            temp: n.ttl.is_some(),
            ttl_owner: n.ttl.map_or(0, |t| t.owner),
            ttl_deadline_ms: n.ttl.map_or(0, |t| t.deadline_ms),
            has_holder: holder.is_some(),
            holder_client_id: holder.map_or(0, |h| h.client_id),
            holder_token: holder.map_or(0, |h| h.token),
            lease_deadline_ms: holder.map_or(0, |h| h.lease_deadline_ms),
            waiters,
        },
    )
}

fn node_size(key: &[u8], n: &Node) -> usize {
    let v = match &n.kind {
        NodeKind::Value(v) => v.len(),
        NodeKind::Dir => 0,
        NodeKind::Lock(l) => l.waiters.len() * 40,
    };
    key.len() + v + 160
}

impl SnapshotStream {
    fn header(&self) -> Bytes {
        let mut b = FlatBufferBuilder::with_capacity(64);
        chunk(
            &mut b,
            &fb::SnapshotChunkArgs {
                kind: fb::SnapChunkKind::Header,
                format_version: SNAPSHOT_FORMAT_VERSION,
                applied_index: self.applied_index,
                last_time_ms: self.last_time_ms,
                ..Default::default()
            },
        )
    }

    /// Encodes the session table into `pending`, `chunk_bytes` at a time.
    fn encode_sessions(&mut self) {
        let sessions = std::mem::take(&mut self.sessions);
        let mut b = FlatBufferBuilder::with_capacity(self.chunk_bytes.min(1 << 20));
        let mut items = Vec::new();
        for (id, s) in &sessions {
            let results: Vec<_> = s
                .results
                .iter()
                .map(|(seq, r)| {
                    let result = Some(build_write_result(&mut b, r));
                    fb::SnapCached::create(&mut b, &fb::SnapCachedArgs { seq: *seq, result })
                })
                .collect();
            let results = Some(b.create_vector(&results));
            items.push(fb::SnapSession::create(
                &mut b,
                &fb::SnapSessionArgs {
                    client_id: *id,
                    floor: s.floor,
                    last_active_ms: s.last_active_ms,
                    results,
                },
            ));
            if b.unfinished_data().len() >= self.chunk_bytes {
                self.flush_sessions(&mut b, &mut items);
            }
        }
        if !items.is_empty() {
            self.flush_sessions(&mut b, &mut items);
        }
    }

    fn flush_sessions<'b>(
        &mut self,
        b: &mut FlatBufferBuilder<'b>,
        items: &mut Vec<WIPOffset<fb::SnapSession<'b>>>,
    ) {
        let sessions = Some(b.create_vector(items));
        let c = chunk(
            b,
            &fb::SnapshotChunkArgs {
                kind: fb::SnapChunkKind::Sessions,
                sessions,
                ..Default::default()
            },
        );
        self.pending.push_back(c);
        items.clear();
        b.reset();
    }

    /// Encodes one whole shard into `pending`, then lets the shard go.
    fn encode_shard(&mut self, shard: Arc<Shard>) {
        let mut b = FlatBufferBuilder::with_capacity(self.chunk_bytes.min(1 << 20));
        let mut items = Vec::new();
        let mut size = 0;
        for (k, n) in shard.iter() {
            items.push(build_node(&mut b, k, n));
            self.node_count += 1;
            size += node_size(k, n);
            if size >= self.chunk_bytes {
                self.flush_nodes(&mut b, &mut items);
                size = 0;
            }
        }
        if !items.is_empty() {
            self.flush_nodes(&mut b, &mut items);
        }
    }

    fn flush_nodes<'b>(
        &mut self,
        b: &mut FlatBufferBuilder<'b>,
        items: &mut Vec<WIPOffset<fb::SnapNode<'b>>>,
    ) {
        let nodes = Some(b.create_vector(items));
        let c = chunk(
            b,
            &fb::SnapshotChunkArgs {
                kind: fb::SnapChunkKind::Nodes,
                nodes,
                ..Default::default()
            },
        );
        self.pending.push_back(c);
        items.clear();
        b.reset();
    }
}

impl Iterator for SnapshotStream {
    type Item = Bytes;

    /// The next chunk. Cost: encoding about `snapshot_chunk_bytes` of state (a
    /// whole shard is encoded at once, then handed out chunk by chunk).
    fn next(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            self.encode_sessions();
            return Some(self.header());
        }
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Some(c);
            }
            if let Some(shard) = self.shards.pop_front() {
                self.encode_shard(shard);
                continue;
            }
            if self.done {
                return None;
            }
            self.done = true;
            let mut b = FlatBufferBuilder::with_capacity(64);
            return Some(chunk(
                &mut b,
                &fb::SnapshotChunkArgs {
                    kind: fb::SnapChunkKind::Trailer,
                    node_count: self.node_count,
                    session_count: self.session_count,
                    ..Default::default()
                },
            ));
        }
    }
}

/// Rebuilds a state machine from snapshot chunks fed one at a time (e.g. as
/// they arrive from the leader). Nothing is visible until [`Restorer::finish`].
#[derive(Debug)]
pub struct Restorer {
    limits: KvLimits,
    header: Option<(u64, u64)>,
    nodes: Vec<(Bytes, Node)>,
    sessions: Vec<(ClientId, Session)>,
    trailer: bool,
}

fn bad(msg: impl Into<String>) -> KvError {
    KvError::InvalidSnapshot(msg.into())
}

impl Restorer {
    /// A restorer producing a state machine with `limits`.
    pub fn new(limits: KvLimits) -> Restorer {
        Restorer {
            limits,
            header: None,
            nodes: Vec::new(),
            sessions: Vec::new(),
            trailer: false,
        }
    }

    /// Adds the next chunk. Fails on a malformed chunk or one out of order.
    pub fn push(&mut self, data: &[u8]) -> Result<(), KvError> {
        let opts = flatbuffers::VerifierOptions {
            max_tables: 100_000_000,
            ..Default::default()
        };
        let c = flatbuffers::root_with_opts::<fb::SnapshotChunk<'_>>(&opts, data)
            .map_err(|e| bad(format!("chunk does not verify: {e}")))?;
        if self.trailer {
            return Err(bad("chunk after the trailer"));
        }
        match c.kind() {
            fb::SnapChunkKind::Header => {
                if self.header.is_some() {
                    return Err(bad("second header chunk"));
                }
                if c.format_version() != SNAPSHOT_FORMAT_VERSION {
                    return Err(bad(format!(
                        "format version {} is not the supported {SNAPSHOT_FORMAT_VERSION}",
                        c.format_version()
                    )));
                }
                self.header = Some((c.applied_index(), c.last_time_ms()));
                return Ok(());
            }
            _ if self.header.is_none() => return Err(bad("first chunk is not a header")),
            fb::SnapChunkKind::Sessions => {
                for s in c.sessions().iter().flatten() {
                    let mut results = Results::default();
                    for r in s.results().iter().flatten() {
                        let wr = r
                            .result()
                            .ok_or_else(|| bad("cached result without body"))
                            .and_then(|x| write_result_from_fb(&x))?;
                        results.insert(r.seq(), wr);
                    }
                    self.sessions.push((
                        s.client_id(),
                        Session {
                            floor: s.floor(),
                            last_active_ms: s.last_active_ms(),
                            results,
                        },
                    ));
                }
            }
            fb::SnapChunkKind::Nodes => {
                for n in c.nodes().iter().flatten() {
                    self.nodes.push(self.node_from(&n)?);
                }
            }
            fb::SnapChunkKind::Trailer => {
                if c.node_count() != self.nodes.len() as u64
                    || c.session_count() != self.sessions.len() as u64
                {
                    return Err(bad(format!(
                        "trailer counts {} nodes and {} sessions, stream had {} and {}",
                        c.node_count(),
                        c.session_count(),
                        self.nodes.len(),
                        self.sessions.len()
                    )));
                }
                self.trailer = true;
            }
            other => return Err(bad(format!("unknown chunk kind {}", other.0))),
        }
        Ok(())
    }

    fn node_from(&self, n: &fb::SnapNode<'_>) -> Result<(Bytes, Node), KvError> {
        let key = Bytes::copy_from_slice(n.key().map(|k| k.bytes()).unwrap_or_default());
        validate_key(&key, self.limits.max_key_bytes, false)
            .map_err(|e| bad(format!("node key: {e}")))?;
        let state = state_from_fb(n.state()).map_err(|e| bad(e.to_string()))?;
        let kind = match state {
            NodeState::Value => {
                let v = n.value().map(|v| v.bytes()).unwrap_or_default();
                if v.is_empty() {
                    return Err(bad("value node with an empty value"));
                }
                NodeKind::Value(Bytes::copy_from_slice(v))
            }
            NodeState::Dir => NodeKind::Dir,
            NodeState::Lock => {
                if !n.has_holder() {
                    return Err(bad("lock node without a holder"));
                }
                let waiters = n
                    .waiters()
                    .iter()
                    .flatten()
                    .map(|w| Waiter {
                        client_id: w.client_id(),
                        lease_ms: w.lease_ms(),
                        wait_deadline_ms: w.wait_deadline_ms(),
                    })
                    .collect();
                NodeKind::Lock(Box::new(LockState {
                    holder: Holder {
                        client_id: n.holder_client_id(),
                        token: n.holder_token(),
                        lease_deadline_ms: n.lease_deadline_ms(),
                    },
                    waiters,
                }))
            }
            NodeState::Absent => return Err(bad("absent node in snapshot")),
        };
        Ok((
            key,
            Node {
                kind,
                create_index: n.create_index(),
                create_time_ms: n.create_time_ms(),
                update_index: n.update_index(),
                update_time_ms: n.update_time_ms(),
                expire_version: n.expire_version(),
                ttl: n.temp().then(|| Ttl {
                    owner: n.ttl_owner(),
                    deadline_ms: n.ttl_deadline_ms(),
                }),
            },
        ))
    }

    /// Checks completeness and the tree structure, then builds the state machine.
    pub fn finish(self) -> Result<KvStateMachine, KvError> {
        let Some((applied_index, last_time_ms)) = self.header else {
            return Err(bad("no header chunk"));
        };
        if !self.trailer {
            return Err(bad("stream ended before the trailer (truncated)"));
        }
        let store = Store::from_nodes(self.nodes).map_err(bad)?;
        let mut sessions = Sessions::default();
        for (id, s) in self.sessions {
            sessions.restore(id, s);
        }
        let history = EventHistory::new(
            applied_index,
            self.limits.max_history_events,
            self.limits.max_history_bytes,
        );
        tracing::info!(
            index = applied_index,
            nodes = store.len(),
            sessions = sessions.len(),
            "kv state restored from snapshot"
        );
        Ok(KvStateMachine {
            limits: self.limits,
            store,
            sessions,
            history,
            applied_index,
            last_time_ms,
        })
    }
}
