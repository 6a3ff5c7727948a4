//! Node storage: a hash map from full key to node, split into copy-on-write
//! shards, plus two derived indexes (children of each directory, and expiry
//! deadlines) that are rebuilt on restore and never snapshotted.
//!
//! A snapshot clones the `Arc` of every shard (cost: `SHARD_COUNT` reference
//! bumps). While a snapshot holds a shard, the first write to that shard copies
//! it (its entries are keys and nodes whose payloads are `Bytes`, so the copy
//! bumps reference counts and copies no value); later writes to the copy are
//! plain map writes. The snapshot stream drops each shard as soon as it has
//! encoded it, so the copies stop as the stream advances.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use crate::key::parent_of;
use crate::types::ClientId;

/// Number of copy-on-write shards. A power of two; 256 keeps one shard's copy
/// small (1/256 of the keys) when a snapshot is live.
pub(crate) const SHARD_COUNT: usize = 256;

/// One shard: full key to node.
pub(crate) type Shard = HashMap<MapKey, Node, KeyHash>;

/// Longest key kept inside its map entry.
const INLINE_KEY: usize = 30;

/// A key as a shard stores it. A key of up to [`INLINE_KEY`] bytes lives in
/// the map entry itself, so a lookup compares it in the cache line it has
/// already loaded instead of following a pointer to the key's bytes; a longer
/// key is shared, so copying a shard for a snapshot copies no key bytes.
/// Hashes, compares and borrows as the `[u8]` it holds, so the maps are
/// queried with plain slices.
#[derive(Clone)]
pub(crate) struct MapKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Shared(Arc<[u8]>),
}

impl MapKey {
    pub(crate) fn new(key: &[u8]) -> MapKey {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            MapKey(KeyRepr::Inline {
                len: key.len() as u8,
                bytes,
            })
        } else {
            MapKey(KeyRepr::Shared(Arc::from(key)))
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyRepr::Shared(b) => b,
        }
    }
}

impl std::ops::Deref for MapKey {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::borrow::Borrow<[u8]> for MapKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for MapKey {
    #[inline]
    fn eq(&self, other: &MapKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MapKey {}

impl std::hash::Hash for MapKey {
    /// The same as the `[u8]` it holds, as `Borrow` requires.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::fmt::Debug for MapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::key::show(self.as_bytes()))
    }
}

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Multiplies two words to 128 bits and folds the halves: one multiply that
/// mixes every input bit into every output bit.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Hashes `bytes` eight at a time from the state `h`.
#[inline]
fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = fold_mul(h ^ w, MUL);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = fold_mul(h ^ u64::from_le_bytes(buf), MUL);
    }
    h
}

/// Key hasher of the node maps: a word-at-a-time multiply hash, several times
/// cheaper than SipHash on short keys. Seeded per store from the standard
/// library's random state, so clients cannot pick colliding keys in advance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHash(u64);

impl KeyHash {
    fn random() -> KeyHash {
        KeyHash(std::collections::hash_map::RandomState::new().hash_one(0u64) | 1)
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// The state of one [`KeyHash`] hashing.
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = fold_mul(self.0 ^ u64::from(i), MUL);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = fold_mul(self.0 ^ i as u64, MUL);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = fold_mul(self.0 ^ i, MUL);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.0, MUL ^ 0x5851_F42D_4C95_7F2D)
    }
}

/// A temporary node's owner and deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ttl {
    pub owner: ClientId,
    pub deadline_ms: u64,
}

/// The current holder of a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holder {
    pub client_id: ClientId,
    pub token: u64,
    pub lease_deadline_ms: u64,
}

/// A client queued on a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub client_id: ClientId,
    pub lease_ms: u64,
    pub wait_deadline_ms: u64,
}

/// A lock node's state. Invariant: a stored lock always has a holder (a lock
/// whose last holder leaves with no live waiter is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockState {
    pub holder: Holder,
    pub waiters: VecDeque<Waiter>,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Value(Bytes),
    Dir,
    Lock(Box<LockState>),
}

