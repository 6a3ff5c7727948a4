//! Unit and property tests of the state machine, with crate-internal access for
//! whole-state comparison.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use proptest::prelude::*;

use crate::store::NodeKind;
use crate::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Drives a state machine like a log would: increasing indexes, a clock, and a
/// sequence number per client.
struct H {
    sm: KvStateMachine,
    index: u64,
    now: u64,
    seqs: HashMap<ClientId, u64>,
}

impl H {
    fn new() -> H {
        H::with(KvLimits::default())
    }

    fn with(limits: KvLimits) -> H {
        H {
            sm: KvStateMachine::new(limits),
            index: 0,
            now: 1_000_000,
            seqs: HashMap::new(),
        }
    }

    fn cmd(&mut self, client: ClientId, op: Op) -> Command {
        let seq = self.seqs.entry(client).or_insert(0);
        *seq += 1;
        Command {
            client_id: client,
            seq: *seq,
            acked_below: *seq,
            leader_time_ms: self.now,
            op,
        }
    }

    fn apply_cmd(&mut self, cmd: &Command) -> ApplyResult {
        self.index += 1;
        self.sm.apply(self.index, cmd)
    }

    fn by(&mut self, client: ClientId, op: Op) -> ApplyResult {
        let c = self.cmd(client, op);
        self.apply_cmd(&c)
    }

    fn w(&mut self, op: Op) -> Result<Outcome, KvError> {
        self.by(1, op).result.outcome
    }

    fn put(&mut self, k: &str, v: &str) -> Result<Outcome, KvError> {
        self.w(Op::Put {
            key: b(k),
            value: b(v),
        })
    }

    fn mkdir(&mut self, k: &str) -> Result<Outcome, KvError> {
        self.w(Op::Mkdir { key: b(k) })
    }

    fn get(&self, k: &str) -> Option<NodeView> {
        self.sm.get(&b(k)).unwrap().data
    }

    fn value(&self, k: &str) -> Option<Bytes> {
        self.get(k).map(|n| n.value)
    }
}

/// The whole logical state, canonically ordered, for equality checks.
fn dump(sm: &KvStateMachine) -> (u64, BTreeMap<Bytes, crate::store::Node>, Vec<String>) {
    let nodes = sm
        .store
        .iter()
        .map(|(k, n)| (Bytes::copy_from_slice(k), n.clone()))
        .collect();
    let mut sessions: Vec<String> = sm
        .sessions
        .iter()
        .map(|(id, s)| format!("{id}:{s:?}"))
        .collect();
    sessions.sort();
    (sm.applied_index(), nodes, sessions)
}

fn code(r: &Result<Outcome, KvError>) -> u16 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

// ----- plain operations -----

#[test]
fn put_get_overwrite_and_metadata() {
    let mut h = H::new();
    assert_eq!(h.put("a", "1"), Ok(Outcome::Put { created: true }));
    let n = h.get("a").unwrap();
    assert_eq!(
        (n.create_index, n.update_index, n.state),
        (1, 1, NodeState::Value)
    );
    assert_eq!(n.create_time_ms, 1_000_000);
    h.now += 5;
    assert_eq!(h.put("a", "2"), Ok(Outcome::Put { created: false }));
    let n = h.get("a").unwrap();
    assert_eq!((n.create_index, n.update_index), (1, 2));
    assert_eq!((n.create_time_ms, n.update_time_ms), (1_000_000, 1_000_005));
    assert_eq!(n.value, b("2"));
    assert_eq!(h.sm.get(&b("a")).unwrap().index, 2);
    assert_eq!(h.get("missing"), None);
}

#[test]
fn put_checks_key_value_and_parent() {
    let mut h = H::with(KvLimits {
        max_key_bytes: 8,
        max_value_bytes: 4,
        ..KvLimits::default()
    });
    assert_eq!(code(&h.put("a..b", "v")), 7);
    assert_eq!(code(&h.put("", "v")), 7);
    assert_eq!(code(&h.put("abcdefghi", "v")), 11);
    assert_eq!(code(&h.put("a", "")), 8);
    assert_eq!(code(&h.put("a", "12345")), 12);
    assert_eq!(code(&h.put("x.y", "v")), 9);
    h.put("v", "1").unwrap();
    assert_eq!(code(&h.put("v.c", "1")), 6);
    h.mkdir("d").unwrap();
    assert_eq!(code(&h.put("d", "1")), 4);
    assert_eq!(h.put("d.c", "1"), Ok(Outcome::Put { created: true }));
    // A failed command changed nothing and produced no event.
    let r = h.by(
        1,
        Op::Put {
            key: b("q.r"),
            value: b("1"),
        },
    );
    assert!(r.events.is_empty());
    assert_eq!(h.get("q.r"), None);
}

