//! Clients that issue DtKV operations on a small set of keys and record each
//! one, with its call and return times, as the client saw it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_client::{ClientError, KvClient};
use dongting_kv::{KvError, Outcome};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::history::{History, Record};
use crate::lincheck::{Op, Operation, Ret};
use crate::watchlock::AckedWrite;

/// The directory every key of a run lives in.
pub const DIR: &str = "rb";

/// The keys of a run: `rb.k0` .. `rb.k<n-1>`. Batches use fixed pairs
/// (`k0,k1`, `k2,k3`, ...) so the checker's partitions stay small.
pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{DIR}.k{i}")).collect()
}

/// The shared recorder: a clock origin and the history.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    history: Mutex<History>,
}

impl Recorder {
    /// Starts the clock.
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            history: Mutex::new(History::default()),
        }
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Appends a record.
    pub fn push(&self, r: Record) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .records
            .push(r);
    }

    /// Records a fault now.
    pub fn fault(&self, text: String) {
        self.push(Record::Fault {
            at: self.now(),
            text,
        });
    }

    /// A copy of the history so far.
    pub fn history(&self) -> History {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// Counts of one client's operations.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientStats {
    /// Operations with a definite answer.
    pub ok: u64,
    /// Writes whose outcome is unknown.
    pub unknown: u64,
    /// Reads that failed (dropped from the history).
    pub failed_reads: u64,
    /// Writes that failed with a `retryable` error, taken at its word as
    /// not executed (dropped from the history; only when trusting it).
    pub refused_writes: u64,
}

/// How a client of the workload behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientMode {
    /// Only reads.
    pub reader: bool,
    /// Takes a failed write's `retryable` flag at its word: such a write did
    /// not happen (as the client documents), instead of counting every
    /// failed write as one whose outcome is unknown.
    pub trust_retryable: bool,
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Whether a failed call is a definite answer the workload never expects.
fn definite(e: &ClientError) -> bool {
    matches!(e, ClientError::Kv { .. } | ClientError::InvalidArgument(_))
}

/// What a write that failed without a definite answer means for the history:
/// its outcome is unknown, or (trusting the flag) a `retryable` failure says
/// it did not happen and it is dropped (`None`).
fn failed_write(e: &ClientError, mode: ClientMode) -> Option<Ret> {
    if mode.trust_retryable && e.retryable() {
        None
    } else {
        Some(Ret::Unknown)
    }
}

