//! Crash test: a writer runs as a real child process
//! (`src/bin/crash_writer.rs`) and is killed with SIGKILL at random points,
//! hundreds of times over the same directory. After every kill the log is
//! reopened and checked:
//!
//! - it opens (recovery repairs a torn tail and never refuses);
//! - every entry the writer was told is synced (and, since a process crash
//!   keeps the page cache, every entry it was told is written) is present
//!   with the same term and an intact payload;
//! - nothing past the last entry the writer attempted exists, and the newest
//!   segment ends exactly at its last record (no garbage left behind);
//! - the hard state loads and is at least as new as the last one reported
//!   durable.
//!
//! With `sync_force` on, some kills are followed by damage to the unsynced
//! tail (cut, zeroed or overwritten bytes within the torn-tail window after
//! the last synced record), the way power loss leaves a file; then only the
//! synced entries must survive.
//!
//! `DT_CRASH_KILLS` sets the kills per mode (default 200 with sync_force on,
//! 100 with it off); `DT_CRASH_SEED` replays a run's choices.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dongting_store::testing::payload;
use dongting_store::{LogConfig, RaftLog, decode_record, load_hard_state};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const WRITER: &str = env!("CARGO_BIN_EXE_dongting-store-crash-writer");
/// The writer's `max_unsynced_bytes`: damage is only injected this close to the end.
const WINDOW_BYTES: u64 = 128 << 10;
const SEGMENT_HEADER_BYTES: usize = 32;

/// What the parent knows from the writer's reports.
#[derive(Debug, Default)]
struct Known {
    /// `term_of[i]` is the term the writer gave index `i` (0: unknown).
    term_of: Vec<u64>,
    /// Highest index ever attempted (reset from the log after each check).
    max_attempted: u64,
    written: u64,
    synced: u64,
    hard_state_term: u64,
}

impl Known {
    fn apply(&mut self, line: &str) {
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        match line.as_bytes().first() {
            Some(b'O') => {}
            Some(b'A') => {
                let (first, last, term) = (f[0], f[1], f[2]);
                if self.term_of.len() <= last as usize {
                    self.term_of.resize(last as usize + 1, 0);
                }
                self.term_of[first as usize..=last as usize].fill(term);
                self.max_attempted = self.max_attempted.max(last);
            }
            Some(b'T') => {
                let from = f[0];
                self.term_of.truncate(from as usize);
                self.written = self.written.min(from - 1);
                self.synced = self.synced.min(from - 1);
            }
            Some(b'P') => {
                self.written = f[0];
                self.synced = f[1];
            }
            Some(b'H') => self.hard_state_term = self.hard_state_term.max(f[0]),
            _ => panic!("unexpected line from the writer: {line:?}"),
        }
    }
}

/// The segment files, oldest first; none when the writer was killed before it
/// created the log directory.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir.join("log")) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", dir.join("log").display()),
    };
    let mut v: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// Record end offsets of the newest segment, with the index of each record.
fn scan(bytes: &[u8]) -> Vec<(u64, usize)> {
    let mut at = SEGMENT_HEADER_BYTES;
    let mut out = Vec::new();
    while at < bytes.len() {
        match decode_record(&bytes[at..]) {
            Ok((r, n)) => {
                at += n;
                out.push((r.index, at));
            }
            Err(_) => break,
        }
    }
    out
}

/// Damages the newest segment after the last synced record, within the
/// torn-tail window, as power loss might. Returns what was done.
fn tear_tail(dir: &Path, synced: u64, rng: &mut SmallRng) -> Option<String> {
    let newest = segments(dir).pop()?;
    let mut b = std::fs::read(&newest).unwrap();
    if b.len() <= SEGMENT_HEADER_BYTES {
        return None;
    }
    let durable_end = scan(&b)
        .iter()
        .take_while(|(i, _)| *i <= synced)
        .last()
        .map(|(_, end)| *end)
        .unwrap_or(SEGMENT_HEADER_BYTES);
    let start = durable_end.max(b.len().saturating_sub(WINDOW_BYTES as usize));
    if start >= b.len() {
        return None;
    }
    let at = rng.random_range(start..b.len());
    let what = match rng.random_range(0..3) {
        0 => {
            b.truncate(at);
            format!("cut at {at}")
        }
        1 => {
            let end = rng.random_range(at..=b.len());
            b[at..end].fill(0);
            format!("zeroed {at}..{end}")
        }
        _ => {
            let end = rng.random_range(at..=b.len().min(at + 4096));
            for x in &mut b[at..end] {
                *x = rng.random();
            }
            format!("garbage {at}..{end}")
        }
    };
    std::fs::write(&newest, &b).unwrap();
    Some(format!("{} {what}", newest.display()))
}

