#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn op(client: u64, invoke: u64, ret_at: u64, op: Op, ret: Ret) -> Operation {
    Operation {
        client,
        invoke,
        ret_at: Some(ret_at),
        op,
        ret,
    }
}

fn put(k: &str, v: &str) -> Op {
    Op::Put {
        key: b(k),
        value: b(v),
    }
}

fn get(k: &str) -> Op {
    Op::Get { key: b(k) }
}

fn val(v: &str) -> Ret {
    Ret::Value(Some(b(v)))
}

/// Whether the checker finds `h` linearizable (panics when it cannot decide).
pub(crate) fn linearizable(h: &[Operation]) -> bool {
    match check(h, Options::default()) {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable(_) => false,
        Verdict::Unknown { keys } => panic!("undecided on {keys:?}"),
    }
}

#[test]
fn sequential_history_is_linearizable() {
    let h = [
        op(1, 0, 1, put("a", "1"), Ret::Done),
        op(1, 2, 3, get("a"), val("1")),
        op(1, 4, 5, Op::Remove { key: b("a") }, Ret::Removed(true)),
        op(1, 6, 7, get("a"), Ret::Value(None)),
        op(1, 8, 9, Op::Remove { key: b("a") }, Ret::Removed(false)),
    ];
    assert!(linearizable(&h));
}

#[test]
fn concurrent_read_may_see_either_value() {
    for seen in [Ret::Value(None), val("1")] {
        let h = [
            op(1, 0, 10, put("a", "1"), Ret::Done),
            op(2, 2, 5, get("a"), seen),
        ];
        assert!(linearizable(&h));
    }
}

