//! One group's durable state as the raft core sees it: the store's log, hard
//! state and snapshots behind the raft [`Storage`] trait.
//!
//! The group task owns a [`GroupStorage`] inside its raft node and reaches the
//! log through [`GroupStorage::log_mut`] to append; the raft core reads through
//! the trait. Reads of recent entries come from the store's cache; older ones
//! are read from disk on the calling task (`block_in_place`), which only
//! happens for a follower that fell far behind.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use dongting_raft::{
    Entry, EntryKind, HardState, LogId, Membership, RaftState, Snapshot, SnapshotMeta, Storage,
    StorageError,
};
use dongting_store::{LogConfig, LogRecord, RaftLog, SnapshotStore, StoreError};

/// Runs blocking file IO from a task: on a multi-thread runtime the worker is
/// handed over to other tasks meanwhile; elsewhere it simply runs.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn storage_err(e: StoreError) -> StorageError {
    StorageError::Other(e.to_string())
}

/// The raft log, hard state and snapshots of one group.
pub(crate) struct GroupStorage {
    log: RefCell<RaftLog>,
    snapshots: SnapshotStore,
    /// The entry just before the first one the raft core may read.
    start: LogId,
    hard_state: HardState,
    membership: Membership,
    /// The latest snapshot image, loaded on first use for sending to followers.
    snapshot_cache: RefCell<Option<Snapshot>>,
}

/// What [`GroupStorage::open`] recovered besides the storage itself.
pub(crate) struct Recovered {
    /// The storage, ready for the raft core.
    pub(crate) storage: GroupStorage,
    /// The state machine image of the latest snapshot (`None` without one), and
    /// the index it covers.
    pub(crate) snapshot: Option<(u64, Bytes)>,
}

