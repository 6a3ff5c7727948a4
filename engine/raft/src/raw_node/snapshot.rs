//! Snapshots: describing and compacting on the application's behalf, streaming
//! one to a follower in chunks, and receiving and installing one.

use bytes::{Bytes, BytesMut};
use tracing::{debug, info};

use super::RawNode;
use super::Role;
use crate::error::StorageError;
use crate::progress::{ProgressState, SnapshotSend};
use crate::storage::Storage;
use crate::types::{LogId, Message, MessageBody, NodeId, Snapshot, SnapshotMeta};

impl<S: Storage> RawNode<S> {
    /// Metadata for a snapshot of the state machine at `index` (which must be
    /// applied): its term and the configuration in force there.
    pub fn snapshot_meta(&self, index: u64) -> Result<SnapshotMeta, StorageError> {
        if index > self.log.applied {
            return Err(StorageError::Unavailable(index));
        }
        let term = self.log.term(index)?;
        let membership = self
            .config_at(index)
            .cloned()
            .ok_or(StorageError::Compacted(index))?;
        Ok(SnapshotMeta {
            index,
            term,
            membership,
        })
    }

    /// The application compacted its storage log up to `index` (after creating a
    /// snapshot there). Entries `<= index` are no longer read from storage.
    pub fn on_compacted(&mut self, index: u64) -> Result<(), StorageError> {
        self.log.compacted(index)?;
        self.trim_config_history();
        Ok(())
    }

    pub(super) fn start_snapshot(&mut self, i: usize) {
        let snap = match self.log.store.snapshot() {
            Ok(s) => s,
            Err(e) => {
                debug!(group = self.cfg.group, node = self.id, peer = self.prs[i].0, error = %e, "snapshot not available yet");
                return;
            }
        };
        let to = self.prs[i].0;
        info!(
            group = self.cfg.group,
            node = self.id,
            peer = to,
            index = snap.meta.index,
            "sending snapshot"
        );
        let pr = &mut self.prs[i].1;
        pr.become_probe();
        pr.state = ProgressState::Snapshot;
        pr.snapshot = Some(SnapshotSend {
            meta: snap.meta,
            data: snap.data,
            offset: 0,
            in_flight: false,
        });
        self.send_snapshot_chunk(i);
    }

    pub(super) fn send_snapshot_chunk(&mut self, i: usize) {
        let seq = self.next_seq();
        let send_ms = self.now_ms;
        let chunk = self.cfg.snapshot_chunk_bytes;
        let (to, pr) = &mut self.prs[i];
        let to = *to;
        let Some(s) = pr.snapshot.as_mut() else {
            return;
        };
        let len = s.data.len() as u64;
        let start = s.offset.min(len);
        let end = (start + chunk).min(len);
        let data = s.data.slice(start as usize..end as usize);
        s.in_flight = true;
        let body = MessageBody::InstallSnapshot {
            meta: s.meta.clone(),
            offset: start,
            data,
            done: end == len,
            seq,
            send_ms,
        };
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    pub(super) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        snapshot_index: u64,
        next_offset: u64,
        done: bool,
        seq: u64,
        send_ms: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.peer(from) else {
            return;
        };
        let pr = &mut self.prs[i].1;
        pr.ack(seq, send_ms, 0);
        let Some(s) = pr.snapshot.as_mut() else {
            return;
        };
        if pr.state != ProgressState::Snapshot || s.meta.index != snapshot_index {
            return;
        }
        if done {
            info!(
                group = self.cfg.group,
                node = self.id,
                peer = from,
                index = snapshot_index,
                "snapshot installed by follower"
            );
            pr.match_index = pr.match_index.max(snapshot_index);
            pr.next_index = pr.match_index + 1;
            pr.become_probe();
            self.maybe_commit();
        } else {
            s.offset = next_offset;
            s.in_flight = false;
            self.send_snapshot_chunk(i);
        }
        self.check_reads();
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
        seq: u64,
        send_ms: u64,
    ) {
        if self.role == Role::Leader {
            return;
        }
        self.follow(from);
        let snapshot_index = meta.index;
        if meta.index > self.log.commit && self.log.match_term(meta.index, meta.term) {
            // Our log already holds the snapshot's last entry, hence (log
            // matching) everything before it: keep the log, which may hold
            // entries after the snapshot that a quorum counted on.
            self.commit_to(meta.index);
        }
        if meta.index <= self.log.commit {
            let body = MessageBody::SnapshotResponse {
                snapshot_index,
                next_offset: 0,
                done: true,
                seq,
                send_ms,
            };
            self.send(from, body);
            return;
        }
        if offset == 0 {
            self.incoming_snapshot = Some((meta.clone(), BytesMut::new()));
        }
        let expected = match &self.incoming_snapshot {
            Some((m, buf)) if *m == meta => buf.len() as u64,
            _ => 0,
        };
        if offset != expected {
            let body = MessageBody::SnapshotResponse {
                snapshot_index,
                next_offset: expected,
                done: false,
                seq,
                send_ms,
            };
            self.send(from, body);
            return;
        }
        let Some((_, buf)) = self.incoming_snapshot.as_mut() else {
            return;
        };
        buf.extend_from_slice(&data);
        let next_offset = buf.len() as u64;
        if done {
            let Some((meta, buf)) = self.incoming_snapshot.take() else {
                return;
            };
            self.install_snapshot(Snapshot {
                meta,
                data: buf.freeze(),
            });
        }
        let body = MessageBody::SnapshotResponse {
            snapshot_index,
            next_offset,
            done,
            seq,
            send_ms,
        };
        self.send(from, body);
    }

    fn install_snapshot(&mut self, snap: Snapshot) {
        info!(
            group = self.cfg.group,
            node = self.id,
            index = snap.meta.index,
            term = snap.meta.term,
            "installing snapshot"
        );
        self.log.restore(LogId {
            index: snap.meta.index,
            term: snap.meta.term,
        });
        self.restore_config(snap.meta.membership.clone());
        self.pending_snapshot = Some(snap);
    }
}
