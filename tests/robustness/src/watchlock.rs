//! Watchers and lock clients that run beside the KV workload, what they
//! record, and the checks of their records.
//!
//! Watchers follow the workload's keys (one the directory, one the keys by
//! name) from the index of the directory's creation and record every item
//! of their stream. Lock clients contend on one lock and record each hold:
//! the fencing token, when the acquire was sent and answered, and when the
//! release was sent. [`WatchOrder`] and [`Locks`] check those records.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dongting_client::KvClient;
use dongting_kv::NodeState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::history::{Check, CheckResult, History, Record};
use crate::lincheck::{Key, Value};
use crate::workload::Recorder;

/// The directory of the lock the lock clients contend on.
pub const LOCK_DIR: &str = "rl";
/// The lock the lock clients contend on.
pub const LOCK_KEY: &str = "rl.lock";
/// Slack allowed between a lease end counted by a client and the end the
/// server counts: the server stamps whole milliseconds of its wall clock.
pub const LEASE_SLACK_NS: u64 = 2_000_000;

/// An acknowledged write that changed keys: the raft index it was applied at
/// and the state it left (`None`: the key was removed).
#[derive(Debug, Clone)]
pub struct AckedWrite {
    /// Raft index of the write.
    pub index: u64,
    /// Each key it changed and what it left.
    pub changes: Vec<(Key, Option<Value>)>,
}

/// One thing a watcher recorded.
#[derive(Debug, Clone)]
pub enum WatchRecord {
    /// The stream was registered: events above `from_index` follow.
    Start {
        /// Watcher number.
        watcher: u64,
        /// Events with an index above this are delivered.
        from_index: u64,
    },
    /// An event.
    Event {
        /// Watcher number.
        watcher: u64,
        /// Raft index of the write.
        index: u64,
        /// The key.
        key: Key,
        /// Its value after the write (`None`: absent; a directory or lock
        /// node is recorded with its kind in angle brackets).
        value: Option<Value>,
    },
    /// The stream skipped to `resume_index`; the watcher re-reads.
    Compacted {
        /// Watcher number.
        watcher: u64,
        /// Events continue above this index.
        resume_index: u64,
    },
    /// A linearizable re-read of one key after a compaction.
    Reread {
        /// Watcher number.
        watcher: u64,
        /// The read's index.
        index: u64,
        /// The key.
        key: Key,
        /// What was read.
        value: Option<Value>,
    },
    /// The watcher stopped; the stream was complete up to `last_index`.
    End {
        /// Watcher number.
        watcher: u64,
        /// The stream's position when it stopped.
        last_index: u64,
        /// Where it had to reach (0: the runner gave up before setting it).
        target: u64,
        /// The server the stream was registered on.
        server: String,
    },
}

/// One lock hold as a lock client saw it (times in nanoseconds since the run
/// began).
#[derive(Debug, Clone)]
pub struct LockHold {
    /// Lock client number.
    pub client: u64,
    /// Fencing token of the grant.
    pub token: u64,
    /// When the acquire request was sent.
    pub sent: u64,
    /// When the grant was answered.
    pub answered: u64,
    /// When the release was sent.
    pub release_sent: u64,
    /// The lease asked for.
    pub lease_ns: u64,
}

impl LockHold {
    /// Until when the client may act as the holder: the release, or the end
    /// of the lease counted from the request, whichever is first.
    pub fn end(&self) -> u64 {
        self.release_sent.min(self.sent + self.lease_ns)
    }

    /// Whether the lease ran out (by the client's count) before the release.
    pub fn expired_locally(&self) -> bool {
        self.release_sent > self.sent + self.lease_ns
    }
}

fn state_value(state: NodeState, value: &Bytes) -> Option<Value> {
    match state {
        NodeState::Absent => None,
        NodeState::Value => Some(value.clone()),
        NodeState::Dir => Some(Bytes::from_static(b"<dir>")),
        NodeState::Lock => Some(Bytes::from_static(b"<lock>")),
    }
}