impl GroupStorage {
    /// Opens (creating) the group directory, recovers the log and loads the
    /// latest snapshot. `seed` is the membership of a group that has no state yet.
    /// Blocking.
    pub(crate) fn open(
        dir: &Path,
        cfg: LogConfig,
        max_keep_snapshots: usize,
        seed: Membership,
    ) -> Result<Recovered, String> {
        let st = |e: StoreError| e.to_string();
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut log = RaftLog::open(dir, cfg).map_err(st)?;
        let snapshots =
            SnapshotStore::open(&dir.join(dongting_store::SNAPSHOT_DIR), max_keep_snapshots)
                .map_err(st)?;
        let mut start = LogId::default();
        let mut membership = seed;
        let mut snapshot = None;
        if let Some(info) = snapshots.latest().map_err(st)? {
            let image = read_image(&snapshots, &info).map_err(st)?;
            let m = Membership::decode(&info.meta.membership).map_err(|e| {
                format!(
                    "snapshot {}: membership does not decode: {e}",
                    info.path.display()
                )
            })?;
            start = LogId {
                index: info.meta.last_index,
                term: info.meta.last_term,
            };
            if m.index >= membership.index {
                membership = m;
            }
            snapshot = Some((info.meta.last_index, image));
            // A crash during an install can leave the log behind the snapshot.
            if log.last_index() < start.index || log.first_index() > start.index + 1 {
                log.reset(start.index + 1).map_err(st)?;
                log.sync_blocking().map_err(st)?;
            }
        } else if log.first_index() > 1 {
            return Err(format!(
                "{}: the log starts at index {} but there is no snapshot; restore the snapshot \
                 directory from a backup or remove the group directory to rebuild it from peers",
                dir.display(),
                log.first_index()
            ));
        }
        let mut hard_state = HardState::default();
        if let Some(hs) = log.durable_hard_state() {
            hard_state = HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            };
            if !hs.membership.is_empty() {
                let m = Membership::decode(&hs.membership).map_err(|e| {
                    format!(
                        "{}: hard state membership does not decode: {e}",
                        dir.display()
                    )
                })?;
                if m.index >= membership.index {
                    membership = m;
                }
            }
        }
        hard_state.commit = hard_state
            .commit
            .max(start.index)
            .min(log.last_index().max(start.index));
        // A node whose log starts at a snapshot it never saw a term for (one
        // restored from a backup) is at least in the snapshot's term, so the
        // entries it appends or accepts never carry a lower one.
        hard_state.term = hard_state.term.max(start.term);
        Ok(Recovered {
            storage: GroupStorage {
                log: RefCell::new(log),
                snapshots,
                start,
                hard_state,
                membership,
                snapshot_cache: RefCell::new(None),
            },
            snapshot,
        })
    }

    /// The log, for appends, truncations and progress.
    pub(crate) fn log_mut(&mut self) -> &mut RaftLog {
        self.log.get_mut()
    }

    /// Records a hard state and membership that were handed to the log to save.
    pub(crate) fn set_persisted_state(&mut self, hs: HardState, membership: Membership) {
        self.hard_state = hs;
        self.membership = membership;
    }

    /// Writes a snapshot of the state machine (its `image`) at `meta`, then
    /// compacts the log behind it when `delete_logs` is set. Blocking.
    #[cfg(test)]
    pub(crate) fn save_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        image: &[Bytes],
        delete_logs: bool,
    ) -> Result<(), StoreError> {
        let w = self.begin_snapshot(meta)?;
        write_image(w, image.iter().cloned())?;
        self.snapshot_written(meta, delete_logs).map(|_| ())
    }

    /// Starts writing a snapshot at `meta`: the returned writer may be filled
    /// and finished on another thread (see [`write_image`]), after which
    /// [`GroupStorage::snapshot_written`] makes it the log start. Creates the
    /// temporary file (blocking, quick).
    pub(crate) fn begin_snapshot(
        &self,
        meta: &SnapshotMeta,
    ) -> Result<dongting_store::SnapshotWriter, StoreError> {
        self.snapshots.begin(dongting_store::SnapshotMeta {
            last_index: meta.index,
            last_term: meta.term,
            membership: meta.membership.encode(),
        })
    }

    /// A snapshot begun with [`GroupStorage::begin_snapshot`] is on disk:
    /// applies retention and, unless a newer snapshot was installed
    /// meanwhile, moves the log start to it and schedules the log behind it
    /// for deletion. Returns whether the log start moved. Blocking (deletes
    /// old snapshot files).
    pub(crate) fn snapshot_written(
        &mut self,
        meta: &SnapshotMeta,
        delete_logs: bool,
    ) -> Result<bool, StoreError> {
        self.snapshots.apply_retention()?;
        if meta.index <= self.start.index {
            return Ok(false);
        }
        self.start = LogId {
            index: meta.index,
            term: meta.term,
        };
        *self.snapshot_cache.get_mut() = None;
        if delete_logs {
            self.log
                .get_mut()
                .compact_prefix(meta.index, std::time::Instant::now())?;
        }
        Ok(true)
    }

    /// Installs a snapshot received from the leader: the file, then a log that
    /// restarts after it. Blocking.
    pub(crate) fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let mut w = self.snapshots.begin(dongting_store::SnapshotMeta {
            last_index: snap.meta.index,
            last_term: snap.meta.term,
            membership: snap.meta.membership.encode(),
        })?;
        w.write(&snap.data)?;
        w.finish()?;
        self.snapshots.apply_retention()?;
        self.log.get_mut().reset(snap.meta.index + 1)?;
        self.start = LogId {
            index: snap.meta.index,
            term: snap.meta.term,
        };
        self.membership = snap.meta.membership.clone();
        *self.snapshot_cache.get_mut() = Some(snap.clone());
        Ok(())
    }

    /// Syncs and closes the log. Blocking.
    pub(crate) fn close(self) -> Result<(), StoreError> {
        self.log.into_inner().close()
    }
}

