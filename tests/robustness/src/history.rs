//! What a fault run records, how it is written out, and the checks run on it.
//!
//! A [`History`] is a list of [`Record`]s in the order they were recorded:
//! DtKV operations as the clients saw them, and the faults injected. Each
//! check ([`Check`]) reads the whole history and gives a [`CheckResult`];
//! checks of other kinds of records (locks, watch streams) are added by adding
//! a record variant and a check, without touching the runner's loop.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;

use crate::lincheck::{self, Key, Op, Operation, Ret, Value, Verdict};
use crate::watchlock::{AckedWrite, LockHold, WatchRecord};

/// One entry of a history.
#[derive(Debug, Clone)]
pub enum Record {
    /// A DtKV operation.
    Kv(Operation),
    /// A fault was injected or healed at `at` (nanoseconds since the run began).
    Fault {
        /// When.
        at: u64,
        /// What, in words.
        text: String,
    },
    /// The raft index and effect of an acknowledged write (follows its
    /// [`Record::Kv`]).
    Acked(AckedWrite),
    /// What a watcher saw.
    Watch(WatchRecord),
    /// One lock hold.
    Lock(LockHold),
    /// The final read of a key, after every client stopped, with its index.
    FinalRead {
        /// The read's index.
        index: u64,
        /// The key.
        key: Key,
        /// Its value (`None`: absent).
        value: Option<Value>,
    },
}

/// The records of one run.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Every record, in the order recorded.
    pub records: Vec<Record>,
}

impl History {
    /// The DtKV operations.
    pub fn kv_operations(&self) -> Vec<Operation> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Kv(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }

    /// Writes the history as JSON lines, one record a line.
    pub fn write_jsonl(&self, path: &Path) -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for r in &self.records {
            writeln!(f, "{}", record_json(r))?;
        }
        f.flush()
    }
}

fn json_str(out: &mut String, b: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One watch event or re-read as a JSON object of type `kind`.
fn watch_item(
    s: &mut String,
    kind: &str,
    watcher: u64,
    index: u64,
    key: &[u8],
    value: &Option<Value>,
) {
    let _ = write!(
        s,
        "{{\"type\":\"{kind}\",\"watcher\":{watcher},\"index\":{index},\"key\":"
    );
    json_str(s, key);
    s.push_str(",\"value\":");
    json_opt(s, value);
    s.push('}');
}

fn json_opt(out: &mut String, v: &Option<Value>) {
    match v {
        Some(v) => json_str(out, v),
        None => out.push_str("null"),
    }
}

fn json_keys(out: &mut String, keys: &[Key]) {
    out.push('[');
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, k);
    }
    out.push(']');
}

/// One record as a JSON object.
pub fn record_json(r: &Record) -> String {
    let mut s = String::new();
    match r {
        Record::Fault { at, text } => {
            let _ = write!(s, "{{\"type\":\"fault\",\"at\":{at},\"text\":");
            json_str(&mut s, text.as_bytes());
            s.push('}');
        }
        Record::Kv(o) => {
            let _ = write!(
                s,
                "{{\"type\":\"kv\",\"client\":{},\"invoke\":{},\"return\":{},",
                o.client,
                o.invoke,
                o.ret_at.map_or("null".to_string(), |t| t.to_string())
            );
            op_json(&mut s, &o.op);
            s.push_str(",\"result\":");
            ret_json(&mut s, &o.ret);
            s.push('}');
        }
        Record::Acked(a) => {
            let _ = write!(
                s,
                "{{\"type\":\"acked\",\"index\":{},\"changes\":[",
                a.index
            );
            for (i, (k, v)) in a.changes.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push('[');
                json_str(&mut s, k);
                s.push(',');
                json_opt(&mut s, v);
                s.push(']');
            }
            s.push_str("]}");
        }
        Record::Watch(w) => match w {
            WatchRecord::Start {
                watcher,
                from_index,
            } => {
                let _ = write!(
                    s,
                    "{{\"type\":\"watch_start\",\"watcher\":{watcher},\"from\":{from_index}}}"
                );
            }
            WatchRecord::Event {
                watcher,
                index,
                key,
                value,
            } => watch_item(&mut s, "watch_event", *watcher, *index, key, value),
            WatchRecord::Compacted {
                watcher,
                resume_index,
            } => {
                let _ = write!(
                    s,
                    "{{\"type\":\"watch_compacted\",\"watcher\":{watcher},\"resume\":{resume_index}}}"
                );
            }
            WatchRecord::Reread {
                watcher,
                index,
                key,
                value,
            } => watch_item(&mut s, "watch_reread", *watcher, *index, key, value),
            WatchRecord::End {
                watcher,
                last_index,
                target,
                server,
            } => {
                let _ = write!(
                    s,
                    "{{\"type\":\"watch_end\",\"watcher\":{watcher},\"last_index\":{last_index},\
                     \"target\":{target},\"server\":\"{server}\"}}"
                );
            }
        },
        Record::Lock(h) => {
            let _ = write!(
                s,
                "{{\"type\":\"lock\",\"client\":{},\"token\":{},\"sent\":{},\"answered\":{},\
                 \"release_sent\":{},\"lease\":{}}}",
                h.client, h.token, h.sent, h.answered, h.release_sent, h.lease_ns
            );
        }
        Record::FinalRead { index, key, value } => {
            let _ = write!(s, "{{\"type\":\"final_read\",\"index\":{index},\"key\":");
            json_str(&mut s, key);
            s.push_str(",\"value\":");
            json_opt(&mut s, value);
            s.push('}');
        }
    }
    s
}

