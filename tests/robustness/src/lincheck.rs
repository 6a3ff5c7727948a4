//! A linearizability checker for DtKV histories.
//!
//! The algorithm is Wing and Gong's search with Lowe's memoization (the one
//! Porcupine and Knossos use): walk the history in time order, try to
//! linearize each pending call, remember every (set of linearized operations,
//! model state) pair already explored so that no configuration is searched
//! twice, and backtrack when an operation's return is reached before it could
//! be linearized. Operations on disjoint keys commute, so the history is first
//! partitioned into groups of keys that some operation touches together (a
//! batch joins its keys), and each group is checked alone (P-compositionality).
//!
//! Rules for what a client saw:
//! - a write whose outcome is unknown (it failed or timed out after it may
//!   have been sent) returns at infinity: it may take effect at any point after
//!   its call, or never (the same as taking effect after everything else);
//! - a read that failed is dropped: it observed nothing;
//! - a TTL expiry is a server-side removal of one value (values are unique)
//!   whose window is given by the history (from the earliest instant it may
//!   happen to when it was observed, or infinity); linearized when the key
//!   holds another value or none, it changes nothing (that value was
//!   overwritten or removed first, and never expired).
//!
//! Cost: each partition's search is close to linear in its operations when
//! few clients overlap, but exponential in the worst case in the number of
//! concurrent operations of one partition. Keep batches inside small fixed
//! groups of keys: a batch over random keys joins everything into one
//! partition. 100,000 operations of 16 clients over 250 key pairs check in
//! about a tenth of a second.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use bytes::Bytes;

/// A key of the store.
pub type Key = Bytes;
/// A value of the store.
pub type Value = Bytes;

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: Key,
        /// The new value.
        value: Value,
    },
    /// Reads `key`.
    Get {
        /// The key.
        key: Key,
    },
    /// Removes `key`.
    Remove {
        /// The key.
        key: Key,
    },
    /// Sets `key` to `new` (absent when `None`) if it holds `expected`
    /// (absent when `None`).
    CompareAndSet {
        /// The key.
        key: Key,
        /// The value required, `None` for "absent".
        expected: Option<Value>,
        /// The value to set, `None` to remove.
        new: Option<Value>,
    },
    /// Sets every key, atomically.
    BatchPut(Vec<(Key, Value)>),
    /// Reads every key, atomically.
    BatchGet(Vec<Key>),
    /// Removes every key, atomically.
    BatchRemove(Vec<Key>),
    /// The server removed `key` holding `value` because its TTL ran out
    /// (no change when the key holds anything else).
    Expire {
        /// The key.
        key: Key,
        /// The value the expiry removes.
        value: Value,
    },
    /// Re-arms the TTL of `key`: answered [`Ret::Found`] with whether the
    /// key exists; changes no value.
    UpdateTtl {
        /// The key.
        key: Key,
    },
}

impl Op {
    fn keys(&self) -> Vec<&Key> {
        match self {
            Op::Put { key, .. }
            | Op::Get { key }
            | Op::Remove { key }
            | Op::CompareAndSet { key, .. }
            | Op::Expire { key, .. }
            | Op::UpdateTtl { key } => vec![key],
            Op::BatchPut(kvs) => kvs.iter().map(|(k, _)| k).collect(),
            Op::BatchGet(keys) | Op::BatchRemove(keys) => keys.iter().collect(),
        }
    }

    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Get { .. } | Op::BatchGet(_))
    }
}