/// Writes state machine chunks into `w` framed as [`frame_image`] does, and
/// finishes the file (fsync, rename); returns the image's size in bytes.
/// Blocking.
pub(crate) fn write_image(
    mut w: dongting_store::SnapshotWriter,
    chunks: impl Iterator<Item = Bytes>,
) -> Result<u64, StoreError> {
    let mut bytes = 0;
    for chunk in chunks {
        w.write(&(chunk.len() as u32).to_le_bytes())?;
        w.write(&chunk)?;
        bytes += 4 + chunk.len() as u64;
    }
    w.finish().map(|_| bytes)
}

/// Frames state machine snapshot chunks into one image: `[u32 LE length][chunk]`...
#[cfg(test)]
pub(crate) fn frame_image(chunks: &[Bytes]) -> Bytes {
    use bytes::BufMut;
    let total: usize = chunks.iter().map(|c| c.len() + 4).sum();
    let mut b = BytesMut::with_capacity(total);
    for c in chunks {
        b.put_u32_le(c.len() as u32);
        b.put_slice(c);
    }
    b.freeze()
}

/// Splits an image made by [`frame_image`] back into chunks (zero-copy).
pub(crate) fn unframe_image(image: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < image.len() {
        let Some(len) = image.get(at..at + 4) else {
            return Err(format!("snapshot image truncated at byte {at}"));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let end = at + 4 + len;
        if end > image.len() {
            return Err(format!("snapshot chunk at byte {at} runs past the end"));
        }
        out.push(image.slice(at + 4..end));
        at = end;
    }
    Ok(out)
}

fn read_image(
    snapshots: &SnapshotStore,
    info: &dongting_store::SnapshotInfo,
) -> Result<Bytes, StoreError> {
    let mut r = snapshots.open_reader(info)?;
    let mut b = BytesMut::new();
    while let Some(chunk) = r.next_chunk()? {
        b.extend_from_slice(&chunk);
    }
    Ok(b.freeze())
}

fn to_entry(r: LogRecord) -> Result<Entry, StorageError> {
    let kind = EntryKind::from_code(r.kind).ok_or_else(|| {
        StorageError::Other(format!("unknown entry kind {} at {}", r.kind, r.index))
    })?;
    Ok(Entry {
        term: r.term,
        index: r.index,
        kind,
        data: r.payload,
    })
}

/// The store's record for a raft entry.
pub(crate) fn into_record(e: Entry) -> LogRecord {
    LogRecord {
        index: e.index,
        term: e.term,
        kind: e.kind.code(),
        payload: e.data,
    }
}

impl Storage for GroupStorage {
    fn initial_state(&self) -> Result<RaftState, StorageError> {
        Ok(RaftState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
        })
    }

    fn log_start(&self) -> LogId {
        self.start
    }

    fn last_index(&self) -> u64 {
        self.log.borrow().last_index().max(self.start.index)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index == self.start.index {
            return Ok(self.start.term);
        }
        if index < self.start.index {
            return Err(StorageError::Compacted(index));
        }
        self.log
            .borrow()
            .term_at(index)
            .ok_or(StorageError::Unavailable(index))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_bytes: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        if low >= high {
            return Ok(());
        }
        if low <= self.start.index {
            return Err(StorageError::Compacted(low));
        }
        if high - 1 > self.last_index() {
            return Err(StorageError::Unavailable(high - 1));
        }
        let cached = self.log.borrow().cached_entries(low, high, max_bytes);
        let records = match cached {
            Some(r) => r,
            None => blocking(|| self.log.borrow_mut().read_blocking(low, high, max_bytes))
                .map_err(storage_err)?,
        };
        out.reserve(records.len());
        for r in records {
            out.push(to_entry(r)?);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        if let Some(s) = self.snapshot_cache.borrow().as_ref()
            && s.meta.index == self.start.index
        {
            return Ok(s.clone());
        }
        let info = blocking(|| self.snapshots.latest())
            .map_err(storage_err)?
            .ok_or(StorageError::SnapshotTemporarilyUnavailable)?;
        let data = blocking(|| read_image(&self.snapshots, &info)).map_err(storage_err)?;
        let membership = Membership::decode(&info.meta.membership)
            .map_err(|e| StorageError::Other(format!("snapshot membership: {e}")))?;
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: info.meta.last_index,
                term: info.meta.last_term,
                membership,
            },
            data,
        };
        *self.snapshot_cache.borrow_mut() = Some(snap.clone());
        Ok(snap)
    }
}