#[test]
fn mkdir_is_idempotent_and_list_is_sorted() {
    let mut h = H::new();
    assert_eq!(h.mkdir("d"), Ok(Outcome::Mkdir { created: true }));
    assert_eq!(h.mkdir("d"), Ok(Outcome::Mkdir { created: false }));
    h.put("v", "1").unwrap();
    assert_eq!(code(&h.mkdir("v")), 5);
    for k in ["d.c", "d.a", "d.b"] {
        h.put(k, "x").unwrap();
    }
    h.mkdir("d.e").unwrap();
    let l = h.sm.list(&b("d")).unwrap();
    let keys: Vec<_> = l.data.iter().map(|n| n.key.clone()).collect();
    assert_eq!(keys, vec![b("d.a"), b("d.b"), b("d.c"), b("d.e")]);
    assert_eq!(l.data[3].state, NodeState::Dir);
    let root: Vec<_> =
        h.sm.list(&Bytes::new())
            .unwrap()
            .data
            .into_iter()
            .map(|n| n.key)
            .collect();
    assert_eq!(root, vec![b("d"), b("v")]);
    assert_eq!(h.sm.list(&b("v")).unwrap_err().code(), 5);
    assert_eq!(h.sm.list(&b("nope")).unwrap_err().code(), 2);
    assert_eq!(h.get("").unwrap().state, NodeState::Dir);
}

/// Keys of a page and its "more" flag.
fn page(h: &H, dir: &str, after: &str, limit: u32) -> Result<(Vec<Bytes>, bool), u16> {
    let p = ListPage {
        start_after: b(after),
        limit,
    };
    h.sm.list_page(&b(dir), &p)
        .map(|r| (r.data.0.into_iter().map(|n| n.key).collect(), r.data.1))
        .map_err(|e| e.code())
}

#[test]
fn list_pages_walk_a_directory_in_key_order() {
    let mut h = H::new();
    h.mkdir("d").unwrap();
    for i in (0..25).rev() {
        h.put(&format!("d.k{i:02}"), "x").unwrap();
    }
    h.put("d.k10.z", "nested").unwrap_err();
    h.mkdir("d.sub").unwrap();
    h.put("d.sub.deep", "x").unwrap();
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let (keys, more) = page(&h, "d", &after, 10).unwrap();
        assert!(keys.len() <= 10);
        pages += 1;
        seen.extend(keys.iter().cloned());
        if !more {
            break;
        }
        after = String::from_utf8(keys.last().unwrap().to_vec()).unwrap();
    }
    let all: Vec<_> =
        h.sm.list(&b("d"))
            .unwrap()
            .data
            .into_iter()
            .map(|n| n.key)
            .collect();
    assert_eq!((seen, pages), (all, 3), "26 children in pages of 10");
    // A start key need not exist; past the end the page is empty.
    assert_eq!(
        page(&h, "d", "d.k115", 2).unwrap(),
        (vec![b("d.k12"), b("d.k13")], true)
    );
    assert_eq!(page(&h, "d", "d.zzz", 5).unwrap(), (vec![], false));
    // Limit 0 is the default page; a huge limit is served as the largest page.
    assert_eq!(page(&h, "d", "", 0).unwrap().0.len(), 26);
    assert_eq!(page(&h, "d", "", u32::MAX).unwrap().0.len(), 26);
    // Errors as for an unpaged list, and a bad start key names itself.
    assert_eq!(page(&h, "d.k00", "", 5), Err(5));
    assert_eq!(page(&h, "nope", "", 5), Err(2));
    assert_eq!(page(&h, "d", "a..b", 5), Err(7));
}

