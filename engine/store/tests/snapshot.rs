//! Snapshot files: write and read back, damage detection, retention,
//! resumable install from a leader, and interrupted installs leaving the
//! previous state intact.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use dongting_store::fs::FaultyFs;
use dongting_store::{SnapshotMeta, SnapshotStore, WRITER_CHUNK_BYTES};

fn meta(last_index: u64, last_term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index,
        last_term,
        membership: Bytes::from(format!("members@{last_index}")),
    }
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn save(store: &SnapshotStore, m: SnapshotMeta, body: &[u8]) -> dongting_store::SnapshotInfo {
    let mut w = store.begin(m).unwrap();
    for part in body.chunks(100_000) {
        w.write(part).unwrap();
    }
    assert_eq!(w.data_bytes(), body.len() as u64);
    w.finish().unwrap()
}

fn read_all(store: &SnapshotStore, info: &dongting_store::SnapshotInfo) -> Vec<u8> {
    let mut r = store.open_reader(info).unwrap();
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk().unwrap() {
        out.extend_from_slice(&c);
    }
    out
}

/// The last index of every snapshot the store lists, oldest first.
fn last_indexes(store: &SnapshotStore) -> Vec<u64> {
    store
        .list()
        .unwrap()
        .iter()
        .map(|i| i.meta.last_index)
        .collect()
}

/// Another retention pass running at the same time: every listing loses its
/// oldest snapshot right after it is taken, and every removal finds the file
/// already gone.
#[derive(Debug)]
struct RacingFs;

impl dongting_store::fs::FileSystem for RacingFs {
    fn open(
        &self,
        path: &std::path::Path,
        mode: dongting_store::fs::OpenMode,
    ) -> std::io::Result<Arc<dyn dongting_store::fs::StoreFile>> {
        dongting_store::fs::OsFs.open(path, mode)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        dongting_store::fs::OsFs.remove_file(path)?;
        dongting_store::fs::OsFs.remove_file(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        dongting_store::fs::OsFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        dongting_store::fs::OsFs.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        dongting_store::fs::OsFs.create_dir_all(dir)
    }
    fn list_files(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        let names = dongting_store::fs::OsFs.list_files(dir)?;
        let mut snaps: Vec<&String> = names.iter().filter(|n| n.ends_with(".snap")).collect();
        snaps.sort();
        if let Some(oldest) = snaps.first() {
            dongting_store::fs::OsFs.remove_file(&dir.join(oldest))?;
        }
        Ok(names)
    }
}

#[test]
fn retention_tolerates_a_concurrent_pass() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(d.path(), 3).unwrap();
    for i in 1..=3u64 {
        save(&store, meta(100 * i, 2), &data(i, 1000));
    }
    let racing = SnapshotStore::open_with_fs(d.path(), 1, Arc::new(RacingFs)).unwrap();
    racing.apply_retention().unwrap();
    let idx = last_indexes(&store);
    assert_eq!(idx, vec![300]);
}

#[test]
fn write_read_and_retention() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(d.path(), 2).unwrap();
    assert_eq!(store.latest().unwrap(), None);
    let body = data(1, 3 * WRITER_CHUNK_BYTES + 17);
    let info = save(&store, meta(100, 3), &body);
    assert_eq!(info.meta, meta(100, 3));
    assert_eq!(read_all(&store, &info), body);
    // an empty snapshot is valid too
    let empty = save(&store, meta(150, 3), &[]);
    assert!(read_all(&store, &empty).is_empty());
    for i in 2..=4u64 {
        save(&store, meta(100 * i + 100, 4), &data(i, 1000));
    }
    // maxKeepSnapshots = 2: only the two newest remain
    let all = store.list().unwrap();
    let idx: Vec<u64> = all.iter().map(|i| i.meta.last_index).collect();
    assert_eq!(idx, vec![400, 500]);
    assert_eq!(store.latest().unwrap().unwrap().meta.last_index, 500);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
}

#[test]
fn damage_is_reported_with_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(d.path(), 2).unwrap();
    let body = data(7, 2 * WRITER_CHUNK_BYTES);
    let info = save(&store, meta(10, 1), &body);
    let clean = std::fs::read(&info.path).unwrap();
    for at in [20usize, 200, clean.len() / 2, clean.len() - 10] {
        let mut b = clean.clone();
        b[at] ^= 0x20;
        std::fs::write(&info.path, &b).unwrap();
        let r = store.open_reader(&info).and_then(|mut r| r.verify());
        let e = r.unwrap_err();
        assert_eq!(e.code(), "STORE_CORRUPT", "flip at {at}: {e}");
        assert!(e.to_string().contains(".snap"), "{e}");
    }
    // a truncated file (lost trailer) is damage too
    std::fs::write(&info.path, &clean[..clean.len() - 5]).unwrap();
    let e = store.open_reader(&info).unwrap().verify().unwrap_err();
    assert_eq!(e.code(), "STORE_CORRUPT");
}

