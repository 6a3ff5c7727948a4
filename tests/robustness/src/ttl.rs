//! A client that writes temporary keys (with a TTL) and records, besides its
//! operations, the expiries that may have happened, each with the earliest
//! instant it may have happened.
//!
//! The server stamps a temporary value's deadline as the leader's wall clock
//! when it proposes the write plus the TTL, and removes the value once a
//! leader's clock passes it (docs/kv.md, "Temporary nodes"). A write is
//! proposed after it was sent, so the deadline of a `put_temp` or an
//! `update_ttl` is at or after its call time plus its TTL; every node shares
//! the machine's clock, so only a small allowance is subtracted (the leader
//! stamps whole milliseconds).
//!
//! Each value is unique, so an expiry removes one value: [`Op::Expire`] with
//! that value, from its earliest instant, returning at infinity (the checker
//! places it before any read that saw the key absent, or not at all when the
//! value was overwritten or removed first). The deadline in force is the one
//! of the last write that armed it: the `put_temp` of the value or a later
//! `update_ttl` that found it. See [`expiries`] for which of those count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dongting_client::{ClientError, KvClient};
use dongting_kv::KvError;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::history::Record;
use crate::lincheck::{Key, Op, Operation, Ret, Value};
use crate::workload::{DIR, Recorder};

/// Keys per TTL client.
pub const KEYS_PER_CLIENT: usize = 4;
/// The shortest TTL written.
pub const MIN_TTL_MS: u64 = 300;
/// The longest TTL written.
pub const MAX_TTL_MS: u64 = 1500;
/// How much earlier than call time + TTL an expiry may happen: the leader
/// stamps deadlines in whole milliseconds of its wall clock, which moves with
/// the monotonic clock of the recorder on one machine.
pub const CLOCK_ALLOWANCE_NS: u64 = 5_000_000;

/// Client numbers of TTL clients start here (the workload's are 1..).
pub const CLIENT_BASE: u64 = 100;

/// One write of a TTL client, as far as expiries are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlWrite {
    /// When it was called.
    pub invoke: u64,
    /// When it returned; `None` when its outcome is unknown.
    pub ret_at: Option<u64>,
    /// Its TTL in nanoseconds (0 for a remove).
    pub ttl: u64,
    /// What it did.
    pub kind: TtlKind,
}

/// What a [`TtlWrite`] was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlKind {
    /// `put_temp` of a value.
    Put(Value),
    /// `update_ttl`; `found` is what a definite answer said (ignored when
    /// the outcome is unknown).
    Update {
        /// Whether the key existed.
        found: bool,
    },
    /// `remove`.
    Remove,
}

/// The expiries that may have happened on `key`, given every write of its
/// (only) writer in call order: one [`Op::Expire`] per value put, from the
/// earliest instant its deadline allows, minus `allowance`.
///
/// The deadline of a value is set by the last write that armed it. A write
/// is *sure* to have armed the value when it is its `put_temp`, or an
/// `update_ttl` that found the key while the value was surely the one held:
/// its put succeeded, no other write of the key succeeded since, and no
/// write of the key (before or since) has an unknown outcome, which could
/// take effect at any later time. A sure write supersedes every earlier one
/// that returned (the client is sequential). Other writes only *may* have
/// armed it: an `update_ttl` that found the key while it might have held
/// another value, and every `update_ttl` of the key with an unknown outcome.
/// The earliest expiry is the least deadline among the last sure write and
/// the writes that may have come after it.
pub fn expiries(key: &Key, writes: &[TtlWrite], allowance: u64) -> Vec<Operation> {
    struct Armed {
        value: Value,
        put_invoke: u64,
        /// The deadline of the last sure write.
        sure: u64,
        /// Deadlines of later writes that may have armed it.
        maybe: Vec<u64>,
    }
    let mut values: Vec<Armed> = Vec::new();
    // Deadlines of updates with an unknown outcome.
    let mut unknown_updates: Vec<u64> = Vec::new();
    // A put or remove of the key had an unknown outcome.
    let mut uncertain = false;
    // The value surely held, while `!uncertain`.
    let mut held: Option<usize> = None;
    for w in writes {
        let deadline = w.invoke.saturating_add(w.ttl);
        match &w.kind {
            TtlKind::Put(value) => {
                values.push(Armed {
                    value: value.clone(),
                    put_invoke: w.invoke,
                    sure: deadline,
                    maybe: Vec::new(),
                });
                if w.ret_at.is_some() {
                    held = Some(values.len() - 1);
                } else {
                    uncertain = true;
                    held = None;
                }
            }
            TtlKind::Remove => {
                if w.ret_at.is_none() {
                    uncertain = true;
                }
                held = None;
            }
            TtlKind::Update { found } => {
                let Some(ret_at) = w.ret_at else {
                    unknown_updates.push(deadline);
                    continue;
                };
                if !found {
                    // Whatever was held is gone (expired).
                    held = None;
                    continue;
                }
                match held {
                    Some(i) if !uncertain => {
                        values[i].sure = deadline;
                        values[i].maybe.clear();
                    }
                    _ => {
                        for v in values.iter_mut().filter(|v| v.put_invoke < ret_at) {
                            v.maybe.push(deadline);
                        }
                    }
                }
            }
        }
    }
    values
        .into_iter()
        .map(|v| {
            let earliest = v
                .maybe
                .iter()
                .chain(&unknown_updates)
                .fold(v.sure, |a, &d| a.min(d))
                .saturating_sub(allowance)
                .max(v.put_invoke);
            Operation {
                client: 0,
                invoke: earliest,
                ret_at: None,
                op: Op::Expire {
                    key: key.clone(),
                    value: v.value,
                },
                ret: Ret::Done,
            }
        })
        .collect()
}