/// Shared between the runner and its watchers.
#[derive(Debug, Default)]
pub struct WatchControl {
    /// Once non-zero: the watchers stop when their stream is complete up to
    /// this index and nothing more is buffered.
    pub target: AtomicU64,
    /// The watchers stop now (the runner gave up waiting).
    pub give_up: AtomicBool,
}

/// Runs one watcher: `keys` watched from `from_index`, every item recorded;
/// after a compaction the workload `reread` keys are read again. Ends once
/// the control's target is reached (or given up).
pub async fn run_watcher(
    id: u64,
    client: KvClient,
    keys: Vec<String>,
    reread: Arc<Vec<String>>,
    from_index: u64,
    rec: Arc<Recorder>,
    ctl: Arc<WatchControl>,
) -> Result<u64, String> {
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let mut stream = loop {
        match client.watch(0, &key_refs, from_index).await {
            Ok(s) => break s,
            Err(e) if ctl.give_up.load(Ordering::Relaxed) => {
                return Err(format!("watcher {id}: watch not registered: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    rec.push(Record::Watch(WatchRecord::Start {
        watcher: id,
        from_index,
    }));
    let mut events = 0u64;
    loop {
        let target = ctl.target.load(Ordering::Acquire);
        let caught_up = target > 0 && stream.last_index() >= target;
        if !caught_up && ctl.give_up.load(Ordering::Relaxed) {
            break;
        }
        // `next` is cancel-safe; a short wait once caught up only times out
        // when nothing is buffered.
        let wait = if caught_up { 200 } else { 500 };
        let item = match tokio::time::timeout(Duration::from_millis(wait), stream.next()).await {
            Err(_) if caught_up => break,
            Err(_) => continue,
            Ok(Err(e)) => return Err(format!("watcher {id}: stream failed: {e}")),
            Ok(Ok(item)) => item,
        };
        match item {
            dongting_client::WatchItem::Event(ev) => {
                events += 1;
                rec.push(Record::Watch(WatchRecord::Event {
                    watcher: id,
                    index: ev.index,
                    key: ev.key.clone(),
                    value: state_value(ev.state, &ev.value),
                }));
            }
            dongting_client::WatchItem::Compacted { resume_index, .. } => {
                rec.push(Record::Watch(WatchRecord::Compacted {
                    watcher: id,
                    resume_index,
                }));
                for k in reread.iter() {
                    loop {
                        match client.get(0, k).await {
                            Ok(r) => {
                                rec.push(Record::Watch(WatchRecord::Reread {
                                    watcher: id,
                                    index: r.index,
                                    key: Bytes::copy_from_slice(k.as_bytes()),
                                    value: r.data.map(|n| n.value),
                                }));
                                break;
                            }
                            Err(e) if ctl.give_up.load(Ordering::Relaxed) => {
                                return Err(format!("watcher {id}: re-read of {k} failed: {e}"));
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
            }
        }
    }
    rec.push(Record::Watch(WatchRecord::End {
        watcher: id,
        last_index: stream.last_index(),
        target: ctl.target.load(Ordering::Acquire),
        server: stream
            .server()
            .map_or("none".to_string(), |a| a.to_string()),
    }));
    stream.close().await;
    client.close().await;
    Ok(events)
}

/// Counts of one lock client.
#[derive(Debug, Default, Clone, Copy)]
pub struct LockStats {
    /// Grants held and released.
    pub holds: u64,
    /// Attempts refused because another client held the lock.
    pub refused: u64,
    /// Attempts or releases that failed (outcome unknown).
    pub failed: u64,
}

/// Runs one lock client until `stop`: acquire (without waiting, or queued
/// for up to a second), hold for a random time shorter than the lease,
/// release; each hold recorded. A queued grant's lease is counted by the
/// server from the promotion, which comes after the acquire was sent, so the
/// lease counted from the sending ends no later than the server's.
pub async fn run_locker(
    id: u64,
    client: KvClient,
    lease: Duration,
    seed: u64,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Result<LockStats, String> {
    let mut rng = SmallRng::seed_from_u64(seed ^ id.wrapping_mul(0xd1b5_4a32_d192_ed03));
    let lock = client
        .create_lock(0, LOCK_KEY)
        .map_err(|e| format!("lock client {id}: {e}"))?;
    let lease_ms = lease.as_millis() as u64;
    let mut stats = LockStats::default();
    while !stop.load(Ordering::Relaxed) {
        // Half the attempts queue behind the holder for up to a second.
        let wait_ms = if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(100..1000)
        };
        let sent = rec.now();
        match lock.try_lock(lease_ms, wait_ms).await {
            Ok(Some(token)) => {
                let answered = rec.now();
                let hold = rng.random_range(1..=lease_ms / 5);
                tokio::time::sleep(Duration::from_millis(hold)).await;
                let release_sent = rec.now();
                if lock.unlock().await.is_err() {
                    stats.failed += 1;
                }
                stats.holds += 1;
                rec.push(Record::Lock(LockHold {
                    client: id,
                    token,
                    sent,
                    answered,
                    release_sent,
                    lease_ns: lease.as_nanos() as u64,
                }));
            }
            Ok(None) => {
                stats.refused += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(2..20))).await;
            }
            Err(_) => {
                // Maybe granted: release it (best effort) and back off.
                stats.failed += 1;
                let _ = lock.unlock().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = lock.unlock().await;
    client.close().await;
    Ok(stats)
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show_value(v: &Option<Value>) -> String {
    v.as_ref().map_or("(absent)".into(), |v| show(v))
}

/// The watch streams are right: per watcher, events come in index order
/// with no (index, key) twice; every acknowledged write of a watched key up
/// to where the stream stopped appears with the value it left, unless a
/// compaction notice covers its index (the watcher then re-read); and the
/// last state per key (events and re-reads) matches the final read.
///
/// `keys` are the workload's keys: the second watcher watches exactly them,
/// the first their directory.
#[derive(Debug, Default)]
pub struct WatchOrder;

impl Check for WatchOrder {
    fn check(&self, history: &History) -> CheckResult {
        let mut per: BTreeMap<u64, Vec<&WatchRecord>> = BTreeMap::new();
        let mut acked: Vec<&AckedWrite> = Vec::new();
        // The final read of each key: (read index, value).
        let mut final_read: HashMap<Key, (u64, Option<Value>)> = HashMap::new();
        for r in &history.records {
            match r {
                Record::Watch(w) => {
                    let id = match w {
                        WatchRecord::Start { watcher, .. }
                        | WatchRecord::Event { watcher, .. }
                        | WatchRecord::Compacted { watcher, .. }
                        | WatchRecord::Reread { watcher, .. }
                        | WatchRecord::End { watcher, .. } => *watcher,
                    };
                    per.entry(id).or_default().push(w);
                }
                Record::Acked(a) => acked.push(a),
                Record::FinalRead { index, key, value } => {
                    final_read.insert(key.clone(), (*index, value.clone()));
                }
                _ => {}
            }
        }
        let mut bad = Vec::new();
        let mut figures = Vec::new();
        if per.is_empty() {
            bad.push("no watcher recorded anything".to_string());
        }
        for (id, recs) in &per {
            let mut from = None;
            let mut end = None;
            // Events must be above `floor` (the start, or the last resume)
            // and at or above the previous event (a batch shares an index).
            let mut floor = 0u64;
            let mut last_event = 0u64;
            let mut pos = 0u64;
            let mut seen: HashSet<(u64, Key)> = HashSet::new();
            let mut values: HashMap<(u64, Key), Option<Value>> = HashMap::new();
            let mut covered: Vec<(u64, u64)> = Vec::new();
            // Per key: (index, value) of events and re-reads.
            let mut states: HashMap<Key, Vec<(u64, Option<Value>)>> = HashMap::new();
            let mut n_events = 0u64;
            for w in recs {
                match w {
                    WatchRecord::Start { from_index, .. } => {
                        from = Some(*from_index);
                        floor = *from_index;
                        pos = *from_index;
                    }
                    WatchRecord::Event {
                        index, key, value, ..
                    } => {
                        n_events += 1;
                        if *index <= floor || *index < last_event {
                            bad.push(format!(
                                "watcher {id}: event of {} at index {index} after position {}",
                                show(key),
                                floor.max(last_event)
                            ));
                        }
                        last_event = last_event.max(*index);
                        if !seen.insert((*index, key.clone())) {
                            bad.push(format!(
                                "watcher {id}: event of {} at index {index} delivered twice",
                                show(key)
                            ));
                        }
                        pos = pos.max(*index);
                        values.insert((*index, key.clone()), value.clone());
                        states
                            .entry(key.clone())
                            .or_default()
                            .push((*index, value.clone()));
                    }
                    WatchRecord::Compacted { resume_index, .. } => {
                        if *resume_index > pos {
                            covered.push((pos, *resume_index));
                            pos = *resume_index;
                        }
                        floor = floor.max(*resume_index);
                    }
                    WatchRecord::Reread {
                        index, key, value, ..
                    } => {
                        states
                            .entry(key.clone())
                            .or_default()
                            .push((*index, value.clone()));
                    }
                    WatchRecord::End {
                        last_index,
                        target,
                        server,
                        ..
                    } => {
                        end = Some(*last_index);
                        if *last_index < *target || *target == 0 {
                            bad.push(format!(
                                "watcher {id}: stream stalled at index {last_index} (its last \
                                 event at {last_event}), short of {target}, registered on {server}"
                            ));
                        }
                    }
                }
            }
            let (Some(from), Some(end)) = (from, end) else {
                bad.push(format!("watcher {id}: did not start and stop"));
                continue;
            };
            // Acknowledged writes (all of the workload's keys, which both
            // watchers cover) between the start and where the stream stopped.
            let mut missing = 0usize;
            let mut checked = 0usize;
            for a in &acked {
                if a.index <= from || a.index > end {
                    continue;
                }
                for (k, v) in &a.changes {
                    checked += 1;
                    if covered
                        .iter()
                        .any(|&(lo, hi)| a.index > lo && a.index <= hi)
                    {
                        continue;
                    }
                    match values.get(&(a.index, k.clone())) {
                        Some(got) if got == v => {}
                        Some(got) => bad.push(format!(
                            "watcher {id}: write at index {} left {} = {}, its event says {}",
                            a.index,
                            show(k),
                            show_value(v),
                            show_value(got)
                        )),
                        None => {
                            missing += 1;
                            if missing <= 10 {
                                bad.push(format!(
                                    "watcher {id}: acknowledged write at index {} of {} \
                                     (left {}) has no event",
                                    a.index,
                                    show(k),
                                    show_value(v)
                                ));
                            }
                        }
                    }
                }
            }
            if missing > 10 {
                bad.push(format!(
                    "watcher {id}: {missing} acknowledged writes without an event in all"
                ));
            }
            // The last state per key matches the final read.
            for (k, (read_at, v)) in &final_read {
                let last = states
                    .get(k)
                    .and_then(|s| s.iter().filter(|x| x.0 <= *read_at).max_by_key(|x| x.0));
                let got = last.map(|x| x.1.clone()).unwrap_or(None);
                if got != *v {
                    bad.push(format!(
                        "watcher {id}: last event of {} shows {}, the final read {}",
                        show(k),
                        show_value(&got),
                        show_value(v)
                    ));
                }
            }
            figures.push(format!(
                "watcher {id}: {n_events} events ({}..{end}], {checked} acknowledged changes \
                 checked, {} compactions",
                from,
                covered.len()
            ));
        }
        CheckResult {
            name: "watch-order",
            passed: bad.is_empty(),
            summary: if bad.is_empty() {
                figures.join("; ")
            } else {
                format!("{} problems with watch streams", bad.len())
            },
            detail: bad,
        }
    }
}

/// Lock holds do not overlap: in grant order (answer time) tokens strictly
/// increase, and each hold, from its grant's answer to its release or lease
/// end (counted from the acquire's sending), ends before the next token's
/// hold begins (up to [`LEASE_SLACK_NS`]).
#[derive(Debug, Default)]
pub struct Locks;

impl Check for Locks {
    fn check(&self, history: &History) -> CheckResult {
        let mut holds: Vec<&LockHold> = history
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Lock(h) => Some(h),
                _ => None,
            })
            .collect();
        let mut bad = Vec::new();
        if holds.is_empty() {
            bad.push("no lock was ever granted".to_string());
        }
        // Overlaps are listed first, then grants out of token order.
        let mut order = Vec::new();
        // A grant whose lease ran out before its answer came was never held
        // (the client counts the lease from its request): it may come late,
        // after later tokens were granted, as when the node that proposed it
        // was paused between applying it and answering.
        let mut held: Vec<&LockHold> = holds
            .iter()
            .copied()
            .filter(|h| h.end() > h.answered)
            .collect();
        held.sort_by_key(|h| (h.answered, h.token));
        for w in held.windows(2) {
            if w[1].token <= w[0].token {
                order.push(format!(
                    "token {} (client {}, answered at {:.3}s) granted after token {} \
                     (client {}, answered at {:.3}s)",
                    w[1].token,
                    w[1].client,
                    w[1].answered as f64 / 1e9,
                    w[0].token,
                    w[0].client,
                    w[0].answered as f64 / 1e9
                ));
            }
        }
        holds.sort_by_key(|h| (h.token, h.answered));
        let mut prev: Option<&LockHold> = None;
        for h in &holds {
            if h.end() <= h.answered {
                // The lease ran out before the answer came: never held.
                continue;
            }
            if let Some(p) = prev
                && h.answered + LEASE_SLACK_NS < p.end()
            {
                bad.push(format!(
                    "holds overlap: client {} held token {} until {:.3}s, client {} got token {} \
                     at {:.3}s",
                    p.client,
                    p.token,
                    p.end() as f64 / 1e9,
                    h.client,
                    h.token,
                    h.answered as f64 / 1e9
                ));
            }
            if prev.is_none_or(|p| h.end() > p.end()) {
                prev = Some(h);
            }
        }
        bad.append(&mut order);
        let expired = holds.iter().filter(|h| h.expired_locally()).count();
        let clients: HashSet<u64> = holds.iter().map(|h| h.client).collect();
        let n = bad.len();
        if n > 10 {
            bad.truncate(10);
            bad.push(format!("{n} problems in all"));
        }
        CheckResult {
            name: "locks",
            passed: bad.is_empty(),
            summary: if bad.is_empty() {
                format!(
                    "{} holds by {} clients, tokens increasing, no overlap ({} leases ran out \
                     before the release)",
                    holds.len(),
                    clients.len(),
                    expired
                )
            } else {
                format!("{n} lock problems")
            },
            detail: bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(client: u64, token: u64, sent: u64, answered: u64, release: u64) -> Record {
        Record::Lock(LockHold {
            client,
            token,
            sent,
            answered,
            release_sent: release,
            lease_ns: 1_000_000_000,
        })
    }

    #[test]
    fn overlapping_holds_fail_and_sequential_ones_pass() {
        let ms = 1_000_000;
        let ok = History {
            records: vec![
                hold(1, 10, 0, 5 * ms, 50 * ms),
                hold(2, 12, 20 * ms, 60 * ms, 90 * ms),
                // Lease ran out at 1.1 s before the release at 2 s.
                hold(1, 15, 100 * ms, 110 * ms, 2000 * ms),
                hold(3, 20, 1000 * ms, 1200 * ms, 1300 * ms),
            ],
        };
        let r = Locks.check(&ok);
        assert!(r.passed, "{r:?}");
        let overlap = History {
            records: vec![
                hold(1, 10, 0, 5 * ms, 50 * ms),
                hold(2, 12, 20 * ms, 30 * ms, 90 * ms),
            ],
        };
        let r = Locks.check(&overlap);
        assert!(!r.passed, "{r:?}");
        assert!(r.detail[0].contains("holds overlap"), "{r:?}");
        let order = History {
            records: vec![
                hold(1, 12, 0, 5 * ms, 50 * ms),
                hold(2, 10, 20 * ms, 60 * ms, 90 * ms),
            ],
        };
        let r = Locks.check(&order);
        assert!(!r.passed, "{r:?}");
        // The same out-of-order answer is fine when its lease had run out:
        // that grant was never held.
        let late = History {
            records: vec![
                hold(2, 12, 0, 5 * ms, 50 * ms),
                hold(1, 10, 20 * ms, 1500 * ms, 1600 * ms),
            ],
        };
        let r = Locks.check(&late);
        assert!(r.passed, "{r:?}");
        let r = Locks.check(&order);
        assert!(!r.passed, "{r:?}");
        assert!(
            r.detail.iter().any(|d| d.contains("granted after")),
            "{r:?}"
        );
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn ev(index: u64, key: &str, v: Option<&str>) -> Record {
        Record::Watch(WatchRecord::Event {
            watcher: 1,
            index,
            key: b(key),
            value: v.map(b),
        })
    }

    fn acked(index: u64, key: &str, v: Option<&str>) -> Record {
        Record::Acked(AckedWrite {
            index,
            changes: vec![(b(key), v.map(b))],
        })
    }

    fn fin(key: &str, v: Option<&str>) -> Record {
        Record::FinalRead {
            index: 100,
            key: b(key),
            value: v.map(b),
        }
    }

    fn start() -> Record {
        Record::Watch(WatchRecord::Start {
            watcher: 1,
            from_index: 1,
        })
    }

    fn end() -> Record {
        Record::Watch(WatchRecord::End {
            watcher: 1,
            last_index: 100,
            target: 100,
            server: "127.0.0.1:1".into(),
        })
    }

    #[test]
    fn watch_streams_are_checked() {
        let good = History {
            records: vec![
                start(),
                acked(3, "k", Some("a")),
                ev(3, "k", Some("a")),
                acked(5, "k", None),
                ev(5, "k", None),
                acked(7, "k", Some("b")),
                ev(7, "k", Some("b")),
                end(),
                fin("k", Some("b")),
            ],
        };
        let r = WatchOrder.check(&good);
        assert!(r.passed, "{r:?}");

        let missing = History {
            records: vec![
                start(),
                acked(3, "k", Some("a")),
                acked(7, "k", Some("b")),
                ev(7, "k", Some("b")),
                end(),
                fin("k", Some("b")),
            ],
        };
        let r = WatchOrder.check(&missing);
        assert!(!r.passed, "{r:?}");
        assert!(r.detail[0].contains("has no event"), "{r:?}");

        // A compaction covers the gap; the re-read supplies the state.
        let compacted = History {
            records: vec![
                start(),
                acked(3, "k", Some("a")),
                Record::Watch(WatchRecord::Compacted {
                    watcher: 1,
                    resume_index: 5,
                }),
                Record::Watch(WatchRecord::Reread {
                    watcher: 1,
                    index: 6,
                    key: b("k"),
                    value: Some(b("a")),
                }),
                end(),
                fin("k", Some("a")),
            ],
        };
        let r = WatchOrder.check(&compacted);
        assert!(r.passed, "{r:?}");

        let disorder = History {
            records: vec![
                start(),
                ev(7, "k", Some("b")),
                ev(3, "k", Some("a")),
                ev(7, "k", Some("b")),
                end(),
                fin("k", Some("a")),
            ],
        };
        let r = WatchOrder.check(&disorder);
        assert!(!r.passed, "{r:?}");
        assert!(
            r.detail.iter().any(|d| d.contains("after position")),
            "{r:?}"
        );
        assert!(
            r.detail.iter().any(|d| d.contains("delivered twice")),
            "{r:?}"
        );
        assert!(r.detail.iter().any(|d| d.contains("final read")), "{r:?}");
    }
}