#[test]
fn install_streams_resumes_and_switches_atomically() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = SnapshotStore::open(leader_dir.path(), 2).unwrap();
    let body = data(3, 5 * WRITER_CHUNK_BYTES / 2);
    let sent = save(&leader, meta(900, 7), &body);
    let reader = leader.open_reader(&sent).unwrap();

    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(d.path(), 2).unwrap();
    let old = save(&store, meta(100, 2), &data(9, 5000));

    // first attempt breaks off midway; the follower keeps its old snapshot
    let mut inst = store.begin_install().unwrap();
    let mut off = 0;
    while off < reader.file_bytes() / 2 {
        let c = reader.read_raw(off, 64 << 10).unwrap();
        inst.write_chunk(off, &c).unwrap();
        off += c.len() as u64;
    }
    // a gap is refused and changes nothing
    let far = inst.received_bytes() + 10;
    assert_eq!(
        inst.write_chunk(far, b"x").unwrap_err().code(),
        "STORE_INVALID_ARGUMENT"
    );
    // an incomplete transfer does not verify
    let e = inst.finish().unwrap_err();
    assert_eq!(e.code(), "STORE_CORRUPT", "{e}");
    assert_eq!(store.list().unwrap(), vec![old.clone()]);

    // second attempt resumes after a resend of an overlapping range
    let mut inst = store.begin_install().unwrap();
    let mut off = 0u64;
    let mut resent = false;
    loop {
        let c = reader.read_raw(off, 50_000).unwrap();
        if c.is_empty() {
            break;
        }
        inst.write_chunk(off, &c).unwrap();
        off += c.len() as u64;
        if !resent && off > 200_000 {
            resent = true;
            off -= 30_000;
        }
        assert_eq!(inst.received_bytes().max(off), inst.received_bytes());
    }
    let installed = inst.finish().unwrap();
    assert_eq!(installed.meta, meta(900, 7));
    assert_eq!(read_all(&store, &installed), body);
    let idx = last_indexes(&store);
    assert_eq!(idx, vec![100, 900]);
}

#[test]
fn damaged_transfer_is_rejected_and_changes_nothing() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = SnapshotStore::open(leader_dir.path(), 2).unwrap();
    let sent = save(&leader, meta(50, 1), &data(5, 300_000));
    let mut raw = std::fs::read(&sent.path).unwrap();
    let n = raw.len();
    raw[n / 3] ^= 1;

    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(d.path(), 2).unwrap();
    let old = save(&store, meta(10, 1), &data(1, 10));
    let mut inst = store.begin_install().unwrap();
    inst.write_chunk(0, &raw).unwrap();
    assert_eq!(inst.finish().unwrap_err().code(), "STORE_CORRUPT");
    assert_eq!(store.list().unwrap(), vec![old]);
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "temp file removed"
    );
}

#[test]
fn install_interrupted_by_a_crash_leaves_old_state() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(d.path(), 2).unwrap();
    let old = save(&store, meta(10, 1), &data(1, 1000));
    // A crash mid-install and mid-save: the temp files stay behind.
    let mut inst = store.begin_install().unwrap();
    inst.write_chunk(0, &data(2, 5000)).unwrap();
    std::mem::forget(inst);
    let mut w = store.begin(meta(20, 1)).unwrap();
    w.write(&data(3, 3 * WRITER_CHUNK_BYTES)).unwrap();
    std::mem::forget(w);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    // restart: temp files are removed, the old snapshot is the latest
    let store = SnapshotStore::open(d.path(), 2).unwrap();
    assert_eq!(store.list().unwrap(), vec![old.clone()]);
    assert_eq!(read_all(&store, &old), data(1, 1000));
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
}

#[test]
fn fsync_failure_while_publishing_keeps_old_snapshot() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let store = SnapshotStore::open_with_fs(d.path(), 2, Arc::new(fs.clone())).unwrap();
    let old = save(&store, meta(10, 1), &data(1, 1000));
    let mut w = store.begin(meta(20, 1)).unwrap();
    w.write(&data(2, 1000)).unwrap();
    fs.failpoints.syncs_until_failure.store(0, Ordering::SeqCst);
    assert_eq!(w.finish().unwrap_err().code(), "STORE_IO");
    fs.failpoints
        .syncs_until_failure
        .store(-1, Ordering::SeqCst);
    assert_eq!(store.list().unwrap(), vec![old]);
    // disk full while writing: clear error, nothing published
    fs.failpoints.disk_full.store(true, Ordering::SeqCst);
    assert_eq!(
        store.begin(meta(30, 1)).unwrap_err().code(),
        "STORE_DISK_FULL"
    );
    fs.failpoints.disk_full.store(false, Ordering::SeqCst);
    let mut w = store.begin(meta(30, 1)).unwrap();
    fs.failpoints.disk_full.store(true, Ordering::SeqCst);
    let r = w
        .write(&data(3, 2 * WRITER_CHUNK_BYTES))
        .and_then(|()| w.finish().map(|_| ()));
    assert_eq!(r.unwrap_err().code(), "STORE_DISK_FULL");
    fs.failpoints.disk_full.store(false, Ordering::SeqCst);
    assert_eq!(store.list().unwrap().len(), 1);
    save(&store, meta(40, 2), &data(4, 10));
    assert_eq!(store.latest().unwrap().unwrap().meta.last_index, 40);
}

#[test]
fn a_newer_snapshot_format_is_refused_by_name_and_left_in_place() {
    let d = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(d.path(), 2).unwrap();
    let info = save(&store, meta(10, 2), &data(1, 1000));
    let mut b = std::fs::read(&info.path).unwrap();
    // Version 2 with a valid header checksum: only the version is wrong.
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    let n = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
    let end = 32 + n;
    let crc = crc32c_of(&b[..end]);
    b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&info.path, &b).unwrap();
    drop(store);
    let e = SnapshotStore::open(d.path(), 2)
        .and_then(|s| s.latest())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), "STORE_UNSUPPORTED_VERSION", "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&info.path.display().to_string()), "{msg}");
    assert!(msg.contains("snapshot in format version 2"), "{msg}");
    assert!(msg.contains("reads format version 1 only"), "{msg}");
    assert_eq!(
        std::fs::read(&info.path).unwrap(),
        b,
        "the file was changed"
    );
}

/// CRC-32C (Castagnoli), bitwise: the snapshot header's checksum.
fn crc32c_of(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