/// Counts of one TTL client.
#[derive(Debug, Default, Clone, Copy)]
pub struct TtlStats {
    /// Operations with a definite answer.
    pub ok: u64,
    /// Writes whose outcome is unknown.
    pub unknown: u64,
    /// Reads and TTL updates that found a key absent that this client had
    /// put and not removed: expiries it saw.
    pub expired_seen: u64,
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn definite(e: &ClientError) -> bool {
    matches!(e, ClientError::Kv { .. } | ClientError::InvalidArgument(_))
}

/// One key of a TTL client: its current name (a new one after a write with
/// an unknown outcome, so that the uncertainty does not weaken the check of
/// later values) and the writes of each name.
struct Slot {
    name: String,
    generation: u32,
    /// Whether this client put the key and has not seen it gone since.
    present: bool,
}

/// Runs one TTL client until `stop`: `put_temp` with TTLs of 300–1500 ms,
/// gets, removes and `update_ttl` on its own keys `rb.t<id>_<k>`, with
/// pauses so that keys also run out, and now and then a value followed with
/// reads every 10 ms from shortly before its deadline until it is gone; records each operation, and at the end
/// the expiries that may have happened ([`expiries`]).
pub async fn run_ttl_client(
    id: u64,
    client: KvClient,
    seed: u64,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Result<TtlStats, String> {
    let me = CLIENT_BASE + id;
    let mut rng = SmallRng::seed_from_u64(seed ^ me.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut stats = TtlStats::default();
    let mut slots: Vec<Slot> = (0..KEYS_PER_CLIENT)
        .map(|k| Slot {
            name: format!("{DIR}.t{id}_{k}"),
            generation: 0,
            present: false,
        })
        .collect();
    // Writes per key name, in call order.
    let mut writes: Vec<(String, Vec<TtlWrite>)> = Vec::new();
    let mut seq = 0u64;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        seq += 1;
        let si = rng.random_range(0..slots.len());
        let key = slots[si].name.clone();
        let ttl_ms = rng.random_range(MIN_TTL_MS..=MAX_TTL_MS);
        let ttl = Duration::from_millis(ttl_ms);
        let val = format!("t{id}-{seq}");
        let roll = rng.random_range(0..100);
        let invoke = rec.now();
        // (op, outcome, write for the expiry windows); outcome None: a failed
        // read, dropped.
        let (op, ret, write): (Op, Option<Ret>, Option<TtlKind>) = match roll {
            0..30 => {
                let op = Op::Put {
                    key: b(&key),
                    value: b(&val),
                };
                let kind = Some(TtlKind::Put(b(&val)));
                match client.put_temp(0, &key, val.as_bytes(), ttl).await {
                    Ok(_) => {
                        slots[si].present = true;
                        (op, Some(Ret::Done), kind)
                    }
                    Err(e) if definite(&e) => break Err(format!("put_temp {key}: {e}")),
                    Err(_) => (op, Some(Ret::Unknown), kind),
                }
            }
            30..45 => {
                let op = Op::UpdateTtl { key: b(&key) };
                match client.update_ttl(0, &key, ttl).await {
                    Ok(_) => (
                        op,
                        Some(Ret::Found(true)),
                        Some(TtlKind::Update { found: true }),
                    ),
                    Err(ClientError::Kv {
                        error: KvError::NotFound(_),
                        ..
                    }) => {
                        if std::mem::take(&mut slots[si].present) {
                            stats.expired_seen += 1;
                        }
                        (
                            op,
                            Some(Ret::Found(false)),
                            Some(TtlKind::Update { found: false }),
                        )
                    }
                    Err(e) if definite(&e) => break Err(format!("update_ttl {key}: {e}")),
                    Err(_) => (
                        op,
                        Some(Ret::Unknown),
                        Some(TtlKind::Update { found: false }),
                    ),
                }
            }
            45..52 => {
                let op = Op::Remove { key: b(&key) };
                match client.remove(0, &key).await {
                    Ok(_) => {
                        slots[si].present = false;
                        (op, Some(Ret::Removed(true)), Some(TtlKind::Remove))
                    }
                    Err(ClientError::Kv {
                        error: KvError::NotFound(_),
                        ..
                    }) => {
                        if std::mem::take(&mut slots[si].present) {
                            stats.expired_seen += 1;
                        }
                        (op, Some(Ret::Removed(false)), Some(TtlKind::Remove))
                    }
                    Err(e) if definite(&e) => break Err(format!("remove {key}: {e}")),
                    Err(_) => (op, Some(Ret::Unknown), Some(TtlKind::Remove)),
                }
            }
            _ => {
                let op = Op::Get { key: b(&key) };
                match client.get(0, &key).await {
                    Ok(r) => {
                        let v = r.data.map(|n| n.value);
                        if v.is_none() && std::mem::take(&mut slots[si].present) {
                            stats.expired_seen += 1;
                        }
                        (op, Some(Ret::Value(v)), None)
                    }
                    Err(_) => (op, None, None),
                }
            }
        };
        let ret_at = rec.now();
        let unknown = ret == Some(Ret::Unknown);
        if let Some(kind) = write {
            let w = TtlWrite {
                invoke,
                ret_at: (!unknown).then_some(ret_at),
                ttl: ttl.as_nanos() as u64,
                kind,
            };
            match writes.last_mut() {
                Some((k, ws)) if *k == key => ws.push(w),
                _ => match writes.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, ws)) => ws.push(w),
                    None => writes.push((key.clone(), vec![w])),
                },
            }
        }
        match ret {
            None => {}
            Some(ret) => {
                if unknown {
                    stats.unknown += 1;
                } else {
                    stats.ok += 1;
                }
                rec.push(Record::Kv(Operation {
                    client: me,
                    invoke,
                    ret_at: (!unknown).then_some(ret_at),
                    op,
                    ret,
                }));
            }
        }
        if matches!(roll, 0..30) && !unknown && rng.random_range(0..8) == 0 {
            // Follow this value to its end: read it from shortly before its
            // deadline until it is gone, so that the expiry is seen close
            // to the earliest instant the window allows.
            let deadline = invoke + ttl.as_nanos() as u64;
            let wait = deadline.saturating_sub(rec.now() + 30_000_000);
            tokio::time::sleep(Duration::from_nanos(wait)).await;
            while !stop.load(Ordering::Relaxed) && rec.now() < deadline + 1_000_000_000 {
                let invoke = rec.now();
                let Ok(r) = client.get(0, &key).await else {
                    break;
                };
                let v = r.data.map(|n| n.value);
                let gone = v.is_none();
                stats.ok += 1;
                rec.push(Record::Kv(Operation {
                    client: me,
                    invoke,
                    ret_at: Some(rec.now()),
                    op: Op::Get { key: b(&key) },
                    ret: Ret::Value(v),
                }));
                if gone {
                    if std::mem::take(&mut slots[si].present) {
                        stats.expired_seen += 1;
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if unknown {
            // A put or remove whose outcome is unknown makes the key's
            // state uncertain from now on: continue on a fresh name. (An
            // update with an unknown outcome only widens windows.)
            if !matches!(roll, 30..45) {
                let s = &mut slots[si];
                s.generation += 1;
                s.name = format!("{DIR}.t{id}_{si}g{}", s.generation);
                s.present = false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else if rng.random_range(0..20) == 0 {
            // Leave every key alone for a while, so some run out.
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1600))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(5..60))).await;
        }
    };
    for (key, ws) in &writes {
        for e in expiries(&b(key), ws, CLOCK_ALLOWANCE_NS) {
            rec.push(Record::Kv(e));
        }
    }
    result.map(|()| stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lincheck::tests::linearizable;

    const MS: u64 = 1_000_000;

    fn w(invoke_ms: u64, ret_ms: Option<u64>, ttl_ms: u64, kind: TtlKind) -> TtlWrite {
        TtlWrite {
            invoke: invoke_ms * MS,
            ret_at: ret_ms.map(|r| r * MS),
            ttl: ttl_ms * MS,
            kind,
        }
    }

    fn put(v: &str) -> TtlKind {
        TtlKind::Put(b(v))
    }

    fn found() -> TtlKind {
        TtlKind::Update { found: true }
    }

    fn kv(invoke_ms: u64, ret_ms: Option<u64>, op: Op, ret: Ret) -> Operation {
        Operation {
            client: 1,
            invoke: invoke_ms * MS,
            ret_at: ret_ms.map(|r| r * MS),
            op,
            ret,
        }
    }

    fn get(at_ms: u64, v: Option<&str>) -> Operation {
        kv(
            at_ms,
            Some(at_ms + 1),
            Op::Get { key: b("t") },
            Ret::Value(v.map(b)),
        )
    }

    /// The history of `writes` (as the client recorded them), the reads,
    /// and the expiries computed from the writes.
    fn history(writes: &[TtlWrite], reads: &[Operation]) -> Vec<Operation> {
        let mut h: Vec<Operation> = writes
            .iter()
            .map(|w| {
                let (op, ret) = match &w.kind {
                    TtlKind::Put(v) => (
                        Op::Put {
                            key: b("t"),
                            value: v.clone(),
                        },
                        Ret::Done,
                    ),
                    TtlKind::Update { found } => {
                        (Op::UpdateTtl { key: b("t") }, Ret::Found(*found))
                    }
                    TtlKind::Remove => (Op::Remove { key: b("t") }, Ret::Removed(true)),
                };
                let ret = if w.ret_at.is_none() {
                    Ret::Unknown
                } else {
                    ret
                };
                Operation {
                    client: 1,
                    invoke: w.invoke,
                    ret_at: w.ret_at,
                    op,
                    ret,
                }
            })
            .collect();
        h.extend_from_slice(reads);
        h.extend(expiries(&b("t"), writes, CLOCK_ALLOWANCE_NS));
        h
    }

    #[test]
    fn a_key_gone_after_its_ttl_passes_and_before_fails() {
        let writes = [w(0, Some(2), 500, put("a"))];
        // Present at 300 ms, gone at 600 ms: the TTL ran out in between.
        assert!(linearizable(&history(
            &writes,
            &[get(300, Some("a")), get(600, None)]
        )));
        // Gone at 300 ms, with a TTL of 500 ms from 0: too early.
        assert!(!linearizable(&history(&writes, &[get(300, None)])));
        // Still there well after: an expiry may be late (it is never
        // required to have happened by a time).
        assert!(linearizable(&history(&writes, &[get(900, Some("a"))])));
    }

    #[test]
    fn update_ttl_extends_the_value_it_found() {
        let writes = [
            w(0, Some(2), 500, put("a")),
            w(400, Some(402), 500, found()),
        ];
        // Gone at 600 ms: the update at 400 ms moved the deadline to 900.
        assert!(!linearizable(&history(&writes, &[get(600, None)])));
        assert!(linearizable(&history(&writes, &[get(950, None)])));
        // Shortened by the update: gone at 350 ms is fine.
        let shorter = [
            w(0, Some(2), 1000, put("a")),
            w(100, Some(102), 200, found()),
        ];
        assert!(linearizable(&history(&shorter, &[get(350, None)])));
        assert!(!linearizable(&history(&shorter, &[get(250, None)])));
    }

    #[test]
    fn uncertain_writes_widen_the_window() {
        // An update with an unknown outcome may or may not have extended it.
        let writes = [
            w(0, Some(2), 500, put("a")),
            w(100, None, 1000, TtlKind::Update { found: false }),
        ];
        assert!(linearizable(&history(&writes, &[get(600, None)])));
        assert!(!linearizable(&history(&writes, &[get(450, None)])));
        // After a put with an unknown outcome, a later update that found the
        // key may have re-armed either value: the first value's own deadline
        // still counts.
        let writes = [
            w(0, Some(2), 500, put("a")),
            w(10, None, 500, put("b")),
            w(400, Some(402), 2000, found()),
        ];
        let e = expiries(&b("t"), &writes, 0);
        assert_eq!(e[0].invoke, 500 * MS);
        assert_eq!(e[1].invoke, 510 * MS);
        // Without the unknown put, the update surely re-armed `a`.
        let sure = [
            w(0, Some(2), 500, put("a")),
            w(400, Some(402), 2000, found()),
        ];
        assert_eq!(expiries(&b("t"), &sure, 0)[0].invoke, 2400 * MS);
    }

    #[test]
    fn each_value_has_its_own_expiry() {
        let writes = [
            w(0, Some(2), 300, put("a")),
            w(100, Some(102), 1000, put("b")),
        ];
        // `a` was overwritten at 100 ms; `b` runs out no earlier than 1100.
        assert!(!linearizable(&history(&writes, &[get(500, None)])));
        assert!(linearizable(&history(
            &writes,
            &[get(500, Some("b")), get(1200, None)]
        )));
        // A value whose put returned may expire no earlier than the put's
        // call plus its TTL, minus the allowance.
        let e = expiries(&b("t"), &writes, CLOCK_ALLOWANCE_NS);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].invoke, 1100 * MS - CLOCK_ALLOWANCE_NS);
    }
}