/// What the client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ret {
    /// The call failed or timed out: a write may or may not have taken effect;
    /// a read saw nothing.
    Unknown,
    /// A write succeeded (put, batch put, expiry).
    Done,
    /// A get returned this value (`None`: absent).
    Value(Option<Value>),
    /// A batch get returned these values, in key order.
    Values(Vec<Option<Value>>),
    /// A remove succeeded; `true` when the key existed.
    Removed(bool),
    /// A batch remove succeeded; per key, whether it existed.
    Removals(Vec<bool>),
    /// A compare-and-set succeeded (`true`) or found another value (`false`).
    Swapped(bool),
    /// An update of a TTL found the key (`true`) or found it absent (`false`).
    Found(bool),
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Who issued it (for reports only).
    pub client: u64,
    /// When it was called, in any monotonic unit (nanoseconds, say).
    pub invoke: u64,
    /// When it returned; `None` for never (an unknown outcome).
    pub ret_at: Option<u64>,
    /// What it asked for.
    pub op: Op,
    /// What it was told.
    pub ret: Ret,
}

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, consistent with real time, explains
    /// every result.
    Linearizable,
    /// No such order exists for the keys named.
    NotLinearizable(Violation),
    /// The search exceeded its step budget on the keys named.
    Unknown {
        /// The keys of the partition that was not decided.
        keys: Vec<Key>,
    },
}

/// Where a history stops being explainable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The keys of the partition with no linearization.
    pub keys: Vec<Key>,
    /// The operations of that partition, in call order.
    pub operations: Vec<Operation>,
    /// The longest prefix the search could linearize, as indices into
    /// `operations`, in linearization order.
    pub longest_prefix: Vec<usize>,
}

/// Checker settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Search steps allowed per partition before answering
    /// [`Verdict::Unknown`].
    pub max_steps_per_partition: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_steps_per_partition: 50_000_000,
        }
    }
}

/// Checks `history` from an empty store.
pub fn check(history: &[Operation], options: Options) -> Verdict {
    check_from(history, &HashMap::new(), options)
}

/// Checks `history` from a store holding `initial`.
pub fn check_from(
    history: &[Operation],
    initial: &HashMap<Key, Value>,
    options: Options,
) -> Verdict {
    let mut parts = partition(history);
    // Smallest partitions first, so a violation in one is reported quickly.
    parts.sort_by_key(|p| p.ops.len());
    for part in parts {
        match check_partition(&part, initial, options) {
            Verdict::Linearizable => {}
            other => return other,
        }
    }
    Verdict::Linearizable
}

struct Partition {
    keys: Vec<Key>,
    ops: Vec<Operation>,
}

/// Groups operations by connected keys; drops reads that saw nothing and
/// moves the return of unknown writes to infinity.
fn partition(history: &[Operation]) -> Vec<Partition> {
    let mut index: HashMap<&Key, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for op in history {
        let ids: Vec<usize> = op
            .op
            .keys()
            .into_iter()
            .map(|k| {
                *index.entry(k).or_insert_with(|| {
                    parent.push(parent.len());
                    parent.len() - 1
                })
            })
            .collect();
        for w in ids.windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            if a != b {
                parent[a] = b;
            }
        }
    }
    let mut parts: HashMap<usize, Partition> = HashMap::new();
    let mut key_list: Vec<(&Key, usize)> = index.iter().map(|(k, i)| (*k, *i)).collect();
    key_list.sort();
    for (key, i) in key_list {
        let root = find(&mut parent, i);
        parts
            .entry(root)
            .or_insert_with(|| Partition {
                keys: Vec::new(),
                ops: Vec::new(),
            })
            .keys
            .push(key.clone());
    }
    for op in history {
        if op.ret == Ret::Unknown && op.op.is_read() {
            continue;
        }
        let Some(first) = op.op.keys().first().map(|k| index[*k]) else {
            continue;
        };
        let root = find(&mut parent, first);
        let mut op = op.clone();
        if op.ret == Ret::Unknown {
            op.ret_at = None;
        }
        if let Some(p) = parts.get_mut(&root) {
            p.ops.push(op);
        }
    }
    let mut parts: Vec<Partition> = parts.into_values().filter(|p| !p.ops.is_empty()).collect();
    for p in &mut parts {
        p.ops.sort_by_key(|o| o.invoke);
    }
    parts
}