#[test]
fn pages_stop_at_the_byte_cap_and_unpaged_lists_refuse_past_it() {
    let mut h = H::with(KvLimits {
        max_read_bytes: 1000,
        ..KvLimits::default()
    });
    h.mkdir("d").unwrap();
    for i in 0..6 {
        h.put(&format!("d.{i}"), &"v".repeat(300)).unwrap();
    }
    // Each child counts 303 bytes of key and value plus its overhead: two fit.
    let (keys, more) = page(&h, "d", "", 100).unwrap();
    assert_eq!((keys.len(), more), (2, true));
    let e = h.sm.list(&b("d")).unwrap_err();
    assert_eq!(e.code(), 101, "{e}");
    assert!(e.to_string().contains("list it in pages"), "{e}");
    // One child larger than the cap still makes a page of one.
    let mut h = H::with(KvLimits {
        max_read_bytes: 100,
        ..KvLimits::default()
    });
    h.mkdir("d").unwrap();
    h.put("d.big", &"v".repeat(500)).unwrap();
    h.put("d.big2", &"v".repeat(500)).unwrap();
    assert_eq!(page(&h, "d", "", 10).unwrap(), (vec![b("d.big")], true));
    assert_eq!(
        page(&h, "d", "d.big", 10).unwrap(),
        (vec![b("d.big2")], false)
    );
}

#[test]
fn remove_rules() {
    let mut h = H::new();
    assert_eq!(code(&h.w(Op::Remove { key: b("a") })), 2);
    h.mkdir("d").unwrap();
    h.put("d.x", "1").unwrap();
    assert_eq!(code(&h.w(Op::Remove { key: b("d") })), 10);
    let r = h.by(1, Op::Remove { key: b("d.x") });
    assert_eq!(r.result.outcome, Ok(Outcome::Done));
    assert_eq!(r.events[0].state, NodeState::Absent);
    assert_eq!(h.w(Op::Remove { key: b("d") }), Ok(Outcome::Done));
    assert_eq!(h.sm.node_count(), 0);
}

#[test]
fn batches_give_one_result_per_key() {
    let mut h = H::new();
    let r = h.by(
        1,
        Op::BatchPut {
            entries: vec![(b("a"), b("1")), (b("x.y"), b("2")), (b("b"), b("3"))],
        },
    );
    let Ok(Outcome::Batch(items)) = r.result.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[2].is_ok());
    assert_eq!(items[1].as_ref().unwrap_err().code(), 9);
    assert_eq!(r.events.len(), 2);
    assert!(r.events.iter().all(|e| e.index == r.result.index));
    let g = h.sm.batch_get(&[b("a"), b("zz"), b("a..")]).unwrap();
    assert_eq!(g.data[0].as_ref().unwrap().as_ref().unwrap().value, b("1"));
    assert_eq!(g.data[1], Ok(None));
    assert_eq!(g.data[2].as_ref().unwrap_err().code(), 7);
    let r = h.w(Op::BatchRemove {
        keys: vec![b("a"), b("a"), b("b")],
    });
    let Ok(Outcome::Batch(items)) = r else {
        panic!()
    };
    assert_eq!(
        items.iter().map(|i| i.is_ok()).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(code(&h.w(Op::BatchPut { entries: vec![] })), 101);
    assert_eq!(h.sm.batch_get(&[]).unwrap_err().code(), 101);
}

#[test]
fn compare_and_set() {
    let mut h = H::new();
    let cas = |e: &str, n: &str| Op::CompareAndSet {
        key: b("k"),
        expected: b(e),
        new_value: b(n),
    };
    assert_eq!(code(&h.w(cas("x", "1"))), 14);
    assert_eq!(h.w(cas("", "1")), Ok(Outcome::Done));
    assert_eq!(code(&h.w(cas("", "2"))), 14);
    assert_eq!(code(&h.w(cas("9", "2"))), 14);
    assert_eq!(h.w(cas("1", "2")), Ok(Outcome::Done));
    assert_eq!(h.value("k"), Some(b("2")));
    assert_eq!(h.w(cas("2", "")), Ok(Outcome::Done));
    assert_eq!(h.get("k"), None);
    h.mkdir("d").unwrap();
    assert_eq!(
        code(&h.w(Op::CompareAndSet {
            key: b("d"),
            expected: b("a"),
            new_value: b("b")
        })),
        4
    );
}

#[test]
fn apply_index_must_increase_and_bad_bytes_fail_cleanly() {
    let mut h = H::new();
    h.put("a", "1").unwrap();
    let c = h.cmd(
        1,
        Op::Put {
            key: b("a"),
            value: b("2"),
        },
    );
    let r = h.sm.apply(1, &c);
    assert_eq!(r.result.outcome.unwrap_err().code(), 103);
    assert_eq!(h.value("a"), Some(b("1")));
    let r = h.sm.apply_bytes(5, &Bytes::from_static(b"garbage!"));
    assert_eq!(r.result.outcome.unwrap_err().code(), 100);
    assert_eq!(h.sm.applied_index(), 5);
    h.sm.advance(9);
    assert_eq!(h.sm.applied_index(), 9);
}

