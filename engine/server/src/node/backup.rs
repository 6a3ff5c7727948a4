//! `CMD_ADMIN_BACKUP_READ`: a group's snapshot file read by offset, so an
//! admin tool can copy it off the node as a backup.
//!
//! The first read of a snapshot opens its file and keeps it open until the
//! last byte was read (or the stream was idle for [`IDLE`]): retention may
//! remove the file from the snapshot directory meanwhile, but the open file
//! stays readable, so a stream started on one snapshot ends on the same bytes
//! and can be resumed at any offset while it is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dongting_net::{Request, Responder, Status};
use dongting_proto::service::{BackupChunk, BackupReadRequest};
use dongting_store::{SNAPSHOT_DIR, SnapshotReader, open_snapshot_at};

use crate::shared::NodeShared;
use crate::storage::group_dir;

/// Most bytes one answer carries.
const MAX_READ_BYTES: u32 = 1 << 20;
/// A stream not read for this long releases its file.
const IDLE: Duration = Duration::from_secs(120);

/// Open snapshot files by (group, index), with when each was last read.
type Open = HashMap<(u32, u64), (Arc<SnapshotReader>, Instant)>;

/// The snapshot files being streamed, by group and index.
#[derive(Default)]
pub(super) struct BackupReaders {
    open: Mutex<Open>,
}

impl BackupReaders {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reader kept for `(group, index)`, or the file opened now. Blocking.
    fn reader(
        &self,
        shared: &NodeShared,
        group: u32,
        index: u64,
    ) -> Result<Arc<SnapshotReader>, (Status, String)> {
        let now = Instant::now();
        {
            let mut open = self.lock();
            open.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
            if let Some((r, used)) = open.get_mut(&(group, index)) {
                *used = now;
                return Ok(r.clone());
            }
        }
        let dir = group_dir(&shared.cfg.data_dir, group).join(SNAPSHOT_DIR);
        let r = open_snapshot_at(&dir, index)
            .map_err(|e| (Status::SYS_ERROR, e.to_string()))?
            .ok_or_else(|| {
                (
                    Status::CLIENT_ERROR,
                    format!(
                        "group {group} has no snapshot at index {index} on node {}; take a new one",
                        shared.node_id
                    ),
                )
            })?;
        let r = Arc::new(r);
        self.lock().insert((group, index), (r.clone(), now));
        Ok(r)
    }

    /// Serves one read: the slice of the file and whether it reached the end.
    fn read(
        &self,
        shared: &NodeShared,
        q: &BackupReadRequest,
    ) -> Result<BackupChunk, (Status, String)> {
        let r = self.reader(shared, q.group_id, q.index)?;
        let max = q.max_bytes.clamp(1, MAX_READ_BYTES) as usize;
        let data = r
            .read_raw(q.offset, max)
            .map_err(|e| (Status::SYS_ERROR, e.to_string()))?;
        if q.offset + data.len() as u64 >= r.file_bytes() {
            self.lock().remove(&(q.group_id, q.index));
        }
        Ok(BackupChunk {
            group_id: q.group_id,
            index: r.meta().last_index,
            term: r.meta().last_term,
            file_bytes: r.file_bytes(),
            offset: q.offset,
            data,
        })
    }
}

/// Answers a `CMD_ADMIN_BACKUP_READ` from a blocking thread (file reads).
pub(super) fn handle_backup_read(
    shared: &Arc<NodeShared>,
    readers: &Arc<BackupReaders>,
    req: Request,
    resp: Responder,
) {
    let q = match BackupReadRequest::decode(req.body()) {
        Ok(q) => q,
        Err(e) => {
            resp.reject_malformed(&e.to_string());
            return;
        }
    };
    if shared.group_tx(q.group_id).is_none() {
        resp.error(
            Status::RAFT_GROUP_NOT_FOUND,
            &format!(
                "group {} is not hosted on node {}",
                q.group_id, shared.node_id
            ),
        );
        return;
    }
    let shared = shared.clone();
    let readers = readers.clone();
    tokio::task::spawn_blocking(move || match readers.read(&shared, &q) {
        Ok(c) => resp.ok(&c.encode()),
        Err((status, msg)) => resp.error(status, &msg),
    });
}