#[test]
fn stale_read_after_a_completed_write_is_caught() {
    let h = [
        op(1, 0, 1, put("a", "1"), Ret::Done),
        op(1, 2, 3, put("a", "2"), Ret::Done),
        op(2, 4, 5, get("a"), val("1")),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn reads_cannot_go_back_in_time() {
    // Two concurrent writers; readers after both disagree on the final value.
    let h = [
        op(1, 0, 10, put("a", "1"), Ret::Done),
        op(2, 0, 10, put("a", "2"), Ret::Done),
        op(3, 11, 12, get("a"), val("1")),
        op(3, 13, 14, get("a"), val("2")),
    ];
    assert!(!linearizable(&h));
    let h = [
        op(1, 0, 10, put("a", "1"), Ret::Done),
        op(2, 0, 10, put("a", "2"), Ret::Done),
        op(3, 5, 6, get("a"), val("1")),
        op(3, 11, 12, get("a"), val("2")),
    ];
    assert!(linearizable(&h));
}

#[test]
fn a_write_with_unknown_outcome_may_apply_late_or_never() {
    let timed_out = Operation {
        client: 1,
        invoke: 0,
        ret_at: Some(5),
        op: put("a", "1"),
        ret: Ret::Unknown,
    };
    // Never took effect.
    assert!(linearizable(&[
        timed_out.clone(),
        op(2, 10, 11, get("a"), Ret::Value(None)),
    ]));
    // Took effect long after the client gave up.
    assert!(linearizable(&[
        timed_out.clone(),
        op(2, 10, 11, get("a"), Ret::Value(None)),
        op(2, 20, 21, get("a"), val("1")),
    ]));
    // But it cannot be undone once seen.
    assert!(!linearizable(&[
        timed_out,
        op(2, 10, 11, get("a"), val("1")),
        op(2, 20, 21, get("a"), Ret::Value(None)),
    ]));
}

#[test]
fn failed_reads_are_dropped() {
    let h = [
        op(1, 0, 1, put("a", "1"), Ret::Done),
        op(2, 2, 3, get("a"), Ret::Unknown),
    ];
    assert!(linearizable(&h));
}

#[test]
fn compare_and_set_is_checked() {
    let cas = |exp: Option<&str>, new: Option<&str>| Op::CompareAndSet {
        key: b("a"),
        expected: exp.map(b),
        new: new.map(b),
    };
    let ok = [
        op(1, 0, 1, cas(None, Some("1")), Ret::Swapped(true)),
        op(1, 2, 3, cas(None, Some("2")), Ret::Swapped(false)),
        op(1, 4, 5, cas(Some("1"), None), Ret::Swapped(true)),
        op(1, 6, 7, get("a"), Ret::Value(None)),
    ];
    assert!(linearizable(&ok));
    // Two concurrent CAS from absent cannot both win.
    let both_win = [
        op(1, 0, 10, cas(None, Some("1")), Ret::Swapped(true)),
        op(2, 0, 10, cas(None, Some("2")), Ret::Swapped(true)),
    ];
    assert!(!linearizable(&both_win));
}

#[test]
fn batches_are_atomic_across_keys() {
    let bp = Op::BatchPut(vec![(b("a"), b("1")), (b("b"), b("1"))]);
    let bg = Op::BatchGet(vec![b("a"), b("b")]);
    let torn = [
        op(1, 0, 10, bp.clone(), Ret::Done),
        op(2, 2, 5, bg.clone(), Ret::Values(vec![Some(b("1")), None])),
    ];
    assert!(!linearizable(&torn));
    let whole = [
        op(1, 0, 10, bp.clone(), Ret::Done),
        op(
            2,
            2,
            5,
            bg.clone(),
            Ret::Values(vec![Some(b("1")), Some(b("1"))]),
        ),
        op(
            3,
            11,
            12,
            Op::BatchRemove(vec![b("a"), b("b"), b("a")]),
            Ret::Removals(vec![true, true, false]),
        ),
        op(3, 13, 14, get("b"), Ret::Value(None)),
    ];
    assert!(linearizable(&whole));
    // Single-key reads of a torn batch are caught too, across partitions joined
    // by the batch.
    let torn_singles = [
        op(1, 0, 1, bp, Ret::Done),
        op(2, 2, 3, get("a"), val("1")),
        op(2, 4, 5, get("b"), Ret::Value(None)),
    ];
    assert!(!linearizable(&torn_singles));
}

#[test]
fn expiry_removes_within_its_window() {
    let h = [
        op(1, 0, 1, put("t", "x"), Ret::Done),
        Operation {
            client: 0,
            invoke: 10,
            ret_at: None,
            op: Op::Expire {
                key: b("t"),
                value: b("x"),
            },
            ret: Ret::Done,
        },
        op(2, 5, 6, get("t"), val("x")),
        op(2, 12, 13, get("t"), val("x")),
        op(2, 20, 21, get("t"), Ret::Value(None)),
    ];
    assert!(linearizable(&h));
    // Gone before its window opened: not explainable.
    let mut early = h.to_vec();
    early[2].ret = Ret::Value(None);
    assert!(!linearizable(&early));
}

fn expire(k: &str, v: &str, from: u64) -> Operation {
    Operation {
        client: 0,
        invoke: from,
        ret_at: None,
        op: Op::Expire {
            key: b(k),
            value: b(v),
        },
        ret: Ret::Done,
    }
}

#[test]
fn expiry_removes_only_its_own_value() {
    // `x` was overwritten by `y` before its TTL ran out: the expiry of `x`
    // cannot remove `y`.
    let h = [
        op(1, 0, 1, put("t", "x"), Ret::Done),
        op(1, 2, 3, put("t", "y"), Ret::Done),
        expire("t", "x", 10),
        op(1, 20, 21, get("t"), Ret::Value(None)),
    ];
    assert!(!linearizable(&h));
    // With the expiry of `y` open as well, the absence is explained.
    let mut with_y = h.to_vec();
    with_y.push(expire("t", "y", 15));
    assert!(linearizable(&with_y));
    // An expiry of `x` after `x` was removed and `x`'s key re-created does
    // nothing either.
    let h = [
        op(1, 0, 1, put("t", "x"), Ret::Done),
        op(1, 2, 3, Op::Remove { key: b("t") }, Ret::Removed(true)),
        op(1, 4, 5, put("t", "z"), Ret::Done),
        expire("t", "x", 6),
        op(1, 20, 21, get("t"), val("z")),
    ];
    assert!(linearizable(&h));
}

#[test]
fn update_ttl_sees_presence() {
    let h = [
        op(1, 0, 1, put("t", "x"), Ret::Done),
        op(1, 2, 3, Op::UpdateTtl { key: b("t") }, Ret::Found(true)),
        expire("t", "x", 10),
        op(1, 20, 21, Op::UpdateTtl { key: b("t") }, Ret::Found(false)),
        op(1, 22, 23, get("t"), Ret::Value(None)),
    ];
    assert!(linearizable(&h));
    // Found absent before the expiry could run: not explainable.
    let mut early = h.to_vec();
    early[1].ret = Ret::Found(false);
    assert!(!linearizable(&early));
    // An update whose outcome is unknown observed nothing.
    let mut unknown = h.to_vec();
    unknown[3].ret = Ret::Unknown;
    unknown[3].ret_at = None;
    assert!(linearizable(&unknown));
}

#[test]
fn initial_state_is_honoured() {
    let initial: HashMap<Key, Value> = [(b("a"), b("0"))].into_iter().collect();
    let h = [op(1, 0, 1, get("a"), val("0"))];
    assert_eq!(
        check_from(&h, &initial, Options::default()),
        Verdict::Linearizable
    );
    assert!(!linearizable(&h));
}

#[test]
fn violation_names_keys_and_prefix() {
    let h = [
        op(1, 0, 1, put("x", "1"), Ret::Done),
        op(1, 2, 3, get("x"), Ret::Value(None)),
        op(3, 0, 1, put("y", "1"), Ret::Done),
    ];
    match check(&h, Options::default()) {
        Verdict::NotLinearizable(v) => {
            assert_eq!(v.keys, vec![b("x")]);
            assert_eq!(v.operations.len(), 2);
            assert_eq!(v.longest_prefix, vec![0]);
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// A linearizable history of `n` operations by `clients` concurrent clients
/// on `keys` keys: every operation takes effect at a random instant inside its
/// call window, in that order, against one true store.
fn generate(seed: u64, n: usize, clients: u64, keys: usize) -> Vec<Operation> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut clock = vec![0u64; clients as usize];
    let mut planned = Vec::with_capacity(n);
    for i in 0..n {
        let c = rng.random_range(0..clients);
        let invoke = clock[c as usize] + rng.random_range(0..20);
        let point = invoke + rng.random_range(1..50);
        let ret_at = point + rng.random_range(1..50);
        clock[c as usize] = ret_at + 1;
        // Batches stay inside pairs of keys (k0+k1, k2+k3, ...), as the
        // robustness runner's do: the checker splits the history into
        // independent key groups, and one group over every key would make
        // the search exponential in the number of concurrent clients.
        let k = rng.random_range(0..keys);
        let key = b(&format!("k{k}"));
        let other = b(&format!("k{}", k ^ 1));
        let v = b(&format!("v{i}"));
        let op = match rng.random_range(0..10) {
            0..=2 => Op::Put { key, value: v },
            3..=5 => Op::Get { key },
            6 => Op::Remove { key },
            7 => Op::CompareAndSet {
                key,
                expected: (rng.random_bool(0.5))
                    .then(|| b(&format!("v{}", i.saturating_sub(rng.random_range(1..30))))),
                new: Some(v),
            },
            8 => Op::BatchPut(vec![(key, v.clone()), (other, v)]),
            _ => Op::BatchGet(vec![key, other]),
        };
        planned.push((point, c, invoke, ret_at, op));
    }
    planned.sort_by_key(|p| p.0);
    let mut store: HashMap<Key, Value> = HashMap::new();
    let mut out = Vec::with_capacity(n);
    for (_, client, invoke, ret_at, op) in planned {
        let ret = match &op {
            Op::Put { key, value } => {
                store.insert(key.clone(), value.clone());
                Ret::Done
            }
            Op::Get { key } => Ret::Value(store.get(key).cloned()),
            Op::Remove { key } => Ret::Removed(store.remove(key).is_some()),
            Op::CompareAndSet { key, expected, new } => {
                let hit = store.get(key) == expected.as_ref();
                if hit {
                    match new {
                        Some(v) => store.insert(key.clone(), v.clone()),
                        None => store.remove(key),
                    };
                }
                Ret::Swapped(hit)
            }
            Op::BatchPut(kvs) => {
                for (k, v) in kvs {
                    store.insert(k.clone(), v.clone());
                }
                Ret::Done
            }
            Op::BatchGet(ks) => Ret::Values(ks.iter().map(|k| store.get(k).cloned()).collect()),
            Op::BatchRemove(_) | Op::Expire { .. } | Op::UpdateTtl { .. } => {
                unreachable!("not generated")
            }
        };
        out.push(Operation {
            client,
            invoke,
            ret_at: Some(ret_at),
            op,
            ret,
        });
    }
    out
}

#[test]
fn generated_histories_pass_and_a_single_corrupt_read_fails() {
    for seed in 0..30 {
        let mut h = generate(seed, 400, 6, 3);
        assert!(linearizable(&h), "seed {seed}");
        // Corrupt one get that saw a value: it now reports a value nobody wrote.
        if let Some(o) = h.iter_mut().find(|o| matches!(o.ret, Ret::Value(Some(_)))) {
            o.ret = Ret::Value(Some(b("never-written")));
            assert!(!linearizable(&h), "seed {seed}: corruption not caught");
        }
    }
}

/// The size the robustness runner produces: 100,000 operations.
#[test]
fn checks_a_hundred_thousand_operations() {
    let h = generate(7, 100_000, 16, 500);
    let started = std::time::Instant::now();
    assert!(linearizable(&h));
    eprintln!("checked {} operations in {:?}", h.len(), started.elapsed());
}