/// The state of one partition: a value or absence per key slot, with a hash
/// kept up to date on every write (the xor of each present slot's hash), so a
/// step costs O(keys it touches) however many keys the partition has.
struct Model {
    values: Vec<Option<Value>>,
    hash: u64,
}

/// Writes of one step: (slot, value before, value after), in order.
type Writes = Vec<(usize, Option<Value>, Option<Value>)>;

fn slot_hash(slot: usize, value: &Option<Value>) -> u64 {
    match value {
        None => 0,
        Some(v) => {
            // SipHash with fixed keys: the same value always hashes the same.
            #[allow(deprecated)]
            let mut h = std::hash::SipHasher::new();
            v.hash(&mut h);
            mix(h.finish() ^ mix(slot as u64))
        }
    }
}

impl Model {
    fn new(values: Vec<Option<Value>>) -> Model {
        let hash = values
            .iter()
            .enumerate()
            .fold(0, |h, (i, v)| h ^ slot_hash(i, v));
        Model { values, hash }
    }

    fn set(&mut self, slot: usize, value: Option<Value>) -> Option<Value> {
        self.hash ^= slot_hash(slot, &self.values[slot]) ^ slot_hash(slot, &value);
        std::mem::replace(&mut self.values[slot], value)
    }

    /// Applies `op` if `ret` is what it would return from this state, and
    /// returns what it wrote; `None` (and no change) when `ret` is impossible.
    fn step(&mut self, slot: &HashMap<&Key, usize>, op: &Op, ret: &Ret) -> Option<Writes> {
        let at = |k: &Key| slot[k];
        let unknown = *ret == Ret::Unknown;
        let mut writes: Writes = Vec::new();
        let mut write = |m: &mut Model, s: usize, v: Option<Value>| {
            let old = m.set(s, v.clone());
            writes.push((s, old, v));
        };
        let ok = match op {
            Op::Put { key, value } => {
                let ok = unknown || *ret == Ret::Done;
                if ok {
                    write(self, at(key), Some(value.clone()));
                }
                ok
            }
            Op::Get { key } => *ret == Ret::Value(self.values[at(key)].clone()),
            Op::Remove { key } => {
                let ok = unknown || *ret == Ret::Removed(self.values[at(key)].is_some());
                if ok {
                    write(self, at(key), None);
                }
                ok
            }
            Op::CompareAndSet { key, expected, new } => {
                let matches = self.values[at(key)] == *expected;
                let ok = unknown || *ret == Ret::Swapped(matches);
                if ok && matches {
                    write(self, at(key), new.clone());
                }
                ok
            }
            Op::BatchPut(kvs) => {
                let ok = unknown || *ret == Ret::Done;
                if ok {
                    for (k, v) in kvs {
                        write(self, at(k), Some(v.clone()));
                    }
                }
                ok
            }
            Op::BatchGet(keys) => {
                let seen: Vec<Option<Value>> =
                    keys.iter().map(|k| self.values[at(k)].clone()).collect();
                *ret == Ret::Values(seen)
            }
            Op::BatchRemove(keys) => {
                // A key named twice existed only for its first removal.
                let mut existed = Vec::with_capacity(keys.len());
                for k in keys {
                    existed.push(self.values[at(k)].is_some());
                    write(self, at(k), None);
                }
                unknown || *ret == Ret::Removals(existed)
            }
            Op::Expire { key, value } => {
                if self.values[at(key)].as_ref() == Some(value) {
                    write(self, at(key), None);
                }
                true
            }
            Op::UpdateTtl { key } => unknown || *ret == Ret::Found(self.values[at(key)].is_some()),
        };
        if !ok {
            self.undo(&writes);
            return None;
        }
        Some(writes)
    }

    fn undo(&mut self, writes: &Writes) {
        for (s, old, _) in writes.iter().rev() {
            self.set(*s, old.clone());
        }
    }
}

/// A set of operation numbers, kept only as two independent 64-bit hashes
/// (each the xor of its members' fixed random values). The memo stores these
/// 128 bits instead of the set, so memory per explored configuration is
/// constant; a false match needs a 128-bit collision.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct OpSet(u64, u64);

