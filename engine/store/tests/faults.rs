//! Injected faults swept over every point of a workload: an fsync that fails
//! (and loses the unsynced tail, as a kernel dropping dirty pages would) at
//! the n-th sync, and a full disk during hard state saves and segment
//! creation.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_store::fs::FaultyFs;
use dongting_store::{HardState, LogConfig, LogRecord, RaftLog};

fn payload(index: u64, term: u64) -> Bytes {
    Bytes::from(format!("{index}:{term}:").repeat(8))
}

fn entries(from: u64, to: u64, term: u64) -> Vec<LogRecord> {
    (from..=to)
        .map(|index| LogRecord {
            index,
            term,
            kind: 1,
            payload: payload(index, term),
        })
        .collect()
}

fn cfg(fs: &FaultyFs) -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        max_entry_bytes: 1024,
        max_unsynced_bytes: 2048,
        disk_full_retry_ms: 5,
        fs: Arc::new(fs.clone()),
        ..LogConfig::default()
    }
}

/// Runs appends (with segment rolls), hard state saves and a suffix
/// truncation until the log stops or the workload ends. Returns the highest
/// synced index and durable hard state term it was told about, and the
/// term of every index at the time it was reported synced.
fn workload(log: &mut RaftLog) -> (u64, u64, Vec<u64>, Option<String>) {
    let mut term_of = vec![0u64];
    let mut synced = 0;
    let mut hs_term = 0;
    let mut term = 1;
    for batch in 0..40u64 {
        let r = if batch == 14 {
            term += 1;
            let from = log.last_index() - 7;
            term_of.truncate(from as usize);
            synced = synced.min(from - 1);
            log.truncate_suffix(from)
        } else if batch % 9 == 4 {
            log.save_hard_state(HardState {
                term,
                vote: 1,
                commit: synced,
                membership: Bytes::from_static(b"1,2,3"),
            })
        } else {
            let first = log.last_index() + 1;
            term_of.resize(first as usize + 5, term);
            log.append(&entries(first, first + 4, term))
        };
        if let Err(e) = r {
            return (synced, hs_term, term_of, Some(e.to_string()));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match log.poll_progress() {
                Ok(p) => {
                    synced = p.synced_index;
                    if let Some(hs) = log.durable_hard_state() {
                        hs_term = hs_term.max(hs.term);
                    }
                    if p.synced_index == log.last_index() {
                        break;
                    }
                }
                Err(e) => return (synced, hs_term, term_of, Some(e.to_string())),
            }
            assert!(Instant::now() < deadline, "no progress");
            log.wait_changed_blocking(Duration::from_millis(20));
        }
    }
    (synced, hs_term, term_of, None)
}

#[test]
fn fsync_failure_at_every_point_keeps_what_was_reported() {
    let mut stopped = 0;
    for n in 0..55i64 {
        let d = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let mut log = RaftLog::open(d.path(), cfg(&fs)).unwrap();
        fs.failpoints
            .lose_unsynced_on_sync_failure
            .store(true, Ordering::SeqCst);
        fs.failpoints.syncs_until_failure.store(n, Ordering::SeqCst);
        let (synced, hs_term, term_of, err) = workload(&mut log);
        if let Some(e) = &err {
            stopped += 1;
            assert!(e.contains("fsync"), "sync {n}: {e}");
            // sticky: nothing is accepted after a failed fsync
            let next = log.last_index() + 1;
            assert!(log.append(&entries(next, next, 9)).is_err(), "sync {n}");
        }
        drop(log);
        // Restart on a healthy disk: everything reported synced is there.
        let mut log = RaftLog::open(d.path(), LogConfig::default())
            .unwrap_or_else(|e| panic!("sync {n} ({err:?}): reopen refused: {e}"));
        assert!(
            log.last_index() >= synced,
            "sync {n} ({err:?}): reported synced {synced}, log ends at {}",
            log.last_index()
        );
        if synced > 0 {
            for r in log.read_blocking(1, synced + 1, u64::MAX).unwrap() {
                assert_eq!(
                    r.term, term_of[r.index as usize],
                    "sync {n}: index {}",
                    r.index
                );
                assert_eq!(r.payload, payload(r.index, r.term), "sync {n}");
            }
        }
        if hs_term > 0 {
            assert!(
                log.durable_hard_state().unwrap().term >= hs_term,
                "sync {n}"
            );
        }
    }
    assert!(stopped > 40, "only {stopped} runs hit the injected failure");
}

#[test]
fn disk_full_during_hard_state_and_segment_creation_resumes() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let mut log = RaftLog::open(d.path(), cfg(&fs)).unwrap();
    log.append(&entries(1, 5, 1)).unwrap();
    log.sync_blocking().unwrap();
    fs.failpoints.disk_full.store(true, Ordering::SeqCst);
    let hs = HardState {
        term: 2,
        vote: 3,
        commit: 5,
        membership: Bytes::new(),
    };
    log.save_hard_state(hs.clone()).unwrap();
    // needs a new segment (4 KiB segments)
    log.append(&entries(6, 60, 2)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.is_disk_full() {
        assert!(Instant::now() < deadline);
        log.wait_changed_blocking(Duration::from_millis(10));
    }
    assert_eq!(
        log.append(&entries(61, 61, 2)).unwrap_err().code(),
        "STORE_DISK_FULL"
    );
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(log.poll_progress().unwrap().synced_index, 5);
    assert_ne!(log.durable_hard_state(), Some(&hs));
    fs.failpoints.disk_full.store(false, Ordering::SeqCst);
    // the writer notices on its next retry
    while log.is_disk_full() {
        assert!(Instant::now() < deadline);
        log.wait_changed_blocking(Duration::from_millis(10));
    }
    let p = log.sync_blocking().unwrap();
    assert_eq!(p.synced_index, 60);
    assert_eq!(log.durable_hard_state(), Some(&hs));
    log.append(&entries(61, 70, 2)).unwrap();
    log.close().unwrap();
    let mut log = RaftLog::open(d.path(), LogConfig::default()).unwrap();
    assert_eq!(log.last_index(), 70);
    assert_eq!(log.durable_hard_state(), Some(&hs));
    let all = log.read_blocking(1, 71, u64::MAX).unwrap();
    assert!(all.iter().all(|r| r.payload == payload(r.index, r.term)));
}