// ----- sessions -----

#[test]
fn retries_are_answered_from_the_session_table() {
    let mut h = H::new();
    let c = h.cmd(
        3,
        Op::Put {
            key: b("a"),
            value: b("1"),
        },
    );
    let first = h.apply_cmd(&c);
    h.put("a", "other").unwrap();
    let again = h.apply_cmd(&c);
    assert!(again.deduplicated);
    assert_eq!(again.result, first.result);
    assert!(again.events.is_empty());
    assert_eq!(h.value("a"), Some(b("other")));
}

#[test]
fn acknowledged_results_are_forgotten_and_old_seqs_refused() {
    let mut h = H::new();
    let c1 = h.cmd(
        3,
        Op::Put {
            key: b("a"),
            value: b("1"),
        },
    );
    h.apply_cmd(&c1);
    let mut c2 = h.cmd(
        3,
        Op::Put {
            key: b("b"),
            value: b("1"),
        },
    );
    c2.acked_below = 2;
    h.apply_cmd(&c2);
    let r = h.apply_cmd(&c1);
    assert_eq!(r.result.outcome.unwrap_err().code(), 102);
}

#[test]
fn out_of_order_seqs_within_the_window_both_apply() {
    let mut h = H::new();
    let c1 = h.cmd(
        3,
        Op::Put {
            key: b("a"),
            value: b("1"),
        },
    );
    let mut c2 = h.cmd(
        3,
        Op::Put {
            key: b("b"),
            value: b("1"),
        },
    );
    c2.acked_below = 1;
    let c1 = Command {
        acked_below: 1,
        ..c1
    };
    h.apply_cmd(&c2);
    let r = h.apply_cmd(&c1);
    assert!(!r.deduplicated);
    assert!(r.result.outcome.is_ok());
    assert!(h.get("a").is_some() && h.get("b").is_some());
}

#[test]
fn sessions_expire_by_log_time_and_are_bounded() {
    let mut h = H::with(KvLimits {
        session_ttl_ms: 1000,
        max_sessions: 2,
        max_results_per_session: 2,
        ..KvLimits::default()
    });
    let c = h.cmd(
        5,
        Op::Put {
            key: b("a"),
            value: b("1"),
        },
    );
    h.apply_cmd(&c);
    h.by(
        6,
        Op::Put {
            key: b("b"),
            value: b("1"),
        },
    );
    h.now += 1;
    h.by(
        7,
        Op::Put {
            key: b("c"),
            value: b("1"),
        },
    );
    assert_eq!(h.sm.session_count(), 2, "least recently active dropped");
    h.now += 2000;
    h.by(
        8,
        Op::Put {
            key: b("d"),
            value: b("1"),
        },
    );
    assert_eq!(h.sm.session_count(), 1, "idle sessions expired");
    // Result window per session: with 3 unacknowledged seqs, the first is dropped.
    let cs: Vec<_> = (0..3)
        .map(|i| {
            let mut c = h.cmd(
                9,
                Op::Put {
                    key: b(&format!("k{i}")),
                    value: b("1"),
                },
            );
            c.acked_below = 1;
            c
        })
        .collect();
    for c in &cs {
        h.apply_cmd(c);
    }
    assert_eq!(h.apply_cmd(&cs[0]).result.outcome.unwrap_err().code(), 102);
    assert!(h.apply_cmd(&cs[2]).deduplicated);
}

// ----- codec -----

fn all_ops() -> Vec<Op> {
    vec![
        Op::Put {
            key: b("a"),
            value: b("v"),
        },
        Op::Remove { key: b("a") },
        Op::Mkdir { key: b("d") },
        Op::BatchPut {
            entries: vec![(b("a"), b("1")), (b("b"), b("2"))],
        },
        Op::BatchRemove {
            keys: vec![b("a"), b("b")],
        },
        Op::CompareAndSet {
            key: b("a"),
            expected: Bytes::new(),
            new_value: b("x"),
        },
        Op::PutTemp {
            key: b("t"),
            value: b("v"),
            ttl_ms: 5,
        },
        Op::MakeTempDir {
            key: b("td"),
            ttl_ms: 6,
        },
        Op::UpdateTtl {
            key: b("t"),
            ttl_ms: 7,
        },
        Op::TryLock {
            key: b("l"),
            lease_ms: 8,
            wait_timeout_ms: 9,
        },
        Op::Unlock { key: b("l") },
        Op::UpdateLease {
            key: b("l"),
            lease_ms: 10,
        },
        Op::Expire {
            key: b("t"),
            expected_version: 11,
        },
    ]
}