/// Directory of group `group_id` under the node's data directory.
pub(crate) fn group_dir(data_dir: &Path, group_id: u32) -> PathBuf {
    data_dir.join(format!("group-{group_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_framing_round_trips_and_refuses_damage() {
        let chunks = vec![
            Bytes::from_static(b"a"),
            Bytes::new(),
            Bytes::from(vec![7u8; 1000]),
        ];
        let image = frame_image(&chunks);
        assert_eq!(unframe_image(&image).expect("unframe"), chunks);
        assert!(unframe_image(&image.slice(..image.len() - 1)).is_err());
        assert!(unframe_image(&Bytes::from_static(&[1, 0])).is_err());
        assert_eq!(
            unframe_image(&Bytes::new()).expect("empty"),
            Vec::<Bytes>::new()
        );
    }

    #[test]
    fn storage_recovers_log_hard_state_and_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = Membership::new(&[1, 2, 3], &[]);
        let rec =
            GroupStorage::open(dir.path(), LogConfig::default(), 2, seed.clone()).expect("open");
        assert!(rec.snapshot.is_none());
        let mut st = rec.storage;
        assert_eq!(st.last_index(), 0);
        assert_eq!(st.initial_state().expect("state").membership, seed);
        let entries: Vec<Entry> = (1..=5)
            .map(|i| Entry {
                term: 1,
                index: i,
                kind: EntryKind::Normal,
                data: Bytes::from(format!("e{i}")),
            })
            .collect();
        let recs: Vec<LogRecord> = entries.iter().cloned().map(into_record).collect();
        st.log_mut().append(&recs).expect("append");
        st.log_mut()
            .save_hard_state(dongting_store::HardState {
                term: 1,
                vote: 1,
                commit: 4,
                membership: seed.encode(),
            })
            .expect("hs");
        st.log_mut().sync_blocking().expect("sync");
        let mut out = Vec::new();
        st.entries(2, 4, u64::MAX, &mut out).expect("entries");
        assert_eq!(out, entries[1..3].to_vec());
        assert_eq!(st.term(5).expect("term"), 1);
        assert!(matches!(st.term(6), Err(StorageError::Unavailable(6))));
        let meta = SnapshotMeta {
            index: 3,
            term: 1,
            membership: seed.clone(),
        };
        st.save_snapshot(&meta, &[Bytes::from_static(b"img")], true)
            .expect("snapshot");
        assert_eq!(st.log_start(), LogId { index: 3, term: 1 });
        assert!(matches!(
            st.entries(3, 4, u64::MAX, &mut out),
            Err(StorageError::Compacted(3))
        ));
        let snap = st.snapshot().expect("snapshot");
        assert_eq!(snap.meta, meta);
        assert_eq!(
            unframe_image(&snap.data).expect("image"),
            vec![Bytes::from_static(b"img")]
        );
        st.close().expect("close");

        let rec = GroupStorage::open(
            dir.path(),
            LogConfig::default(),
            2,
            Membership::new(&[9], &[]),
        )
        .expect("reopen");
        let (index, image) = rec.snapshot.expect("snapshot recovered");
        assert_eq!(index, 3);
        assert_eq!(
            unframe_image(&image).expect("image"),
            vec![Bytes::from_static(b"img")]
        );
        let st = rec.storage;
        assert_eq!(st.initial_state().expect("state").hard_state.commit, 4);
        assert_eq!(st.initial_state().expect("state").membership, seed);
        assert_eq!(st.last_index(), 5);
        let mut out = Vec::new();
        st.entries(4, 6, u64::MAX, &mut out)
            .expect("entries after snapshot");
        assert_eq!(out, entries[3..5].to_vec());
    }
}
