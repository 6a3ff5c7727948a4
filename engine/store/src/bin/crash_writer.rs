//! Crash-test writer: appends to a log until it is killed, printing every
//! watermark it is told about so the test that kills it (`tests/crash.rs`)
//! can check what survived.
//!
//! Usage: `dongting-store-crash-writer <group_dir> <sync_force 0|1> <term> <seed>`
//!
//! Output, one line each, flushed as soon as it is known:
//!
//! ```text
//! O <first_index> <last_index>      opened (recovery done)
//! A <first> <last> <term>           about to append first..=last in term
//! T <from_index> <new_term>         about to truncate from from_index
//! P <written_index> <synced_index>  progress reported by poll_progress
//! H <term> <commit>                 hard state reported durable
//! ```
//!
//! Payloads are a pure function of (index, term, length) (see [`payload`]) so
//! the checker can verify every byte. Runs until killed.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_store::testing::payload;
use dongting_store::{HardState, LogConfig, LogRecord, RaftLog, StoreError};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err(
            "usage: dongting-store-crash-writer <group_dir> <sync_force 0|1> <term> <seed>".into(),
        );
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let sync_force = args[2] == "1";
    let mut term: u64 = args[3].parse()?;
    let mut rng = Rng(args[4].parse::<u64>()? | 1);
    let cfg = LogConfig {
        sync_force,
        sync_interval_ms: 10,
        segment_bytes: 64 << 10,
        max_entry_bytes: 4096,
        max_unsynced_bytes: 128 << 10,
        cache_bytes: 256 << 10,
        auto_delete_log_delay_seconds: 0,
        ..LogConfig::default()
    };
    let mut log = RaftLog::open(&dir, cfg)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "O {} {}", log.first_index(), log.last_index())?;
    out.flush()?;
    let mut last_progress = (u64::MAX, u64::MAX);
    let mut last_hs = log.durable_hard_state().cloned();
    let mut batches = 0u64;
    loop {
        batches += 1;
        let roll = rng.below(100);
        if roll < 2 && log.last_index() >= log.first_index() {
            // A follower dropping a conflicting suffix, then continuing in a newer term.
            let last = log.last_index();
            let from = last - rng.below(40.min(last - log.first_index() + 1));
            term += 1;
            writeln!(out, "T {from} {term}")?;
            out.flush()?;
            log.truncate_suffix(from)?;
        } else if roll < 4 {
            let p = log.poll_progress()?;
            log.save_hard_state(HardState {
                term,
                vote: batches % 5,
                commit: p.synced_index,
                membership: Bytes::from(format!("m{term}")),
            })?;
        } else if roll < 6 {
            // Snapshot taken: drop everything older than the last 1000 synced entries.
            let p = log.poll_progress()?;
            log.compact_prefix(p.synced_index.saturating_sub(1000), Instant::now())?;
        } else {
            let first = log.last_index() + 1;
            let max_batch = if rng.below(4) == 0 { 200 } else { 20 };
            let n = 1 + rng.below(max_batch);
            let batch: Vec<LogRecord> = (first..first + n)
                .map(|index| {
                    let len = rng.below(300) as usize;
                    LogRecord {
                        index,
                        term,
                        kind: (index % 7) as u8,
                        payload: payload(index, term, len),
                    }
                })
                .collect();
            writeln!(out, "A {first} {} {term}", first + n - 1)?;
            out.flush()?;
            loop {
                match log.append(&batch) {
                    Ok(()) => break,
                    Err(StoreError::Backpressure { .. }) => {
                        log.wait_changed_blocking(Duration::from_millis(5));
                        log.poll_progress()?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if batches.is_multiple_of(4) {
            log.wait_changed_blocking(Duration::from_millis(1));
        }
        let p = log.poll_progress()?;
        if (p.written_index, p.synced_index) != last_progress {
            last_progress = (p.written_index, p.synced_index);
            writeln!(out, "P {} {}", p.written_index, p.synced_index)?;
            out.flush()?;
        }
        if log.durable_hard_state() != last_hs.as_ref() {
            last_hs = log.durable_hard_state().cloned();
            if let Some(hs) = &last_hs {
                writeln!(out, "H {} {}", hs.term, hs.commit)?;
                out.flush()?;
            }
        }
    }
}