#[test]
fn commands_round_trip() {
    for op in all_ops() {
        let c = Command {
            client_id: 9,
            seq: 4,
            acked_below: 3,
            leader_time_ms: 77,
            op,
        };
        let enc = encode_command(&c);
        assert_eq!(decode_command(&enc).unwrap(), c);
        assert_eq!(decode_command_bytes(&enc).unwrap(), c);
    }
}

#[test]
fn stamping_the_leader_time_matches_a_re_encode() {
    for leader_time in [0, 1, 77] {
        for op in all_ops() {
            let c = Command {
                client_id: 9,
                seq: 4,
                acked_below: 3,
                leader_time_ms: leader_time,
                op,
            };
            let wire = encode_command(&c);
            let decoded = decode_command_bytes(&wire).unwrap();
            let (enc, stamped) = stamp_leader_time(&wire, &decoded, 1_234_567);
            let want = Command {
                leader_time_ms: 1_234_567,
                ..c
            };
            assert_eq!(stamped, want);
            assert_eq!(decode_command_bytes(&enc).unwrap(), want);
            // The stamped command's payloads live in the new encoding.
            let range = enc.as_ptr() as usize..enc.as_ptr() as usize + enc.len();
            if let Op::Put { key, value } = &stamped.op {
                assert!(range.contains(&(key.as_ptr() as usize)));
                assert!(range.contains(&(value.as_ptr() as usize)));
            }
        }
    }
    // An encoding without the field is rebuilt.
    let mut b = flatbuffers::FlatBufferBuilder::new();
    let key = b.create_vector(b"k".as_slice());
    let op = crate::fb::Mkdir::create(&mut b, &crate::fb::MkdirArgs { key: Some(key) });
    let root = crate::fb::Command::create(
        &mut b,
        &crate::fb::CommandArgs {
            client_id: 5,
            seq: 1,
            acked_below: 0,
            leader_time_ms: 0,
            op_type: crate::fb::Op::Mkdir,
            op: Some(op.as_union_value()),
        },
    );
    b.finish(root, None);
    let wire = Bytes::copy_from_slice(b.finished_data());
    let decoded = decode_command_bytes(&wire).unwrap();
    let (enc, stamped) = stamp_leader_time(&wire, &decoded, 42);
    assert_eq!(stamped.leader_time_ms, 42);
    assert_eq!(decode_command_bytes(&enc).unwrap(), stamped);
}

#[test]
fn results_and_pushes_round_trip() {
    let outcomes = vec![
        Ok(Outcome::Done),
        Ok(Outcome::Put { created: true }),
        Ok(Outcome::Mkdir { created: false }),
        Ok(Outcome::Batch(vec![
            Ok(()),
            Err(KvError::NotFound("x".into())),
        ])),
        Ok(Outcome::Deadline { deadline_ms: 5 }),
        Ok(Outcome::Lock(LockOutcome::Acquired {
            token: 3,
            lease_deadline_ms: 9,
        })),
        Ok(Outcome::Lock(LockOutcome::Queued {
            position: 2,
            wait_deadline_ms: 8,
        })),
        Ok(Outcome::Lock(LockOutcome::NotAcquired { holder: 4 })),
        Ok(Outcome::Expire { expired: true }),
        Err(KvError::InvalidKey("bad".into())),
    ];
    for outcome in outcomes {
        let r = WriteResult { index: 42, outcome };
        assert_eq!(decode_write_result(&encode_write_result(&r)).unwrap(), r);
    }
    let e = WatchEvent {
        index: 3,
        key: b("a"),
        state: NodeState::Value,
        value: b("v"),
    };
    assert_eq!(decode_watch_event(&encode_watch_event(&e)).unwrap(), e);
    let n = LockNotification {
        client_id: 5,
        key: b("l"),
        kind: LockNotificationKind::Acquired {
            token: 7,
            lease_deadline_ms: 8,
        },
    };
    assert_eq!(
        decode_lock_notification(&encode_lock_notification(&n, 7)).unwrap(),
        (n, 7)
    );
}