/// One stored node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub create_index: u64,
    pub create_time_ms: u64,
    pub update_index: u64,
    pub update_time_ms: u64,
    /// Raft index of the last (re)arming of this node's deadline; an `Expire`
    /// must name it to take effect.
    pub expire_version: u64,
    /// Set for temporary nodes.
    pub ttl: Option<Ttl>,
}

impl Node {
    pub(crate) fn new(kind: NodeKind, index: u64, now_ms: u64) -> Node {
        Node {
            kind,
            create_index: index,
            create_time_ms: now_ms,
            update_index: index,
            update_time_ms: now_ms,
            expire_version: index,
            ttl: None,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir)
    }

    /// The earliest deadline this node carries (TTL, lock lease, lock waiters).
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let mut d = self.ttl.map(|t| t.deadline_ms);
        if let NodeKind::Lock(l) = &self.kind {
            let mut m = l.holder.lease_deadline_ms;
            for w in &l.waiters {
                m = m.min(w.wait_deadline_ms);
            }
            d = Some(d.map_or(m, |x| x.min(m)));
        }
        d
    }
}

/// Cheap, fixed hash choosing a key's shard. Fixed rather than random so a
/// key's shard is the same on every run, which keeps tests reproducible.
#[inline]
fn shard_of(key: &[u8]) -> usize {
    let h = fold_mul(hash_bytes(key.len() as u64, key), MUL);
    (h >> 56) as usize & (SHARD_COUNT - 1)
}

/// The keyspace. The root directory (empty key) is implicit: it always exists,
/// has no stored node and owns a children set.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    shards: Vec<Arc<Shard>>,
    /// Directory key to the full keys of its children, sorted.
    children: HashMap<Bytes, BTreeSet<Bytes>, KeyHash>,
    /// (deadline, key) of every node with a deadline.
    deadlines: BTreeSet<(u64, Bytes)>,
    len: usize,
    /// Locks, lock waiters and temporary nodes stored, kept in step by
    /// `insert`, `update` and `remove` so metrics never scan the keyspace.
    census: Census,
}

/// Counts of the stored nodes an operator watches (see [`Store::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Census {
    /// Lock nodes (each has a holder).
    pub locks: u64,
    /// Clients queued on locks.
    pub lock_waiters: u64,
    /// Temporary nodes (values and directories with a TTL).
    pub temp: u64,
}

impl Census {
    fn of(node: &Node) -> Census {
        let (locks, lock_waiters) = match &node.kind {
            NodeKind::Lock(l) => (1, l.waiters.len() as u64),
            _ => (0, 0),
        };
        Census {
            locks,
            lock_waiters,
            temp: u64::from(node.ttl.is_some()),
        }
    }

    fn add(&mut self, c: Census) {
        self.locks += c.locks;
        self.lock_waiters += c.lock_waiters;
        self.temp += c.temp;
    }