/// Reopens the log and checks it against what the writer reported; returns
/// the recovered entries' terms so the next round extends them.
fn check(dir: &Path, k: &mut Known, torn: bool, ctx: &str) {
    let mut log = RaftLog::open(dir, LogConfig::default())
        .unwrap_or_else(|e| panic!("{ctx}: refused to open after a crash: {e}"));
    let (first, last) = (log.first_index(), log.last_index());
    assert!(
        last >= k.synced,
        "{ctx}: synced {} but the log ends at {last}",
        k.synced
    );
    if !torn {
        assert!(
            last >= k.written,
            "{ctx}: written {} (survives a process crash) but the log ends at {last}",
            k.written
        );
    }
    assert!(
        last <= k.max_attempted.max(first - 1),
        "{ctx}: log ends at {last}, past the last attempted index {}",
        k.max_attempted
    );
    assert!(
        first <= k.synced + 1,
        "{ctx}: first index {first} past synced {}",
        k.synced
    );
    let mut term_of = vec![0u64; last as usize + 1];
    if last >= first {
        let got = log
            .read_blocking(first, last + 1, u64::MAX)
            .unwrap_or_else(|e| {
                panic!("{ctx}: reading {first}..={last}: {e}");
            });
        assert_eq!(got.len() as u64, last + 1 - first, "{ctx}");
        let mut prev_term = 0;
        for r in got {
            assert_eq!(
                r.payload,
                payload(r.index, r.term, r.payload.len()),
                "{ctx}: payload of {}",
                r.index
            );
            assert_eq!(r.kind, (r.index % 7) as u8, "{ctx}: kind of {}", r.index);
            assert!(r.term >= prev_term, "{ctx}: term goes down at {}", r.index);
            prev_term = r.term;
            if r.index <= k.synced || (!torn && r.index <= k.written) {
                assert_eq!(
                    r.term,
                    k.term_of.get(r.index as usize).copied().unwrap_or(0),
                    "{ctx}: entry {} reported durable has another term",
                    r.index
                );
            }
            term_of[r.index as usize] = r.term;
        }
    }
    drop(log);
    // Recovery left no garbage after the last record.
    if let Some(newest) = segments(dir).pop() {
        let b = std::fs::read(&newest).unwrap();
        let end = scan(&b)
            .last()
            .map(|(_, e)| *e)
            .unwrap_or(SEGMENT_HEADER_BYTES);
        assert_eq!(
            end,
            b.len(),
            "{ctx}: {} has bytes after its last record",
            newest.display()
        );
    }
    let hs = load_hard_state(&dongting_store::fs::OsFs, dir)
        .unwrap_or_else(|e| panic!("{ctx}: hard state: {e}"));
    if k.hard_state_term > 0 {
        let hs = hs.unwrap_or_else(|| panic!("{ctx}: hard state reported durable is missing"));
        assert!(
            hs.term >= k.hard_state_term,
            "{ctx}: hard state term {} older than the durable {}",
            hs.term,
            k.hard_state_term
        );
    }
    k.term_of = term_of;
    k.max_attempted = last;
    k.written = last;
    k.synced = last;
}

fn crash_loop(sync_force: bool, default_kills: u64) {
    let kills: u64 = std::env::var("DT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_kills);
    let seed: u64 = std::env::var("DT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test: sync_force={sync_force} kills={kills} DT_CRASH_SEED={seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mut k = Known::default();
    let t0 = Instant::now();
    let mut tears = 0;
    let mut max_last = 0;
    for round in 1..=kills {
        let term = round * 1000;
        let mut child = Command::new(WRITER)
            .arg(dir)
            .arg(if sync_force { "1" } else { "0" })
            .arg(term.to_string())
            .arg(rng.random::<u64>().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the crash writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Sometimes during recovery, mostly while appending.
        let delay = Duration::from_micros(rng.random_range(500..40_000));
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let mut lines = 0;
        for line in rx.try_iter() {
            k.apply(&line);
            lines += 1;
        }
        assert!(
            status.code().is_none(),
            "round {round}: the writer exited by itself ({status}) after {lines} lines; \
             run it by hand to see its error"
        );
        let torn = sync_force && rng.random_range(0..4) == 0;
        let mut ctx = format!("seed {seed} round {round} (killed after {delay:?}, {lines} lines)");
        if torn && let Some(what) = tear_tail(dir, k.synced, &mut rng) {
            tears += 1;
            ctx.push_str(&format!(", tail damaged: {what}"));
        }
        check(dir, &mut k, torn, &ctx);
        max_last = max_last.max(k.synced);
    }
    eprintln!(
        "crash test: sync_force={sync_force}: {kills} kills, {tears} torn tails, log reached index \
         {max_last}, {:?}",
        t0.elapsed()
    );
    assert!(
        max_last > 1000,
        "the writer made too little progress to test anything"
    );
}

#[test]
fn crash_sync_force_on() {
    crash_loop(true, 200);
}

#[test]
fn crash_sync_force_off() {
    crash_loop(false, 100);
}