#[test]
fn reads_round_trip() {
    let mut h = H::new();
    h.mkdir("d").unwrap();
    h.put("d.a", "1").unwrap();
    h.by(
        2,
        Op::TryLock {
            key: b("l"),
            lease_ms: 100,
            wait_timeout_ms: 0,
        },
    );
    h.by(
        2,
        Op::PutTemp {
            key: b("t"),
            value: b("v"),
            ttl_ms: 100,
        },
    );
    let reqs = vec![
        ReadRequest::Get(b("d.a")),
        ReadRequest::Get(b("t")),
        ReadRequest::Get(b("zz")),
        ReadRequest::Get(b("a..")),
        ReadRequest::BatchGet(vec![b("d"), b("x"), b("..")]),
        ReadRequest::List(b("")),
        ReadRequest::List(b("d.a")),
        ReadRequest::ListPage(b(""), ListPage::default()),
        ReadRequest::ListPage(
            b("d"),
            ListPage {
                start_after: b("d.a"),
                limit: 1,
            },
        ),
        ReadRequest::LockInfo(b("l")),
        ReadRequest::LockInfo(b("none")),
    ];
    for req in reqs {
        assert_eq!(
            decode_read_request(&encode_read_request(&req)).unwrap(),
            req
        );
        let r = h.sm.read(&req);
        assert_eq!(
            decode_read_result(&encode_read_result(&req, &r)).unwrap(),
            r,
            "{req:?}"
        );
        if let ReadRequest::Get(key) = &req {
            let enc = encode_read_result(&req, &r);
            let got = decode_get_result(&enc, key).unwrap();
            assert_eq!(got, r, "{req:?}");
            // A found node's key is the asked key itself, not a copy.
            if let Ok(ReadResponse::Get(Some(n))) = &got.data {
                assert_eq!(n.key.as_ptr(), key.as_ptr());
            }
            // Given another key, the answer's own key is kept.
            assert_eq!(decode_get_result(&enc, &b("other")).unwrap(), r);
        }
    }
}

#[test]
fn garbage_never_panics() {
    let valid = encode_command(&Command::unsessioned(
        1,
        Op::BatchPut {
            entries: vec![(b("a"), b("1")), (b("b"), b("2"))],
        },
    ));
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0; 3], vec![0xff; 64]];
    for i in 0..valid.len() {
        let mut v = valid.to_vec();
        v[i] ^= 0x5a;
        inputs.push(v);
        inputs.push(valid[..i].to_vec());
    }
    for input in inputs {
        let _ = decode_command(&input);
        let _ = decode_command_bytes(&Bytes::from(input.clone()));
        let _ = decode_write_result(&input);
        let _ = decode_read_request(&input);
        let _ = decode_read_result(&input);
        let _ = decode_get_result(&input, &b("a"));
        let _ = decode_watch_event(&input);
        let _ = decode_lock_notification(&input);
        let mut r = Restorer::new(KvLimits::default());
        let _ = r.push(&input);
    }
    assert!(matches!(
        decode_command(b"nonsense"),
        Err(KvError::InvalidCommand(_))
    ));
}

// ----- snapshots -----

#[test]
fn snapshot_is_consistent_while_writes_continue() {
    let mut h = H::with(KvLimits {
        snapshot_chunk_bytes: 256,
        ..KvLimits::default()
    });
    h.mkdir("d").unwrap();
    for i in 0..200 {
        h.put(&format!("d.k{i}"), &format!("v{i}")).unwrap();
    }
    h.by(
        4,
        Op::PutTemp {
            key: b("t"),
            value: b("v"),
            ttl_ms: 500,
        },
    );
    h.by(
        4,
        Op::TryLock {
            key: b("l"),
            lease_ms: 500,
            wait_timeout_ms: 0,
        },
    );
    h.by(
        5,
        Op::TryLock {
            key: b("l"),
            lease_ms: 500,
            wait_timeout_ms: 900,
        },
    );
    let at_snapshot = h.sm.clone();
    let mut stream = h.sm.snapshot();
    let mut chunks = vec![stream.next().unwrap(), stream.next().unwrap()];
    // Writes continue while the stream is half consumed.
    for i in 0..200 {
        h.put(&format!("d.k{i}"), "changed").unwrap();
    }
    h.w(Op::Remove { key: b("d.k0") }).unwrap();
    chunks.extend(stream);
    assert!(chunks.len() > 10, "small chunk size gives many chunks");
    let mut restored = KvStateMachine::new(KvLimits::default());
    restored.restore(chunks.clone()).unwrap();
    assert_eq!(dump(&restored), dump(&at_snapshot));
    assert_eq!(restored.next_deadline_ms(), at_snapshot.next_deadline_ms());
    assert_eq!(restored.list(&b("d")).unwrap().data.len(), 200);
    // Truncated, reordered and empty streams are refused and change nothing.
    let before = dump(&restored);
    let n = chunks.len();
    assert_eq!(
        restored
            .restore(chunks[..n - 1].to_vec())
            .unwrap_err()
            .code(),
        105
    );
    assert_eq!(
        restored.restore(chunks[1..].to_vec()).unwrap_err().code(),
        105
    );
    assert_eq!(restored.restore(Vec::new()).unwrap_err().code(), 105);
    assert_eq!(dump(&restored), before);
}

