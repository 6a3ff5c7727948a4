//! Log behaviour: append, read, term lookup, truncation, compaction, reopen,
//! torn tails, corruption refusal and injected faults.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_store::fs::FaultyFs;
use dongting_store::testing::payload;
use dongting_store::{HardState, LogConfig, LogRecord, RaftLog, ReadOutcome, StoreError};

fn entries(from: u64, to: u64, term: u64, len: usize) -> Vec<LogRecord> {
    (from..=to)
        .map(|i| LogRecord {
            index: i,
            term,
            kind: (i % 3) as u8,
            payload: payload(i, term, len),
        })
        .collect()
}

fn small_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 8192,
        max_entry_bytes: 4096,
        max_unsynced_bytes: 4096 + 28,
        cache_bytes: 2048,
        ..LogConfig::default()
    }
}

fn wait_synced(log: &mut RaftLog, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = log.poll_progress().unwrap();
        if p.synced_index >= index {
            assert!(p.written_index >= p.synced_index);
            return;
        }
        assert!(Instant::now() < deadline, "not synced to {index}: {p:?}");
        log.wait_changed_blocking(Duration::from_millis(50));
    }
}

fn check_all(log: &mut RaftLog, from: u64, to: u64, term_of: impl Fn(u64) -> u64, len: usize) {
    let got = log.read_blocking(from, to + 1, u64::MAX).unwrap();
    assert_eq!(got.len() as u64, to + 1 - from);
    for r in got {
        let t = term_of(r.index);
        assert_eq!(r.term, t, "term of {}", r.index);
        assert_eq!(
            r.payload,
            payload(r.index, t, len),
            "payload of {}",
            r.index
        );
        assert_eq!(r.kind, (r.index % 3) as u8);
        assert_eq!(log.term_at(r.index), Some(t));
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn append_read_reopen_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1, 0));
    for b in 0..20u64 {
        let term = 1 + b / 7;
        log.append(&entries(b * 10 + 1, b * 10 + 10, term, 100))
            .unwrap();
    }
    wait_synced(&mut log, 200);
    // 128-byte records: 63 fit in an 8 KiB segment after its 32-byte header
    assert_eq!(segments(d.path()).len(), 4, "expected several segments");
    let term_of = |i: u64| 1 + (i - 1) / 70;
    check_all(&mut log, 1, 200, term_of, 100);
    // the tail is served from the cache without a disk read
    match log.read(195, 201, u64::MAX).unwrap() {
        ReadOutcome::Ready(v) => assert_eq!(v.len(), 6),
        ReadOutcome::Pending(_) => panic!("recent entries must come from the cache"),
    }
    // old entries need the disk
    match log.read(1, 3, u64::MAX).unwrap() {
        ReadOutcome::Pending(id) => {
            let mut got = None;
            while got.is_none() {
                log.wait_changed_blocking(Duration::from_millis(50));
                for (rid, r) in log.take_read_results() {
                    assert_eq!(rid, id);
                    got = Some(r.unwrap());
                }
            }
            assert_eq!(got.unwrap().len(), 2);
        }
        ReadOutcome::Ready(_) => panic!("old entries are not cached with a 2 KiB cache"),
    }
    // max_bytes limits a read but returns at least one entry
    assert_eq!(log.read_blocking(1, 100, 250).unwrap().len(), 2);
    assert_eq!(log.read_blocking(1, 100, 1).unwrap().len(), 1);
    assert_eq!(log.read(0, 5, 10).unwrap_err().code(), "STORE_UNAVAILABLE");
    assert_eq!(
        log.read(5, 202, 10).unwrap_err().code(),
        "STORE_UNAVAILABLE"
    );
    log.close().unwrap();

    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(
        (log.first_index(), log.last_index(), log.last_term()),
        (1, 200, 3)
    );
    let p = log.poll_progress().unwrap();
    assert_eq!((p.written_index, p.synced_index), (200, 200));
    check_all(&mut log, 1, 200, term_of, 100);
    log.append(&entries(201, 210, 3, 100)).unwrap();
    wait_synced(&mut log, 210);
    log.close().unwrap();
}