    fn sub(&mut self, c: Census) {
        debug_assert!(
            self.locks >= c.locks && self.lock_waiters >= c.lock_waiters && self.temp >= c.temp,
            "census {self:?} below a node's {c:?}"
        );
        self.locks -= c.locks;
        self.lock_waiters -= c.lock_waiters;
        self.temp -= c.temp;
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub(crate) fn new() -> Store {
        let hash = KeyHash::random();
        let mut children = HashMap::with_hasher(hash);
        children.insert(Bytes::new(), BTreeSet::new());
        Store {
            shards: (0..SHARD_COUNT)
                .map(|_| Arc::new(Shard::with_hasher(hash)))
                .collect(),
            children,
            deadlines: BTreeSet::new(),
            len: 0,
            census: Census::default(),
        }
    }

    /// Number of stored nodes (the root is not counted).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Locks, lock waiters and temporary nodes stored; O(1).
    pub(crate) fn census(&self) -> Census {
        self.census
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Node> {
        self.shards[shard_of(key)].get(key)
    }

    /// Runs `f` on the node at `key` and keeps the expiry index in step with any
    /// deadline change `f` makes. Copies the shard first if a snapshot holds it.
    pub(crate) fn update<R>(&mut self, key: &[u8], f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        let shard = Arc::make_mut(&mut self.shards[shard_of(key)]);
        let node = shard.get_mut(key)?;
        let before = node.next_deadline();
        let counted = Census::of(node);
        let r = f(node);
        let after = node.next_deadline();
        let now = Census::of(node);
        if counted != now {
            self.census.sub(counted);
            self.census.add(now);
        }
        if before != after {
            // Rare (TTL and lock changes).
            let stored_key = Bytes::copy_from_slice(key);
            if let Some(d) = before {
                self.deadlines.remove(&(d, stored_key.clone()));
            }
            if let Some(d) = after {
                self.deadlines.insert((d, stored_key));
            }
        }
        Some(r)
    }

    /// Inserts a new node. The caller has checked that the key is absent and its
    /// parent is a directory. The key is copied into its own allocation so the
    /// map never pins a larger receive buffer for a small key.
    pub(crate) fn insert(&mut self, key: &[u8], node: Node) {
        let key = Bytes::copy_from_slice(key);
        self.insert_owned(key, node);
    }

    fn insert_owned(&mut self, key: Bytes, node: Node) {
        let node_census = Census::of(&node);
        if let Some(d) = node.next_deadline() {
            self.deadlines.insert((d, key.clone()));
        }
        if node.is_dir() {
            self.children.entry(key.clone()).or_default();
        }
        self.children
            .entry(Bytes::copy_from_slice(parent_of(&key)))
            .or_default()
            .insert(key.clone());
        let old = Arc::make_mut(&mut self.shards[shard_of(&key)]).insert(MapKey::new(&key), node);
        debug_assert!(old.is_none(), "insert over an existing node");
        self.len += 1;
        self.census.add(node_census);
    }

    /// Removes the node at `key` (a directory must have no children left).
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Node> {
        let shard = Arc::make_mut(&mut self.shards[shard_of(key)]);
        let node = shard.remove(key)?;
        self.len -= 1;
        self.census.sub(Census::of(&node));
        if let Some(d) = node.next_deadline() {
            self.deadlines.remove(&(d, Bytes::copy_from_slice(key)));
        }
        if node.is_dir() {
            let kids = self.children.remove(key);
            debug_assert!(kids.is_none_or(|k| k.is_empty()), "removed a non-empty dir");
        }
        let parent = parent_of(key);
        if let Some(set) = self.children.get_mut(parent) {
            set.remove(key);
        }
        Some(node)
    }

    /// The sorted full keys of a directory's children (empty for a non-dir).
    pub(crate) fn children(&self, dir: &[u8]) -> impl DoubleEndedIterator<Item = &Bytes> {
        self.children.get(dir).into_iter().flatten()
    }

    /// The children of `dir` whose key sorts after `after` (all when empty).
    pub(crate) fn children_after<'a>(
        &'a self,
        dir: &[u8],
        after: &'a [u8],
    ) -> impl Iterator<Item = &'a Bytes> + 'a {
        use std::ops::Bound;
        let lower = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after)
        };
        self.children
            .get(dir)
            .into_iter()
            .flat_map(move |set| set.range::<[u8], _>((lower, Bound::Unbounded)))
    }

    pub(crate) fn child_count(&self, dir: &[u8]) -> usize {
        self.children.get(dir).map_or(0, BTreeSet::len)
    }

    /// All keys of the subtree under `dir` (excluded), deepest first, so removing
    /// them in order never removes a non-empty directory.
    pub(crate) fn subtree_post_order(&self, dir: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        // Explicit stack: (key, children expanded?) avoids recursion on deep trees.
        let mut stack: Vec<(Bytes, bool)> = self
            .children(dir)
            .rev()
            .map(|k| (k.clone(), false))
            .collect();
        while let Some((k, expanded)) = stack.pop() {
            if expanded || self.child_count(&k) == 0 {
                out.push(k);
            } else {
                stack.push((k.clone(), true));
                stack.extend(self.children(&k).rev().map(|c| (c.clone(), false)));
            }
        }
        out
    }

    /// Nodes whose earliest deadline is at or before `now_ms`, earliest first.
    pub(crate) fn due(&self, now_ms: u64) -> impl Iterator<Item = (u64, &Bytes)> {
        self.deadlines
            .iter()
            .take_while(move |(d, _)| *d <= now_ms)
            .map(|(d, k)| (*d, k))
    }

    /// The earliest deadline in the store.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// A consistent view of every shard for a snapshot: `SHARD_COUNT` `Arc` clones.
    pub(crate) fn share_shards(&self) -> Vec<Arc<Shard>> {
        self.shards.clone()
    }

    /// Builds a store from restored nodes, rebuilding both indexes. Fails with a
    /// description when a node's parent is missing or not a directory.
    pub(crate) fn from_nodes(nodes: Vec<(Bytes, Node)>) -> Result<Store, String> {
        let mut store = Store::new();
        for (key, node) in nodes {
            if store.get(&key).is_some() {
                return Err(format!("duplicate key {}", crate::key::show(&key)));
            }
            store.insert_owned(key, node);
        }
        for (dir, kids) in &store.children {
            if dir.is_empty() {
                continue;
            }
            match store.get(dir) {
                Some(n) if n.is_dir() => {}
                Some(_) => {
                    return Err(format!(
                        "{} has children but is not a directory",
                        crate::key::show(dir)
                    ));
                }
                None => {
                    let child = kids
                        .first()
                        .map_or_else(String::new, |k| crate::key::show(k));
                    return Err(format!(
                        "{child} has no parent directory {}",
                        crate::key::show(dir)
                    ));
                }
            }
        }
        Ok(store)
    }

    /// Every node, in no particular order (tests and model comparison).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&MapKey, &Node)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