/// Runs one client until `stop`: random operations on `keys`, each recorded.
/// A `reader` only reads (it keeps the node it reads from for as long as
/// that node answers, which is how a deposed leader's stale answers would
/// reach a client).
pub async fn run_client(
    id: u64,
    mode: ClientMode,
    client: KvClient,
    keys: Arc<Vec<String>>,
    seed: u64,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Result<ClientStats, String> {
    let mut rng = SmallRng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut stats = ClientStats::default();
    // The last value this client saw per key, for compare-and-set.
    let mut seen: Vec<Option<String>> = vec![None; keys.len()];
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let ki = rng.random_range(0..keys.len());
        let key = keys[ki].as_str();
        let pair = (ki / 2) * 2;
        let pair_keys: Vec<&str> = keys[pair..(pair + 2).min(keys.len())]
            .iter()
            .map(String::as_str)
            .collect();
        let val = format!("c{id}-{seq}");
        let reader = mode.reader;
        let roll = if reader {
            // Gets and batch gets only.
            let r = rng.random_range(0..38);
            if r < 30 { r } else { r + 50 }
        } else {
            rng.random_range(0..100)
        };
        let invoke = rec.now();
        // The index and effect of an acknowledged write that changed keys.
        let mut acked: Option<AckedWrite> = None;
        // (op, outcome): outcome None = dropped (a failed read or a refused write).
        let (op, ret): (Op, Option<Ret>) = match roll {
            0..30 => {
                let op = Op::Get { key: b(key) };
                match client.get(0, key).await {
                    Ok(r) => {
                        let v = r.data.map(|n| n.value);
                        seen[ki] = v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
                        (op, Some(Ret::Value(v)))
                    }
                    Err(_) => (op, None),
                }
            }
            30..55 => {
                let op = Op::Put {
                    key: b(key),
                    value: b(&val),
                };
                match client.put(0, key, val.as_bytes()).await {
                    Ok(w) => {
                        acked = Some(AckedWrite {
                            index: w.index,
                            changes: vec![(b(key), Some(b(&val)))],
                        });
                        (op, Some(Ret::Done))
                    }
                    Err(e) if definite(&e) => return Err(format!("put {key}: {e}")),
                    Err(e) => (op, failed_write(&e, mode)),
                }
            }
            55..70 => {
                let expected = if rng.random_bool(0.8) {
                    seen[ki].clone()
                } else {
                    None
                };
                let new = if rng.random_bool(0.9) {
                    Some(val.clone())
                } else {
                    None
                };
                let op = Op::CompareAndSet {
                    key: b(key),
                    expected: expected.as_deref().map(b),
                    new: new.as_deref().map(b),
                };
                let r = client
                    .compare_and_set(
                        0,
                        key,
                        expected.as_deref().unwrap_or("").as_bytes(),
                        new.as_deref().unwrap_or("").as_bytes(),
                    )
                    .await;
                match r {
                    Ok(w) => {
                        // Absent to absent changes nothing and has no event.
                        if expected.is_some() || new.is_some() {
                            acked = Some(AckedWrite {
                                index: w.index,
                                changes: vec![(b(key), new.as_deref().map(b))],
                            });
                        }
                        (op, Some(Ret::Swapped(true)))
                    }
                    Err(ClientError::Kv {
                        error: KvError::CasMismatch(_),
                        ..
                    }) => (op, Some(Ret::Swapped(false))),
                    Err(e) if definite(&e) => return Err(format!("cas {key}: {e}")),
                    Err(e) => (op, failed_write(&e, mode)),
                }
            }
            70..80 => {
                let op = Op::Remove { key: b(key) };
                match client.remove(0, key).await {
                    Ok(w) => {
                        acked = Some(AckedWrite {
                            index: w.index,
                            changes: vec![(b(key), None)],
                        });
                        (op, Some(Ret::Removed(true)))
                    }
                    Err(ClientError::Kv {
                        error: KvError::NotFound(_),
                        ..
                    }) => (op, Some(Ret::Removed(false))),
                    Err(e) if definite(&e) => return Err(format!("remove {key}: {e}")),
                    Err(e) => (op, failed_write(&e, mode)),
                }
            }
            80..88 => {
                let op = Op::BatchGet(pair_keys.iter().map(|k| b(k)).collect());
                match client.batch_get(0, &pair_keys).await {
                    Ok(r) => {
                        let mut vals = Vec::new();
                        let mut bad = None;
                        for (k, item) in pair_keys.iter().zip(r.data) {
                            match item {
                                Ok(n) => vals.push(n.map(|n| n.value)),
                                Err(e) => bad = Some(format!("batch get {k}: {e}")),
                            }
                        }
                        if let Some(e) = bad {
                            return Err(e);
                        }
                        (op, Some(Ret::Values(vals)))
                    }
                    Err(_) => (op, None),
                }
            }
            88..95 => {
                let vals: Vec<String> =
                    (0..pair_keys.len()).map(|i| format!("{val}.{i}")).collect();
                let entries: Vec<(&str, &[u8])> = pair_keys
                    .iter()
                    .zip(&vals)
                    .map(|(k, v)| (*k, v.as_bytes()))
                    .collect();
                let op = Op::BatchPut(
                    pair_keys
                        .iter()
                        .zip(&vals)
                        .map(|(k, v)| (b(k), b(v)))
                        .collect(),
                );
                match client.batch_put(0, &entries).await {
                    Ok(w) => match w.outcome {
                        Outcome::Batch(rs) if rs.iter().all(Result::is_ok) => {
                            acked = Some(AckedWrite {
                                index: w.index,
                                changes: pair_keys
                                    .iter()
                                    .zip(&vals)
                                    .map(|(k, v)| (b(k), Some(b(v))))
                                    .collect(),
                            });
                            (op, Some(Ret::Done))
                        }
                        other => return Err(format!("batch put: unexpected outcome {other:?}")),
                    },
                    Err(e) if definite(&e) => return Err(format!("batch put: {e}")),
                    Err(e) => (op, failed_write(&e, mode)),
                }
            }
            _ => {
                let op = Op::BatchRemove(pair_keys.iter().map(|k| b(k)).collect());
                match client.batch_remove(0, &pair_keys).await {
                    Ok(w) => match w.outcome {
                        Outcome::Batch(rs) => {
                            let mut out = Vec::new();
                            let mut changes = Vec::new();
                            for (r, k) in rs.into_iter().zip(&pair_keys) {
                                match r {
                                    Ok(()) => {
                                        out.push(true);
                                        changes.push((b(k), None));
                                    }
                                    Err(KvError::NotFound(_)) => out.push(false),
                                    Err(e) => return Err(format!("batch remove: {e}")),
                                }
                            }
                            if !changes.is_empty() {
                                acked = Some(AckedWrite {
                                    index: w.index,
                                    changes,
                                });
                            }
                            (op, Some(Ret::Removals(out)))
                        }
                        other => return Err(format!("batch remove: unexpected outcome {other:?}")),
                    },
                    Err(e) if definite(&e) => return Err(format!("batch remove: {e}")),
                    Err(e) => (op, failed_write(&e, mode)),
                }
            }
        };
        let ret_at = rec.now();
        match ret {
            None if op.is_read() => stats.failed_reads += 1,
            None => stats.refused_writes += 1,
            Some(Ret::Unknown) => {
                stats.unknown += 1;
                rec.push(Record::Kv(Operation {
                    client: id,
                    invoke,
                    ret_at: None,
                    op,
                    ret: Ret::Unknown,
                }));
                // Back off: the cluster is likely unavailable.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(ret) => {
                if reader {
                    // Readers are answered in microseconds; pace them so a
                    // long run's history stays checkable.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                stats.ok += 1;
                rec.push(Record::Kv(Operation {
                    client: id,
                    invoke,
                    ret_at: Some(ret_at),
                    op,
                    ret,
                }));
                if let Some(a) = acked {
                    rec.push(Record::Acked(a));
                }
            }
        }
    }
    Ok(stats)
}

/// Reads every key once (retrying until `within` passes), recording each
/// read; returns the highest index read.
pub async fn final_reads(
    client: &KvClient,
    keys: &[String],
    rec: &Recorder,
    within: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + within;
    let mut top = 0;
    for key in keys {
        loop {
            let invoke = rec.now();
            match client.get(0, key).await {
                Ok(r) => {
                    let value = r.data.map(|n| n.value);
                    top = r.index.max(top);
                    rec.push(Record::Kv(Operation {
                        client: 0,
                        invoke,
                        ret_at: Some(rec.now()),
                        op: Op::Get { key: b(key) },
                        ret: Ret::Value(value.clone()),
                    }));
                    rec.push(Record::FinalRead {
                        index: r.index,
                        key: b(key),
                        value,
                    });
                    break;
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("final read of {key} failed: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(top)
}