#[test]
fn append_validates_input_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    log.append(&entries(1, 5, 2, 10)).unwrap();
    let e = log.append(&entries(7, 8, 2, 10)).unwrap_err();
    assert_eq!(e.code(), "STORE_INVALID_ARGUMENT");
    let e = log.append(&entries(6, 7, 1, 10)).unwrap_err();
    assert_eq!(e.code(), "STORE_INVALID_ARGUMENT", "{e}");
    let e = log.append(&entries(6, 6, 2, 5000)).unwrap_err();
    assert_eq!(e.code(), "STORE_INVALID_ARGUMENT");
    let mut bad = entries(6, 8, 2, 10);
    bad[1].index = 9;
    assert!(log.append(&bad).is_err());
    assert_eq!(log.last_index(), 5);
    log.append(&entries(6, 6, 2, 10)).unwrap();
    wait_synced(&mut log, 6);
    let cfg = LogConfig {
        max_unsynced_bytes: 10,
        ..small_cfg()
    };
    assert_eq!(
        RaftLog::open(d.path(), cfg).unwrap_err().code(),
        "STORE_INVALID_ARGUMENT"
    );
}

#[test]
fn append_owned_moves_the_records_in_or_leaves_them() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    let mut batch = entries(1, 5, 2, 10);
    log.append_owned(&mut batch).unwrap();
    assert!(batch.is_empty(), "the records moved into the log");
    let mut gap = entries(7, 8, 2, 10);
    let e = log.append_owned(&mut gap).unwrap_err();
    assert_eq!(e.code(), "STORE_INVALID_ARGUMENT");
    assert_eq!(
        gap,
        entries(7, 8, 2, 10),
        "a refused batch is left as it was"
    );
    let mut next = entries(6, 9, 2, 10);
    log.append_owned(&mut next).unwrap();
    wait_synced(&mut log, 9);
    check_all(&mut log, 1, 9, |_| 2, 10);
}

#[test]
fn truncate_suffix_then_append_new_term() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    log.append(&entries(1, 150, 1, 100)).unwrap();
    wait_synced(&mut log, 150);
    let before = segments(d.path()).len();
    log.truncate_suffix(41).unwrap();
    assert_eq!(log.last_index(), 40);
    let p = log.poll_progress().unwrap();
    assert!(p.written_index <= 40 && p.synced_index <= 40);
    log.append(&entries(41, 60, 2, 100)).unwrap();
    wait_synced(&mut log, 60);
    assert!(segments(d.path()).len() < before);
    let term_of = |i: u64| if i <= 40 { 1 } else { 2 };
    check_all(&mut log, 1, 60, term_of, 100);
    assert_eq!(log.term_at(61), None);
    // truncating nothing is a no-op; before the first index is refused
    log.truncate_suffix(61).unwrap();
    log.close().unwrap();

    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(log.last_index(), 60);
    check_all(&mut log, 1, 60, term_of, 100);
    // truncate everything, then continue
    log.truncate_suffix(1).unwrap();
    assert_eq!(log.last_index(), 0);
    log.append(&entries(1, 3, 5, 100)).unwrap();
    wait_synced(&mut log, 3);
    log.close().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1, 3));
    check_all(&mut log, 1, 3, |_| 5, 100);
}

#[test]
fn compaction_deletes_whole_segments_after_delay() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        auto_delete_log_delay_seconds: 30,
        ..small_cfg()
    };
    let mut log = RaftLog::open(d.path(), cfg.clone()).unwrap();
    log.append(&entries(1, 300, 1, 100)).unwrap();
    wait_synced(&mut log, 300);
    let n0 = segments(d.path()).len();
    let t0 = Instant::now();
    log.compact_prefix(200, t0).unwrap();
    log.tick(t0 + Duration::from_secs(29)).unwrap();
    assert_eq!(log.first_index(), 1, "not before the delay");
    log.tick(t0 + Duration::from_secs(30)).unwrap();
    let first = log.first_index();
    assert!(first > 100 && first <= 201, "first index {first}");
    log.sync_blocking().unwrap();
    // deletion runs on the writer thread; a read after it is ordered after it
    check_all(&mut log, first, 300, |_| 1, 100);
    assert!(segments(d.path()).len() < n0);
    assert_eq!(log.term_at(first - 1), None);
    assert_eq!(log.read(1, 2, 10).unwrap_err().code(), "STORE_UNAVAILABLE");
    log.close().unwrap();
    let mut log = RaftLog::open(d.path(), cfg).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (first, 300));
    check_all(&mut log, first, 300, |_| 1, 100);
    // compacting past the end never deletes the newest segment
    let t1 = Instant::now();
    log.compact_prefix(1000, t1).unwrap();
    log.tick(t1 + Duration::from_secs(60)).unwrap();
    assert_eq!(log.last_index(), 300);
    assert!(log.first_index() <= 300);
    log.append(&entries(301, 301, 1, 100)).unwrap();
    wait_synced(&mut log, 301);
}

