//! Append throughput of the raft log beside the disk's physical limits,
//! measured in the same run:
//!
//! - raw fdatasync rate: 4 KiB pwrite + fdatasync, back to back, one file;
//! - buffered write bandwidth: 256 MiB in 1 MiB pwrites into the page cache
//!   (best of three);
//! - durable write bandwidth: 1 MiB pwrites with an fdatasync every 16 MiB;
//! - `RaftLog::append` of 256-byte entries at batch sizes 1, 10, 100 and
//!   1000, with `sync_force` on (rate to `synced_index`) and off (rate to
//!   `written_index`; `synced_index` follows within `sync_interval_ms`).
//!
//! Run: `cargo bench -p dongting-store --bench append`. `DT_BENCH_DIR` picks
//! the directory (default: the system temp dir, which should be on the disk
//! under test); `DT_BENCH_SECONDS` the time per append case (default 2).

#![allow(clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_store::{LogConfig, LogRecord, RaftLog, StoreError};

const ENTRY_BYTES: usize = 256;

fn fdatasync_rate(dir: &Path) -> f64 {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("raw-fsync"))
        .unwrap();
    let block = vec![7u8; 4096];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(2) {
        f.write_all_at(&block, n * 4096).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Bytes per second writing `total` bytes in 1 MiB pwrites, with an
/// fdatasync every `sync_every` bytes (0: only at the end, not timed).
fn write_bandwidth(dir: &Path, total: u64, sync_every: u64) -> f64 {
    let path = dir.join("raw-bw");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let block = vec![9u8; 1 << 20];
    let t0 = Instant::now();
    let mut off = 0u64;
    while off < total {
        f.write_all_at(&block, off).unwrap();
        off += block.len() as u64;
        if sync_every > 0 && off.is_multiple_of(sync_every) {
            f.sync_data().unwrap();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    f.sync_data().unwrap();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    total as f64 / secs
}

struct AppendResult {
    entries_per_sec: f64,
    mib_per_sec: f64,
    entries: u64,
}

fn append_case(dir: &Path, sync_force: bool, batch: usize, seconds: f64) -> AppendResult {
    let group = tempfile::tempdir_in(dir).unwrap();
    let mut log = RaftLog::open(
        group.path(),
        LogConfig {
            sync_force,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let payloads: Vec<Bytes> = (0..batch)
        .map(|i| Bytes::from(vec![(i % 251) as u8; ENTRY_BYTES]))
        .collect();
    let mut next = 1u64;
    let t0 = Instant::now();
    let budget = Duration::from_secs_f64(seconds);
    let mut records = Vec::with_capacity(batch);
    while t0.elapsed() < budget {
        records.clear();
        records.extend(payloads.iter().enumerate().map(|(i, p)| LogRecord {
            index: next + i as u64,
            term: 1,
            kind: 0,
            payload: p.clone(),
        }));
        loop {
            match log.append(&records) {
                Ok(()) => break,
                Err(StoreError::Backpressure { .. }) => {
                    log.wait_changed_blocking(Duration::from_millis(1));
                    log.poll_progress().unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        next += batch as u64;
    }
    let last = next - 1;
    loop {
        let p = log.poll_progress().unwrap();
        let done = if sync_force {
            p.synced_index
        } else {
            p.written_index
        };
        if done >= last {
            break;
        }
        log.wait_changed_blocking(Duration::from_millis(1));
    }
    let secs = t0.elapsed().as_secs_f64();
    log.close().unwrap();
    let bytes = last as f64 * (ENTRY_BYTES + dongting_store::RECORD_HEADER_BYTES) as f64;
    AppendResult {
        entries_per_sec: last as f64 / secs,
        mib_per_sec: bytes / secs / (1 << 20) as f64,
        entries: last,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // else. Run a quick smoke pass unless benchmarking.
    let bench = std::env::args().any(|a| a == "--bench");
    let base = std::env::var_os("DT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let seconds: f64 = std::env::var("DT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 2.0 } else { 0.05 });
    let dir = tempfile::tempdir_in(&base).unwrap();
    let dir = dir.path();
    println!("directory: {}", base.display());
    if bench {
        let fsyncs = fdatasync_rate(dir);
        // Best of three: other work on the machine only ever slows it down.
        let buffered = (0..3)
            .map(|_| write_bandwidth(dir, 256 << 20, 0))
            .fold(0.0, f64::max);
        let durable = write_bandwidth(dir, 512 << 20, 16 << 20);
        println!("raw fdatasync (4 KiB pwrite + fdatasync): {fsyncs:.0} /s");
        println!(
            "raw write bandwidth, buffered (1 MiB pwrite): {:.0} MiB/s",
            buffered / (1 << 20) as f64
        );
        println!(
            "raw write bandwidth, durable (1 MiB pwrite, fdatasync every 16 MiB): {:.0} MiB/s",
            durable / (1 << 20) as f64
        );
    }
    println!();
    println!("| sync_force | batch | entries | entries/s | MiB/s (incl. 28 B headers) |");
    println!("|---|---:|---:|---:|---:|");
    for sync_force in [true, false] {
        for batch in [1usize, 10, 100, 1000] {
            let r = append_case(dir, sync_force, batch, seconds);
            println!(
                "| {} | {batch} | {} | {:.0} | {:.1} |",
                if sync_force { "on" } else { "off" },
                r.entries,
                r.entries_per_sec,
                r.mib_per_sec
            );
        }
    }
}