#[test]
fn restored_history_starts_at_the_snapshot_index() {
    let mut h = H::new();
    h.put("a", "1").unwrap();
    let mut r = KvStateMachine::new(KvLimits::default());
    r.restore(h.sm.snapshot()).unwrap();
    assert_eq!(r.events_after(0, 10).unwrap_err().code(), 104);
    assert_eq!(r.events_after(1, 10), Ok(vec![]));
}

// ----- property tests -----

/// The reference model: plain maps with the documented semantics.
#[derive(Default, Clone, Debug)]
struct Model {
    nodes: BTreeMap<String, Option<String>>, // None = directory
}

impl Model {
    fn parent_ok(&self, k: &str) -> Result<(), u16> {
        match k.rfind('.') {
            None => Ok(()),
            Some(i) => match self.nodes.get(&k[..i]) {
                None => Err(9),
                Some(Some(_)) => Err(6),
                Some(None) => Ok(()),
            },
        }
    }

    fn put(&mut self, k: &str, v: &str) -> u16 {
        if let Err(c) = self.parent_ok(k) {
            return c;
        }
        match self.nodes.get(k) {
            Some(None) => 4,
            _ => {
                self.nodes.insert(k.into(), Some(v.into()));
                0
            }
        }
    }

    fn remove(&mut self, k: &str) -> u16 {
        match self.nodes.get(k) {
            None => 2,
            Some(None) if self.nodes.keys().any(|c| c.starts_with(&format!("{k}."))) => 10,
            _ => {
                self.nodes.remove(k);
                0
            }
        }
    }

    fn mkdir(&mut self, k: &str) -> u16 {
        if let Err(c) = self.parent_ok(k) {
            return c;
        }
        match self.nodes.get(k) {
            Some(Some(_)) => 5,
            Some(None) => 0,
            None => {
                self.nodes.insert(k.into(), None);
                0
            }
        }
    }

    fn cas(&mut self, k: &str, e: &str, n: &str) -> u16 {
        match self.nodes.get(k).cloned() {
            Some(None) => 4,
            None if !e.is_empty() => 14,
            None => {
                if n.is_empty() {
                    return 0;
                }
                if let Err(c) = self.parent_ok(k) {
                    return c;
                }
                self.nodes.insert(k.into(), Some(n.into()));
                0
            }
            Some(Some(cur)) => {
                if e.is_empty() || cur != e {
                    return 14;
                }
                if n.is_empty() {
                    self.nodes.remove(k);
                } else {
                    self.nodes.insert(k.into(), Some(n.into()));
                }
                0
            }
        }
    }
}

#[derive(Debug, Clone)]
enum TOp {
    Put(String, String),
    Remove(String),
    Mkdir(String),
    Cas(String, String, String),
    Snapshot,
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "a.x", "a.y", "b.x", "a.x.z", "c"]).prop_map(String::from)
}

fn val_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "1", "2"]).prop_map(String::from)
}

fn op_strategy() -> impl Strategy<Value = TOp> {
    prop_oneof![
        4 => (key_strategy(), val_strategy()).prop_map(|(k, v)| TOp::Put(k, v)),
        2 => key_strategy().prop_map(TOp::Remove),
        3 => key_strategy().prop_map(TOp::Mkdir),
        2 => (key_strategy(), val_strategy(), val_strategy()).prop_map(|(k, e, n)| TOp::Cas(k, e, n)),
        1 => Just(TOp::Snapshot),
    ]
}