#[test]
fn reset_after_snapshot_install() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    log.append(&entries(1, 50, 1, 100)).unwrap();
    log.reset(1001).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1001, 1000));
    log.append(&entries(1001, 1010, 4, 100)).unwrap();
    wait_synced(&mut log, 1010);
    log.close().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1001, 1010));
    check_all(&mut log, 1001, 1010, |_| 4, 100);
    log.reset(2001).unwrap();
    log.close().unwrap();
    let log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (2001, 2000));
}

#[test]
fn hard_state_is_ordered_with_the_log() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(log.durable_hard_state(), None);
    let hs = HardState {
        term: 3,
        vote: 2,
        commit: 10,
        membership: Bytes::from_static(b"m"),
    };
    log.append(&entries(1, 10, 3, 10)).unwrap();
    log.save_hard_state(hs.clone()).unwrap();
    wait_synced(&mut log, 10);
    while log.durable_hard_state().is_none() {
        log.wait_changed_blocking(Duration::from_millis(50));
        log.poll_progress().unwrap();
    }
    assert_eq!(log.durable_hard_state(), Some(&hs));
    log.close().unwrap();
    let log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(log.durable_hard_state(), Some(&hs));
}

#[test]
fn sync_force_off_reports_written_before_synced() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync_force: false,
        sync_interval_ms: 300,
        ..small_cfg()
    };
    let mut log = RaftLog::open(d.path(), cfg).unwrap();
    log.append(&entries(1, 5, 1, 10)).unwrap();
    let t0 = Instant::now();
    let mut p = log.poll_progress().unwrap();
    while p.written_index < 5 {
        log.wait_changed_blocking(Duration::from_millis(20));
        p = log.poll_progress().unwrap();
    }
    if t0.elapsed() < Duration::from_millis(150) {
        assert_eq!(p.synced_index, 0, "synced before the interval");
    }
    wait_synced(&mut log, 5);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "synced on the interval"
    );
}

#[test]
fn backpressure_refuses_then_recovers() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_pending_batches: 2,
        ..small_cfg()
    };
    let mut log = RaftLog::open(d.path(), cfg).unwrap();
    let mut next = 1u64;
    let mut refused = 0;
    for _ in 0..2000 {
        match log.append(&entries(next, next, 1, 10)) {
            Ok(()) => next += 1,
            Err(StoreError::Backpressure {
                pending_batches, ..
            }) => {
                assert!(pending_batches >= 2);
                refused += 1;
                log.wait_changed_blocking(Duration::from_millis(10));
                log.poll_progress().unwrap();
            }
            Err(e) => panic!("{e}"),
        }
        assert!(log.pending().1 <= 2);
    }
    assert!(refused > 0, "the queue limit never applied");
    wait_synced(&mut log, next - 1);
}