/// splitmix64: a fixed pseudo-random value per input.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl OpSet {
    fn toggle(&mut self, i: usize) {
        self.0 ^= mix(i as u64);
        self.1 ^= mix(!(i as u64));
    }
}

const NIL: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, its return event.
    ret: usize,
    prev: usize,
    next: usize,
}

fn check_partition(part: &Partition, initial: &HashMap<Key, Value>, options: Options) -> Verdict {
    let slot: HashMap<&Key, usize> = part.keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let mut model = Model::new(part.keys.iter().map(|k| initial.get(k).cloned()).collect());
    let n = part.ops.len();

    // Events in time order; at equal times calls come first, so operations
    // that touch at an instant count as concurrent.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in part.ops.iter().enumerate() {
        order.push((op.invoke, false, i));
        order.push((op.ret_at.unwrap_or(u64::MAX), true, i));
    }
    order.sort();
    // Slot 0 is the head sentinel.
    let mut events = vec![Event {
        op: NIL,
        is_call: false,
        ret: NIL,
        prev: NIL,
        next: NIL,
    }];
    let mut call_of = vec![NIL; n];
    for &(_, is_return, op) in &order {
        let id = events.len();
        events.push(Event {
            op,
            is_call: !is_return,
            ret: NIL,
            prev: id - 1,
            next: NIL,
        });
        events[id - 1].next = id;
        if is_return {
            events[call_of[op]].ret = id;
        } else {
            call_of[op] = id;
        }
    }

    let lift = |events: &mut Vec<Event>, call: usize| {
        for e in [call, events[call].ret] {
            let (p, x) = (events[e].prev, events[e].next);
            events[p].next = x;
            if x != NIL {
                events[x].prev = p;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, call: usize| {
        for e in [events[call].ret, call] {
            let (p, x) = (events[e].prev, events[e].next);
            events[p].next = e;
            if x != NIL {
                events[x].prev = e;
            }
        }
    };

    let mut linearized = OpSet::default();
    let mut cache: HashSet<(OpSet, u64)> = HashSet::new();
    // Each linearized call with the writes to undo when backtracking.
    let mut stack: Vec<(usize, Writes)> = Vec::new();
    // The deepest linearization seen, for the report; `agree` is how much of
    // it the stack still shares, so it is updated in amortized O(1).
    let mut longest: Vec<usize> = Vec::new();
    let mut agree = 0;
    let mut entry = events[0].next;
    let mut steps = 0u64;
    while events[0].next != NIL {
        steps += 1;
        if steps > options.max_steps_per_partition {
            return Verdict::Unknown {
                keys: part.keys.clone(),
            };
        }
        let e = events[entry];
        if e.is_call {
            let op = &part.ops[e.op];
            if let Some(writes) = model.step(&slot, &op.op, &op.ret) {
                let mut candidate = linearized;
                candidate.toggle(e.op);
                if cache.insert((candidate, model.hash)) {
                    stack.push((entry, writes));
                    linearized = candidate;
                    lift(&mut events, entry);
                    if stack.len() > longest.len() {
                        longest.truncate(agree);
                        longest.extend(stack[agree..].iter().map(|(c, _)| events[*c].op));
                        agree = stack.len();
                    }
                    entry = events[0].next;
                    continue;
                }
                model.undo(&writes);
            }
            entry = e.next;
        } else {
            // A return reached before its call was linearized: undo the
            // last choice and try the next candidate after it.
            let Some((call, writes)) = stack.pop() else {
                return Verdict::NotLinearizable(Violation {
                    keys: part.keys.clone(),
                    operations: part.ops.clone(),
                    longest_prefix: longest,
                });
            };
            model.undo(&writes);
            agree = agree.min(stack.len());
            linearized.toggle(events[call].op);
            unlift(&mut events, call);
            entry = events[call].next;
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
pub(crate) mod tests;