fn op_json(s: &mut String, op: &Op) {
    match op {
        Op::Put { key, value } => {
            s.push_str("\"op\":\"put\",\"key\":");
            json_str(s, key);
            s.push_str(",\"value\":");
            json_str(s, value);
        }
        Op::Get { key } => {
            s.push_str("\"op\":\"get\",\"key\":");
            json_str(s, key);
        }
        Op::Remove { key } => {
            s.push_str("\"op\":\"remove\",\"key\":");
            json_str(s, key);
        }
        Op::CompareAndSet { key, expected, new } => {
            s.push_str("\"op\":\"cas\",\"key\":");
            json_str(s, key);
            s.push_str(",\"expected\":");
            json_opt(s, expected);
            s.push_str(",\"new\":");
            json_opt(s, new);
        }
        Op::BatchPut(kvs) => {
            s.push_str("\"op\":\"batch_put\",\"entries\":[");
            for (i, (k, v)) in kvs.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push('[');
                json_str(s, k);
                s.push(',');
                json_str(s, v);
                s.push(']');
            }
            s.push(']');
        }
        Op::BatchGet(keys) => {
            s.push_str("\"op\":\"batch_get\",\"keys\":");
            json_keys(s, keys);
        }
        Op::BatchRemove(keys) => {
            s.push_str("\"op\":\"batch_remove\",\"keys\":");
            json_keys(s, keys);
        }
        Op::Expire { key, value } => {
            s.push_str("\"op\":\"expire\",\"key\":");
            json_str(s, key);
            s.push_str(",\"value\":");
            json_str(s, value);
        }
        Op::UpdateTtl { key } => {
            s.push_str("\"op\":\"update_ttl\",\"key\":");
            json_str(s, key);
        }
    }
}