fn model_view(sm: &KvStateMachine) -> BTreeMap<String, Option<String>> {
    sm.store
        .iter()
        .map(|(k, n)| {
            let v = match &n.kind {
                NodeKind::Value(v) => Some(String::from_utf8_lossy(v).into_owned()),
                _ => None,
            };
            (String::from_utf8_lossy(k).into_owned(), v)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random operations agree with the model; every snapshot taken midway, with
    /// writes continuing during streaming, restores to exactly the state at its
    /// index.
    #[test]
    fn matches_model_and_snapshots_restore(ops in prop::collection::vec(op_strategy(), 1..80)) {
        let mut h = H::with(KvLimits { snapshot_chunk_bytes: 64, ..KvLimits::default() });
        let mut model = Model::default();
        let mut open: Vec<(KvStateMachine, SnapshotStream, Vec<Bytes>)> = Vec::new();
        for op in ops {
            let (got, want) = match op {
                TOp::Put(k, v) => {
                    let want = if v.is_empty() { 8 } else { model.put(&k, &v) };
                    (code(&h.put(&k, &v)), want)
                }
                TOp::Remove(k) => (code(&h.w(Op::Remove { key: b(&k) })), model.remove(&k)),
                TOp::Mkdir(k) => (code(&h.mkdir(&k)), model.mkdir(&k)),
                TOp::Cas(k, e, n) => {
                    let want = model.cas(&k, &e, &n);
                    let got = code(&h.w(Op::CompareAndSet { key: b(&k), expected: b(&e), new_value: b(&n) }));
                    (got, want)
                }
                TOp::Snapshot => {
                    let mut s = h.sm.snapshot();
                    let first = s.next().into_iter().collect();
                    open.push((h.sm.clone(), s, first));
                    (0, 0)
                }
            };
            prop_assert_eq!(got, want);
            prop_assert_eq!(model_view(&h.sm), model.nodes.clone());
            // Advance every open stream by one chunk between writes.
            for (_, s, chunks) in &mut open {
                if let Some(c) = s.next() {
                    chunks.push(c);
                }
            }
        }
        for (expected, s, mut chunks) in open {
            chunks.extend(s);
            let mut r = KvStateMachine::new(KvLimits::default());
            r.restore(chunks).unwrap();
            prop_assert_eq!(dump(&r), dump(&expected));
        }
    }

    /// Decoding arbitrary bytes returns an error or a command, never panics, and
    /// a decoded command re-encodes to an equal command.
    #[test]
    fn decode_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(c) = decode_command(&data) {
            prop_assert_eq!(decode_command(&encode_command(&c)).unwrap(), c);
        }
    }
}

#[test]
fn a_read_request_names_one_key_in_key_and_several_in_keys() {
    use crate::kv_generated::dongting::kv::fb;
    for req in [
        ReadRequest::Get(b("a.b")),
        ReadRequest::List(b("a")),
        ReadRequest::LockInfo(b("l")),
        ReadRequest::BatchGet(vec![b("x"), b("y")]),
        ReadRequest::BatchGet(vec![]),
    ] {
        let data = with_read_request(&req, <[u8]>::to_vec);
        assert_eq!(decode_read_request(&data).unwrap(), req);
    }
    let build = |op: fb::ReadOp, key: Option<&str>, keys: Option<&[&str]>| {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let key = key.map(|k| fbb.create_vector(k.as_bytes()));
        let keys = keys.map(|ks| {
            let items: Vec<_> = ks
                .iter()
                .map(|k| {
                    let key = Some(fbb.create_vector(k.as_bytes()));
                    fb::KeyBytes::create(&mut fbb, &fb::KeyBytesArgs { key })
                })
                .collect();
            fbb.create_vector(&items)
        });
        let root = fb::ReadRequest::create(
            &mut fbb,
            &fb::ReadRequestArgs {
                op,
                keys,
                key,
                page: None,
            },
        );
        fbb.finish(root, None);
        fbb.finished_data().to_vec()
    };
    // A single-key op sent as a one-key list still decodes.
    let old = build(fb::ReadOp::Get, None, Some(&["k"]));
    assert_eq!(decode_read_request(&old).unwrap(), ReadRequest::Get(b("k")));
    for (bad, why) in [
        (
            build(fb::ReadOp::Get, Some("k"), Some(&["k"])),
            "both key and keys",
        ),
        (
            build(fb::ReadOp::BatchGet, Some("k"), None),
            "lists its keys in keys",
        ),
        (
            build(fb::ReadOp::Get, None, Some(&["a", "b"])),
            "exactly one key",
        ),
    ] {
        let e = decode_read_request(&bad).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
}