#[cfg(test)]
mod census_tests {
    use super::*;

    #[test]
    fn the_census_follows_inserts_updates_and_removes() {
        let mut s = Store::new();
        let mut temp = Node::new(NodeKind::Value(Bytes::from_static(b"v")), 1, 0);
        temp.ttl = Some(Ttl {
            owner: Default::default(),
            deadline_ms: 10,
        });
        s.insert(b"t", temp);
        let holder = Holder {
            client_id: Default::default(),
            token: 2,
            lease_deadline_ms: 20,
        };
        let lock = LockState {
            holder,
            waiters: Default::default(),
        };
        s.insert(b"l", Node::new(NodeKind::Lock(Box::new(lock)), 2, 0));
        let c = s.census();
        assert_eq!((c.locks, c.lock_waiters, c.temp), (1, 0, 1));
        s.update(b"l", |n| {
            if let NodeKind::Lock(l) = &mut n.kind {
                for _ in 0..2 {
                    l.waiters.push_back(Waiter {
                        client_id: Default::default(),
                        lease_ms: 1,
                        wait_deadline_ms: 30,
                    });
                }
            }
        });
        assert_eq!(s.census().lock_waiters, 2);
        s.update(b"t", |n| n.ttl = None);
        assert_eq!(s.census().temp, 0);
        s.remove(b"l");
        assert_eq!(s.census(), Census::default());
    }
}

#[cfg(test)]
mod map_key_tests {
    use super::*;

    #[test]
    fn a_map_key_is_as_small_as_bytes_and_hashes_as_its_slice() {
        assert_eq!(std::mem::size_of::<MapKey>(), std::mem::size_of::<Bytes>());
        let h = KeyHash::random();
        for len in [0, 1, 8, INLINE_KEY, INLINE_KEY + 1, 200] {
            let k: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let m = MapKey::new(&k);
            assert_eq!(m.as_bytes(), &k[..]);
            assert_eq!(h.hash_one(&m), h.hash_one(&k[..]), "len {len}");
            let mut map: Shard = HashMap::with_hasher(h);
            map.insert(m.clone(), Node::new(NodeKind::Dir, 1, 0));
            assert!(map.contains_key(&k[..]), "len {len}");
            assert!(!map.contains_key(&b"zz"[..]));
            assert_eq!(m, MapKey::new(&k));
        }
    }
}