fn ret_json(s: &mut String, r: &Ret) {
    match r {
        Ret::Unknown => s.push_str("\"unknown\""),
        Ret::Done => s.push_str("\"ok\""),
        Ret::Value(v) => {
            s.push_str("{\"value\":");
            json_opt(s, v);
            s.push('}');
        }
        Ret::Values(vs) => {
            s.push_str("{\"values\":[");
            for (i, v) in vs.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json_opt(s, v);
            }
            s.push_str("]}");
        }
        Ret::Removed(b) => {
            let _ = write!(s, "{{\"removed\":{b}}}");
        }
        Ret::Removals(bs) => {
            let v: Vec<String> = bs.iter().map(|b| b.to_string()).collect();
            let _ = write!(s, "{{\"removed\":[{}]}}", v.join(","));
        }
        Ret::Swapped(b) => {
            let _ = write!(s, "{{\"swapped\":{b}}}");
        }
        Ret::Found(b) => {
            let _ = write!(s, "{{\"found\":{b}}}");
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: &'static str,
    /// Whether the history passes it.
    pub passed: bool,
    /// One line for the verdict; on failure, what went wrong.
    pub summary: String,
    /// More lines explaining a failure.
    pub detail: Vec<String>,
}

/// A property checked over a whole history.
pub trait Check {
    /// Runs the check.
    fn check(&self, history: &History) -> CheckResult;
}

/// Every DtKV operation is linearizable (see [`lincheck`]).
#[derive(Debug, Default)]
pub struct Linearizable {
    /// Checker settings.
    pub options: lincheck::Options,
}

impl Check for Linearizable {
    fn check(&self, history: &History) -> CheckResult {
        let ops = history.kv_operations();
        let t = std::time::Instant::now();
        let v = lincheck::check(&ops, self.options);
        let took = t.elapsed();
        match v {
            Verdict::Linearizable => CheckResult {
                name: "linearizable",
                passed: true,
                summary: format!("{} operations linearizable ({took:.2?})", ops.len()),
                detail: Vec::new(),
            },
            Verdict::Unknown { keys } => CheckResult {
                name: "linearizable",
                passed: false,
                summary: format!(
                    "undecided: the search budget ran out on keys {}",
                    show_keys(&keys)
                ),
                detail: Vec::new(),
            },
            Verdict::NotLinearizable(v) => {
                let mut detail = vec![format!(
                    "no linearization of keys {}; {} operations, longest linearizable prefix {}",
                    show_keys(&v.keys),
                    v.operations.len(),
                    v.longest_prefix.len()
                )];
                let stuck: Vec<usize> = (0..v.operations.len())
                    .filter(|i| !v.longest_prefix.contains(i))
                    .take(10)
                    .collect();
                if let Some(&last) = v.longest_prefix.last() {
                    detail.push(format!(
                        "  last linearized: {}",
                        record_json(&Record::Kv(v.operations[last].clone()))
                    ));
                }
                for i in stuck {
                    detail.push(format!(
                        "  not linearized: {}",
                        record_json(&Record::Kv(v.operations[i].clone()))
                    ));
                }
                CheckResult {
                    name: "linearizable",
                    passed: false,
                    summary: format!("NOT linearizable on keys {}", show_keys(&v.keys)),
                    detail,
                }
            }
        }
    }
}

fn show_keys(keys: &[Key]) -> String {
    let k: Vec<String> = keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    k.join(",")
}

/// No acknowledged write is lost: the final read of every key shows a value
/// some write could have left last.
///
/// A write is "superseded" when an acknowledged write of the same key was
/// called after it returned. The final read (the last read of each key,
/// which the runner makes after every client stopped) must show the value of
/// a write that is not superseded (an absent key: a remove that is not, or no
/// acknowledged write at all). This is implied by linearizability; it is
/// reported on its own because it is the property users ask about first.
#[derive(Debug, Default)]
pub struct NoLostWrites;

#[derive(Debug, Clone)]
struct KeyWrite {
    invoke: u64,
    ret_at: Option<u64>,
    acked: bool,
    /// The value left, `None` for a removal.
    value: Option<Value>,
}

impl Check for NoLostWrites {
    fn check(&self, history: &History) -> CheckResult {
        let ops = history.kv_operations();
        let mut writes: HashMap<Key, Vec<KeyWrite>> = HashMap::new();
        let mut final_read: HashMap<Key, (u64, Option<Value>)> = HashMap::new();
        let mut acked = 0usize;
        for o in &ops {
            // An expiry is a removal that may have happened, never a
            // definite one.
            let is_acked = o.ret != Ret::Unknown && !matches!(o.op, Op::Expire { .. });
            let mut add = |k: &Key, value: Option<Value>| {
                writes.entry(k.clone()).or_default().push(KeyWrite {
                    invoke: o.invoke,
                    ret_at: o.ret_at,
                    acked: is_acked,
                    value,
                });
            };
            match (&o.op, &o.ret) {
                (Op::Put { key, value }, _) => add(key, Some(value.clone())),
                (Op::Remove { key }, Ret::Removed(true) | Ret::Unknown) => add(key, None),
                (Op::Expire { key, .. }, _) => add(key, None),
                (Op::CompareAndSet { key, new, .. }, Ret::Swapped(true) | Ret::Unknown) => {
                    add(key, new.clone())
                }
                (Op::BatchPut(kvs), _) => {
                    for (k, v) in kvs {
                        add(k, Some(v.clone()));
                    }
                }
                (Op::BatchRemove(keys), Ret::Unknown) => {
                    for k in keys {
                        add(k, None);
                    }
                }
                (Op::BatchRemove(keys), Ret::Removals(rs)) => {
                    for (k, r) in keys.iter().zip(rs) {
                        if *r {
                            add(k, None);
                        }
                    }
                }
                (Op::Get { key }, Ret::Value(v)) => {
                    let e = final_read.entry(key.clone()).or_insert((0, None));
                    if o.invoke >= e.0 {
                        *e = (o.invoke, v.clone());
                    }
                }
                _ => {}
            }
            if is_acked && !o.op_is_read() {
                acked += 1;
            }
        }
        let mut lost = Vec::new();
        for (key, (read_at, seen)) in &final_read {
            let ws = writes.get(key).map(Vec::as_slice).unwrap_or(&[]);
            // Writes that can still be the last one.
            let live: Vec<&KeyWrite> = ws
                .iter()
                .filter(|w| w.invoke < *read_at)
                .filter(|w| {
                    !ws.iter().any(|y| {
                        y.acked && w.ret_at.is_some_and(|r| r < y.invoke) && y.invoke < *read_at
                    })
                })
                .collect();
            let any_acked = ws.iter().any(|w| w.acked && w.invoke < *read_at);
            let ok = match seen {
                None => !any_acked || live.iter().any(|w| w.value.is_none()),
                Some(v) => live.iter().any(|w| w.value.as_ref() == Some(v)),
            };
            if !ok {
                let newest = live
                    .iter()
                    .filter(|w| w.acked)
                    .map(|w| {
                        w.value.as_ref().map_or("(removed)".into(), |v| {
                            String::from_utf8_lossy(v).into_owned()
                        })
                    })
                    .collect::<Vec<_>>();
                lost.push(format!(
                    "key {}: final read saw {}, but the writes that may be last are {:?}",
                    String::from_utf8_lossy(key),
                    seen.as_ref()
                        .map_or("(absent)".into(), |v| String::from_utf8_lossy(v)
                            .into_owned()),
                    newest
                ));
            }
        }
        lost.sort();
        CheckResult {
            name: "no-lost-writes",
            passed: lost.is_empty(),
            summary: if lost.is_empty() {
                format!(
                    "{acked} acknowledged writes, {} keys read at the end, none lost",
                    final_read.len()
                )
            } else {
                format!("{} keys lost an acknowledged write", lost.len())
            },
            detail: lost,
        }
    }
}

trait ReadKind {
    fn op_is_read(&self) -> bool;
}

impl ReadKind for Operation {
    fn op_is_read(&self) -> bool {
        matches!(self.op, Op::Get { .. } | Op::BatchGet(_))
    }
}

/// A value as stored: the bytes of `s`.
pub fn value(s: &str) -> Value {
    Bytes::copy_from_slice(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, invoke: u64, ret_at: Option<u64>, op: Op, ret: Ret) -> Record {
        Record::Kv(Operation {
            client,
            invoke,
            ret_at,
            op,
            ret,
        })
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: value(k),
            value: value(v),
        }
    }

    fn get(k: &str) -> Op {
        Op::Get { key: value(k) }
    }

    #[test]
    fn a_lost_acknowledged_write_is_reported() {
        let h = History {
            records: vec![
                op(1, 1, Some(2), put("k", "a"), Ret::Done),
                op(1, 3, Some(4), put("k", "b"), Ret::Done),
                op(2, 10, Some(11), get("k"), Ret::Value(Some(value("a")))),
            ],
        };
        let r = NoLostWrites.check(&h);
        assert!(!r.passed, "{r:?}");
        assert!(r.detail[0].contains("final read saw a"), "{r:?}");
        assert!(!Linearizable::default().check(&h).passed);
    }

    #[test]
    fn concurrent_and_unknown_writes_may_be_last() {
        let h = History {
            records: vec![
                op(1, 1, Some(5), put("k", "a"), Ret::Done),
                op(2, 2, Some(3), put("k", "b"), Ret::Done),
                op(3, 4, None, put("k", "c"), Ret::Unknown),
                op(2, 10, Some(11), get("k"), Ret::Value(Some(value("a")))),
                op(2, 12, Some(13), get("k"), Ret::Value(Some(value("c")))),
            ],
        };
        let r = NoLostWrites.check(&h);
        assert!(r.passed, "{r:?}");
        assert!(Linearizable::default().check(&h).passed);
    }

    #[test]
    fn an_expiry_may_have_removed_a_temporary_key() {
        let expire = op(
            0,
            5,
            None,
            Op::Expire {
                key: value("t"),
                value: value("a"),
            },
            Ret::Done,
        );
        let mut h = History {
            records: vec![
                op(1, 1, Some(2), put("t", "a"), Ret::Done),
                op(1, 10, Some(11), get("t"), Ret::Value(None)),
            ],
        };
        assert!(!NoLostWrites.check(&h).passed);
        h.records.push(expire.clone());
        assert!(NoLostWrites.check(&h).passed);
        assert!(Linearizable::default().check(&h).passed);
        assert_eq!(
            record_json(&expire),
            r#"{"type":"kv","client":0,"invoke":5,"return":null,"op":"expire","key":"t","value":"a","result":"ok"}"#
        );
        let touch = op(
            1,
            3,
            Some(4),
            Op::UpdateTtl { key: value("t") },
            Ret::Found(true),
        );
        assert_eq!(
            record_json(&touch),
            r#"{"type":"kv","client":1,"invoke":3,"return":4,"op":"update_ttl","key":"t","result":{"found":true}}"#
        );
    }

    #[test]
    fn history_is_written_as_json_lines() {
        let h = History {
            records: vec![
                Record::Fault {
                    at: 7,
                    text: "kill -9 node 2".into(),
                },
                op(1, 1, None, put("k\"", "v"), Ret::Unknown),
            ],
        };
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("h.jsonl");
        h.write_jsonl(&p).expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"type":"fault","at":7,"text":"kill -9 node 2"}"#
        );
        assert_eq!(
            lines[1],
            r#"{"type":"kv","client":1,"invoke":1,"return":null,"op":"put","key":"k\"","value":"v","result":"unknown"}"#
        );
    }
}