#[test]
fn async_waker_is_woken() {
    use std::task::{Context, Poll, Wake, Waker};
    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let d = tempfile::tempdir().unwrap();
    let notified = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n2 = notified.clone();
    let cfg = LogConfig {
        notifier: Some(Arc::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })),
        ..small_cfg()
    };
    let mut log = RaftLog::open(d.path(), cfg).unwrap();
    let flag = Arc::new(Flag(false.into()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    while log.poll_changed(&mut cx).is_ready() {}
    log.append(&entries(1, 1, 1, 10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !flag.0.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "waker never woken");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(log.poll_changed(&mut cx), Poll::Ready(())));
    assert!(notified.load(Ordering::SeqCst) > 0);
    wait_synced(&mut log, 1);
}

// ---- torn tails and corruption ----

fn write_log(dir: &Path, n: u64) {
    let mut log = RaftLog::open(dir, small_cfg()).unwrap();
    log.append(&entries(1, n, 1, 100)).unwrap();
    wait_synced(&mut log, n);
    log.close().unwrap();
}

#[test]
fn torn_tail_is_truncated() {
    // a record cut short at every possible length, and garbage after the last record
    for cut in [1u64, 10, 27, 28, 60, 127] {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 30);
        let last = segments(d.path()).pop().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        f.set_len(len - cut).unwrap();
        drop(f);
        let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
        assert_eq!(log.last_index(), 29, "cut {cut}");
        check_all(&mut log, 1, 29, |_| 1, 100);
        log.append(&entries(30, 31, 2, 100)).unwrap();
        wait_synced(&mut log, 31);
        log.close().unwrap();
        let log = RaftLog::open(d.path(), small_cfg()).unwrap();
        assert_eq!(log.last_term(), 2);
    }
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 30);
    let last = segments(d.path()).pop().unwrap();
    let mut b = std::fs::read(&last).unwrap();
    b.extend_from_slice(&[0xAB; 300]);
    std::fs::write(&last, &b).unwrap();
    let log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(log.last_index(), 30);
    drop(log);
    // a torn write of zeros (unwritten pages after power loss) in the last record
    let mut b = std::fs::read(&last).unwrap();
    let n = b.len();
    b[n - 50..].fill(0);
    std::fs::write(&last, &b).unwrap();
    let log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(log.last_index(), 29);
}

#[test]
fn bit_flip_in_older_segment_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 200);
    let segs = segments(d.path());
    assert!(segs.len() >= 3);
    let victim = &segs[1];
    let mut b = std::fs::read(victim).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x04;
    std::fs::write(victim, &b).unwrap();
    let e = RaftLog::open(d.path(), small_cfg()).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.code(), "STORE_CORRUPT", "{msg}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "{msg}");
    assert!(msg.contains("log index"), "{msg}");
    assert!(msg.contains("replica"), "{msg}");
    // nothing was repaired behind the operator's back
    assert_eq!(std::fs::read(victim).unwrap(), b);
}

#[test]
fn bit_flip_early_in_newest_segment_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..small_cfg()
    };
    let mut log = RaftLog::open(d.path(), cfg.clone()).unwrap();
    log.append(&entries(1, 200, 1, 100)).unwrap();
    wait_synced(&mut log, 200);
    log.close().unwrap();
    let segs = segments(d.path());
    assert_eq!(segs.len(), 1);
    let mut b = std::fs::read(&segs[0]).unwrap();
    // far more than the torn-tail window (4124 bytes) before the end
    b[100] ^= 0x80;
    std::fs::write(&segs[0], &b).unwrap();
    let e = RaftLog::open(d.path(), cfg).unwrap_err();
    assert_eq!(e.code(), "STORE_CORRUPT", "{e}");
    assert!(e.to_string().contains("(log index 1)"), "{e}");
}

#[test]
fn damaged_segment_header_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 200);
    let segs = segments(d.path());
    let mut b = std::fs::read(&segs[0]).unwrap();
    b[17] ^= 1;
    std::fs::write(&segs[0], &b).unwrap();
    assert_eq!(
        RaftLog::open(d.path(), small_cfg()).unwrap_err().code(),
        "STORE_CORRUPT"
    );
}

#[test]
fn missing_middle_segment_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 200);
    let segs = segments(d.path());
    std::fs::remove_file(&segs[2]).unwrap();
    let e = RaftLog::open(d.path(), small_cfg()).unwrap_err();
    assert_eq!(e.code(), "STORE_CORRUPT");
    assert!(e.to_string().contains("previous segment ends"), "{e}");
}

// ---- injected faults ----

fn faulty_cfg(fs: &FaultyFs) -> LogConfig {
    LogConfig {
        fs: Arc::new(fs.clone()),
        disk_full_retry_ms: 10,
        ..small_cfg()
    }
}

