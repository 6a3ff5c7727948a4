//! Sans-IO Raft consensus core for Dongting.
//!
//! The core holds no sockets, threads, clocks or files. Time, messages and
//! storage completions go in; messages to send, entries and hard state to
//! persist, entries to apply, snapshots to install and read results come out in a
//! [`Ready`]. The model is etcd's raft and raft-rs; `docs/raft.md` lists every
//! place where this core departs from the Raft paper.
//!
//! # The main loop
//!
//! ```
//! use bytes::Bytes;
//! use dongting_raft::{Config, MemStorage, Membership, RawNode, Role, Storage};
//!
//! // A single-node group: it elects itself after one election timeout.
//! let store = MemStorage::new(Membership::new(&[1], &[]));
//! let mut node = RawNode::new(Config::new(1), store, 0).unwrap();
//! let mut now_ms = 0;
//! let mut applied = Vec::new();
//! while applied.len() < 2 {
//!     now_ms += 100;
//!     node.tick(now_ms);
//!     if node.role() == Role::Leader && node.last_index() < 2 {
//!         node.propose(Bytes::from_static(b"hello")).unwrap();
//!     }
//!     if !node.has_ready() {
//!         continue;
//!     }
//!     let rd = node.ready();
//!     // 1. send rd.messages (leader traffic) to peers now.
//!     // 2. persist snapshot, entries, hard state and membership, in that order.
//!     node.store_mut().persist_ready(&rd).unwrap();
//!     // 3. send rd.persisted_messages only after persisting.
//!     // 4. apply committed entries to the state machine.
//!     for e in &rd.committed_entries {
//!         applied.push(e.index);
//!     }
//!     // 5. report what was persisted and applied.
//!     node.advance(&rd);
//! }
//! assert_eq!(node.role(), Role::Leader);
//! assert_eq!(node.commit_index(), 2); // the leader's noop and "hello"
//! assert_eq!(node.store().last_index(), 2);
//! ```

mod config;
mod error;
mod log;
mod membership;
mod progress;
mod raw_node;
mod storage;
mod types;

pub use config::Config;
#[cfg(feature = "mutations")]
pub use config::Mutation;
pub use error::{AdminError, DecodeError, InitError, ProposeError, ReadError, StorageError};
pub use membership::{
    ConfigTarget, JointConfig, Membership, Resolution, decode_prepare_index, encode_prepare_index,
};
pub use raw_node::{
    AdminOutcome, HeldProposal, PeerLag, Proposed, RawNode, ReadState, Ready, Role, Status,
};
pub use storage::{MemStorage, RaftState, Storage};
pub use types::{
    ENTRY_OVERHEAD_BYTES, Entry, EntryKind, HardState, LogId, Message, MessageBody, NONE, NodeId,
    Snapshot, SnapshotMeta,
};