#[test]
fn fsync_failure_stops_the_log_for_good() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut log = RaftLog::open(d.path(), faulty_cfg(&fs)).unwrap();
    log.append(&entries(1, 10, 1, 100)).unwrap();
    wait_synced(&mut log, 10);
    fs.failpoints.syncs_until_failure.store(0, Ordering::SeqCst);
    log.append(&entries(11, 20, 1, 100)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match log.poll_progress() {
            Err(e) => break e,
            Ok(p) => assert!(p.synced_index <= 10, "reported synced after a failed fsync"),
        }
        assert!(Instant::now() < deadline);
        log.wait_changed_blocking(Duration::from_millis(20));
    };
    assert_eq!(err.code(), "STORE_STOPPED");
    assert!(err.to_string().contains("fsync"), "{err}");
    // sticky, even after the disk "recovers"
    fs.failpoints
        .syncs_until_failure
        .store(-1, Ordering::SeqCst);
    assert_eq!(
        log.append(&entries(21, 21, 1, 1)).unwrap_err().code(),
        "STORE_STOPPED"
    );
    assert_eq!(log.truncate_suffix(5).unwrap_err().code(), "STORE_STOPPED");
    assert!(log.close().is_err());
    // everything reported synced is there after a restart
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert!(log.last_index() >= 10);
    let last = log.last_index();
    check_all(&mut log, 1, last, |_| 1, 100);
}

#[test]
fn write_error_stops_the_log() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut log = RaftLog::open(d.path(), faulty_cfg(&fs)).unwrap();
    log.append(&entries(1, 10, 1, 100)).unwrap();
    wait_synced(&mut log, 10);
    fs.failpoints.write_eio.store(true, Ordering::SeqCst);
    log.append(&entries(11, 12, 1, 100)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        if let Err(e) = log.poll_progress() {
            break e;
        }
        assert!(Instant::now() < deadline);
        log.wait_changed_blocking(Duration::from_millis(20));
    };
    assert_eq!(err.code(), "STORE_STOPPED");
    assert!(err.to_string().contains("write"), "{err}");
    drop(log);
    let log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(log.last_index(), 10);
}

#[test]
fn disk_full_refuses_writes_then_resumes() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut log = RaftLog::open(d.path(), faulty_cfg(&fs)).unwrap();
    log.append(&entries(1, 10, 1, 100)).unwrap();
    wait_synced(&mut log, 10);
    fs.failpoints.disk_full.store(true, Ordering::SeqCst);
    // enough to need a new segment too
    log.append(&entries(11, 100, 1, 100)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.is_disk_full() {
        assert!(Instant::now() < deadline, "disk full never reported");
        log.wait_changed_blocking(Duration::from_millis(20));
    }
    let e = log.append(&entries(101, 101, 1, 100)).unwrap_err();
    assert_eq!(e.code(), "STORE_DISK_FULL");
    assert!(e.is_retryable());
    let p = log.poll_progress().unwrap();
    assert!(p.synced_index < 100);
    // a crash now must find an intact log: reopen a second handle read-only style
    // by copying the directory as it is on disk
    let copy = tempfile::tempdir().unwrap();
    for s in segments(d.path()) {
        std::fs::create_dir_all(copy.path().join("log")).unwrap();
        std::fs::copy(&s, copy.path().join("log").join(s.file_name().unwrap())).unwrap();
    }
    let crashed = RaftLog::open(copy.path(), small_cfg()).unwrap();
    assert!(crashed.last_index() >= 10);
    drop(crashed);

    std::thread::sleep(Duration::from_millis(50));
    assert!(
        fs.failpoints.disk_full_hits.load(Ordering::SeqCst) >= 2,
        "writer retries"
    );
    fs.failpoints.disk_full.store(false, Ordering::SeqCst);
    wait_synced(&mut log, 100);
    assert!(!log.is_disk_full());
    log.append(&entries(101, 120, 1, 100)).unwrap();
    wait_synced(&mut log, 120);
    check_all(&mut log, 1, 120, |_| 1, 100);
    log.close().unwrap();
    let mut log = RaftLog::open(d.path(), small_cfg()).unwrap();
    assert_eq!(log.last_index(), 120);
    check_all(&mut log, 1, 120, |_| 1, 100);
}

#[test]
fn close_during_disk_full_returns_promptly() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut log = RaftLog::open(d.path(), faulty_cfg(&fs)).unwrap();
    fs.failpoints.disk_full.store(true, Ordering::SeqCst);
    log.append(&entries(1, 3, 1, 100)).unwrap();
    while !log.is_disk_full() {
        log.wait_changed_blocking(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    assert_eq!(log.close().unwrap_err().code(), "STORE_DISK_FULL");
    assert!(t0.elapsed() < Duration::from_secs(2));
}
