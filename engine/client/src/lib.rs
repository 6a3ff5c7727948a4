//! `KvClient`: the DtKV client core.
//!
//! A client knows the service addresses of some servers. For each group it
//! remembers the leader it last reached; without one it asks the servers for
//! their status and picks the node that leads the group. A NOT_RAFT_LEADER
//! answer redirects the call to the hinted leader at once. Other failures are
//! retried with a bounded backoff, within the call's deadline, only when a
//! retry is safe: reads always, writes because every write carries this
//! client's id and a sequence number that the state machine deduplicates, so a
//! write sent twice is applied once. Every answer carries the raft index it
//! reflects.
//!
//! ```no_run
//! use std::time::Duration;
//! use dongting_client::{KvClient, KvClientConfig};
//!
//! # async fn demo() -> Result<(), dongting_client::ClientError> {
//! let client = KvClient::new(KvClientConfig::new(vec!["127.0.0.1:5001".parse().unwrap()]));
//! client.mkdir(0, "app").await?;
//! let w = client.put(0, "app.color", b"blue").await?;
//! let r = client.get(0, "app.color").await?;
//! assert_eq!(r.data.map(|n| n.value.to_vec()), Some(b"blue".to_vec()));
//! assert!(r.index >= w.index);
//! client.close().await;
//! # Ok(()) }
//! ```

#[cfg(feature = "failpoints")]
pub mod failpoints;
mod lock;
mod watch;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{
    Command, KvError, ListPage, NodeView, Op, Outcome, ReadRequest, ReadResponse, ReadResult,
};
use dongting_net::{CallOptions, ClientConfig, RpcClient, RpcError, Status};
use dongting_proto::service::{self as proto, ReadMode};
use dongting_proto::status::{NodeStatus, Role};
use tokio::sync::Semaphore;

pub use dongting_kv::{DEFAULT_LIST_PAGE, KeyRead, MAX_LIST_PAGE, NodeState};
pub use dongting_kv::{LockView, WatchEvent};
pub use dongting_proto::service::ReadMode as Consistency;
pub use lock::{AutoRenewalLock, DistributedLock, LockListener, RECHECK_INTERVAL};
pub use watch::{WATCH_QUEUE_FRAMES, WatchItem, WatchStream, state_name};

/// Settings of a [`KvClient`].
#[derive(Debug, Clone)]
pub struct KvClientConfig {
    /// Service addresses (`host:servicePort`) of the servers to start from.
    pub servers: Vec<SocketAddr>,
    /// Time a call may take, retries included (per call with
    /// [`KvClient::with_timeout`]). Default 5 s.
    pub timeout: Duration,
    /// Calls in flight at once; further calls wait for a slot within their
    /// deadline. Default 10,000.
    pub max_in_flight: usize,
    /// First pause before a retry (doubles up to `max_backoff`). Default 10 ms.
    pub min_backoff: Duration,
    /// Longest pause between retries. Default 500 ms.
    pub max_backoff: Duration,
    /// Session id for exactly-once writes; `None` picks a random one. A
    /// given id (for example to act again as the owner of temporary nodes
    /// from a new process) numbers its writes from the wall-clock time in
    /// microseconds, so they never repeat an earlier process's numbers.
    pub client_id: Option<u64>,
}

impl KvClientConfig {
    /// Defaults for the given servers.
    pub fn new(servers: Vec<SocketAddr>) -> KvClientConfig {
        KvClientConfig {
            servers,
            timeout: Duration::from_secs(5),
            max_in_flight: 10_000,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            client_id: None,
        }
    }

    /// Refuses settings no call could succeed with: no server, a server
    /// address with port 0 (nothing can listen there), a zero timeout.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.servers.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no server address given".into(),
            ));
        }
        if let Some(a) = self.servers.iter().find(|a| a.port() == 0) {
            return Err(ClientError::InvalidArgument(format!(
                "server address {a} has port 0"
            )));
        }
        if self.timeout.is_zero() {
            return Err(ClientError::InvalidArgument(
                "the timeout must be more than 0".into(),
            ));
        }
        Ok(())
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// DtKV refused the operation (bad key, missing parent, CAS mismatch...);
    /// nothing changed. `index` is the raft index the answer reflects (0 when
    /// refused before reaching the log).
    #[error("{error} (index {index})")]
    Kv {
        /// The state machine's error.
        error: KvError,
        /// Raft index of the answer.
        index: u64,
    },
    /// The call failed at the RPC level and was not (or could no longer be)
    /// retried.
    #[error("{0}")]
    Rpc(RpcError),
    /// The deadline passed before an answer: a read, or a write none of
    /// whose attempts left this process (it waited for a free slot, say). A
    /// write that may have reached a server ends in
    /// [`ClientError::UnknownOutcome`] instead.
    #[error("TIMEOUT: no answer within {0:?}")]
    Timeout(Duration),
    /// The arguments are invalid; nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// A write failed after an attempt of it may have reached a server, and
    /// no later attempt could learn its fate within the deadline: it may or
    /// may not have been applied. The text names the last failure. Sending
    /// it again is a new write; read the keys to learn what happened.
    #[error("UNKNOWN_OUTCOME: the write may or may not have been applied ({0})")]
    UnknownOutcome(String),
}

/// The stable code of [`ClientError::InvalidArgument`] (codes from 900 on
/// are raised by the client library itself, not by a server).
pub const INVALID_ARGUMENT: u32 = 900;

/// The stable code of [`ClientError::UnknownOutcome`].
pub const UNKNOWN_OUTCOME: u32 = 911;

impl ClientError {
    /// The stable code: the DtKV error code for [`ClientError::Kv`], the
    /// client's own [`INVALID_ARGUMENT`] and [`UNKNOWN_OUTCOME`], otherwise
    /// the RPC status number.
    pub fn code(&self) -> u32 {
        match self {
            ClientError::Kv { error, .. } => u32::from(error.code()),
            ClientError::Rpc(e) => e.status().0,
            ClientError::Timeout(_) => Status::TIMEOUT.0,
            ClientError::InvalidArgument(_) => INVALID_ARGUMENT,
            ClientError::Closed => Status::CLOSED.0,
            ClientError::UnknownOutcome(_) => UNKNOWN_OUTCOME,
        }
    }

    /// True when the request was certainly not executed, so sending it
    /// again, also to another node, is safe even for a write. A write that
    /// may have reached a server never fails with a retryable error: it ends
    /// in [`ClientError::UnknownOutcome`] instead.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Kv { error, .. } => error.is_retryable(),
            ClientError::Rpc(e) => e.retryable(),
            ClientError::Timeout(_)
            | ClientError::InvalidArgument(_)
            | ClientError::Closed
            | ClientError::UnknownOutcome(_) => false,
        }
    }
}

/// One page of a directory's children, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page's children.
    pub nodes: Vec<NodeView>,
    /// True when children follow the last one of this page.
    pub more: bool,
}

impl Page {
    /// The key to start the next page after: the page's last key.
    pub fn next_after(&self) -> Option<&Bytes> {
        self.nodes.last().map(|n| &n.key)
    }
}

/// The answer to a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Raft index the write was applied at.
    pub index: u64,
    /// What it did.
    pub outcome: Outcome,
}

/// A DtKV client. Cheap to clone; clones share connections and the session.
#[derive(Clone)]
pub struct KvClient {
    inner: Arc<Inner>,
    timeout: Duration,
}

impl std::fmt::Debug for KvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvClient")
            .field("client_id", &self.inner.client_id)
            .finish()
    }
}

struct Inner {
    cfg: KvClientConfig,
    rpc: RpcClient,
    client_id: u64,
    in_flight_seqs: Mutex<SeqWindow>,
    leaders: Mutex<HashMap<u32, SocketAddr>>,
    permits: Semaphore,
    rr: AtomicUsize,
    discovering: AtomicBool,
    /// Routes watch pushes to their streams.
    watches: Arc<watch::Registry>,
    /// Calls waiting for lock pushes.
    lock_waiters: Arc<lock::LockWaiters>,
}

/// The sequence numbers of the writes in flight, as a window: from the oldest
/// number still in flight, one done flag per number issued since. Numbers are
/// issued in order and mostly end in order, so issuing, ending and asking for
/// the oldest are all constant time.
#[derive(Debug)]
struct SeqWindow {
    /// The oldest number in flight, or the next to issue when none is.
    base: u64,
    /// From `base` on: whether each issued number has ended. Never starts
    /// with `true` (a finished prefix is popped), so it is empty exactly
    /// when no write is in flight.
    done: VecDeque<bool>,
}

impl SeqWindow {
    fn new(first: u64) -> SeqWindow {
        SeqWindow {
            base: first,
            done: VecDeque::new(),
        }
    }

    fn issue(&mut self) -> u64 {
        let seq = self.base + self.done.len() as u64;
        self.done.push_back(false);
        seq
    }

    fn end(&mut self, seq: u64) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        match self.done.get_mut(i as usize) {
            Some(d) => *d = true,
            None => return,
        }
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.base += 1;
        }
    }

    /// The oldest number in flight: every write below it has ended.
    fn oldest(&self) -> u64 {
        self.base
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.done.is_empty()
    }
}

/// Ends a write's current sequence number on drop.
struct SeqRelease<'a> {
    in_flight: &'a Mutex<SeqWindow>,
    current: &'a AtomicU64,
}

impl Drop for SeqRelease<'_> {
    fn drop(&mut self) {
        let seq = self.current.load(Ordering::Relaxed);
        if seq != 0 {
            lock(self.in_flight).end(seq);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read request in its envelope.
fn read_body(group: u32, req: &ReadRequest, mode: ReadMode) -> Bytes {
    dongting_kv::with_read_request(req, |inner| proto::encode_kv_request(group, mode, inner))
}

/// A read's answer decoded; an error the server answered becomes `Err`.
fn read_answer(body: &[u8]) -> Result<ReadResult<ReadResponse>, ClientError> {
    decoded(dongting_kv::decode_read_result(body))
}

/// A decoded read answer; an error the server answered becomes `Err`.
fn decoded(
    r: Result<ReadResult<Result<ReadResponse, KvError>>, KvError>,
) -> Result<ReadResult<ReadResponse>, ClientError> {
    let r = r.map_err(|e| ClientError::Kv { error: e, index: 0 })?;
    match r.data {
        Ok(data) => Ok(ReadResult {
            index: r.index,
            data,
        }),
        Err(error) => Err(ClientError::Kv {
            error,
            index: r.index,
        }),
    }
}

/// A key as bytes; keys are `.`-separated paths like `app.db.url`.
fn key_bytes(key: &str) -> Bytes {
    Bytes::copy_from_slice(key.as_bytes())
}

impl KvClient {
    /// A client for the servers in `cfg`. Needs a tokio runtime when called.
    pub fn new(cfg: KvClientConfig) -> KvClient {
        let client_id = cfg.client_id.unwrap_or_else(|| rand::random::<u64>() | 1);
        let watches = Arc::new(watch::Registry::default());
        // A reused session id continues above every number an earlier
        // process of the same session can have used (the state machine would
        // answer a repeated number from its session table).
        let first_seq = match cfg.client_id {
            Some(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(1)
                .max(1),
            None => 1,
        };
        let lock_waiters = Arc::new(lock::LockWaiters::default());
        let waiters = lock_waiters.clone();
        let rpc = RpcClient::with_push_listener(
            ClientConfig {
                client_id: format!("kv-client-{client_id:x}"),
                ..ClientConfig::default()
            },
            {
                // One listener: lock pushes to their waiters, the rest to watches.
                let watch_pushes = watches.listener();
                Arc::new(move |p: dongting_net::Push| {
                    if p.command != dongting_proto::lock::CMD_KV_LOCK_PUSH {
                        watch_pushes(p);
                        return;
                    }
                    match dongting_proto::lock::LockPush::decode(&p.body) {
                        Ok(push) => waiters.deliver(push),
                        Err(e) => tracing::debug!(peer = %p.addr, error = %e, "bad lock push"),
                    }
                })
            },
        );
        let permits = Semaphore::new(cfg.max_in_flight.max(1));
        KvClient {
            timeout: cfg.timeout,
            inner: Arc::new(Inner {
                rpc,
                client_id,
                in_flight_seqs: Mutex::new(SeqWindow::new(first_seq)),
                leaders: Mutex::new(HashMap::new()),
                permits,
                rr: AtomicUsize::new(0),
                discovering: AtomicBool::new(false),
                watches,
                lock_waiters,
                cfg,
            }),
        }
    }

    /// A handle on the same client (connections, session, in-flight limit)
    /// whose calls may take `timeout`, retries included.
    pub fn with_timeout(&self, timeout: Duration) -> KvClient {
        KvClient {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// This client's session id.
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// Sets `key` to `value` (the parent directory must exist).
    pub async fn put(&self, group: u32, key: &str, value: &[u8]) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::Put {
                key: key_bytes(key),
                value: Bytes::copy_from_slice(value),
            },
        )
        .await
    }

    /// Like [`KvClient::put`] with a value the caller already holds as `Bytes` (no copy).
    /// (Not an `async fn`: the write's own future, one level less to build
    /// and move per call.)
    pub fn put_bytes(
        &self,
        group: u32,
        key: Bytes,
        value: Bytes,
    ) -> impl std::future::Future<Output = Result<Written, ClientError>> + Send + '_ {
        self.write(group, Op::Put { key, value })
    }

    /// Creates or updates a temporary value owned by this client: it is
    /// removed `ttl` after this write unless [`KvClient::update_ttl`] re-arms it.
    pub async fn put_temp(
        &self,
        group: u32,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::PutTemp {
                key: key_bytes(key),
                value: Bytes::copy_from_slice(value),
                ttl_ms: ttl.as_millis() as u64,
            },
        )
        .await
    }

    /// Creates (or re-arms) a temporary directory whose whole subtree is removed
    /// together when its TTL passes.
    pub async fn make_temp_dir(
        &self,
        group: u32,
        key: &str,
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::MakeTempDir {
                key: key_bytes(key),
                ttl_ms: ttl.as_millis() as u64,
            },
        )
        .await
    }

    /// Re-arms a temporary node's TTL from now (owner only).
    pub async fn update_ttl(
        &self,
        group: u32,
        key: &str,
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::UpdateTtl {
                key: key_bytes(key),
                ttl_ms: ttl.as_millis() as u64,
            },
        )
        .await
    }

    /// Removes a value or an empty directory.
    pub async fn remove(&self, group: u32, key: &str) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::Remove {
                key: key_bytes(key),
            },
        )
        .await
    }

    /// Creates a directory (no change when it exists).
    pub async fn mkdir(&self, group: u32, key: &str) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::Mkdir {
                key: key_bytes(key),
            },
        )
        .await
    }

    /// Sets several keys in one raft entry; one result per key in the outcome.
    pub async fn batch_put(
        &self,
        group: u32,
        entries: &[(&str, &[u8])],
    ) -> Result<Written, ClientError> {
        let entries = entries
            .iter()
            .map(|(k, v)| (key_bytes(k), Bytes::copy_from_slice(v)))
            .collect();
        self.write(group, Op::BatchPut { entries }).await
    }

    /// Removes several keys in one raft entry.
    pub async fn batch_remove(&self, group: u32, keys: &[&str]) -> Result<Written, ClientError> {
        let keys = keys.iter().map(|k| key_bytes(k)).collect();
        self.write(group, Op::BatchRemove { keys }).await
    }

    /// Sets `key` to `new_value` if its value is `expected` (empty: must be
    /// absent; empty `new_value`: delete).
    pub async fn compare_and_set(
        &self,
        group: u32,
        key: &str,
        expected: &[u8],
        new_value: &[u8],
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::CompareAndSet {
                key: key_bytes(key),
                expected: Bytes::copy_from_slice(expected),
                new_value: Bytes::copy_from_slice(new_value),
            },
        )
        .await
    }

    /// Reads one key (linearizable).
    pub async fn get(
        &self,
        group: u32,
        key: &str,
    ) -> Result<ReadResult<Option<NodeView>>, ClientError> {
        self.get_with(group, key_bytes(key), ReadMode::Linearizable)
            .await
    }

    /// Reads one key with the given consistency.
    pub async fn get_with(
        &self,
        group: u32,
        key: Bytes,
        mode: ReadMode,
    ) -> Result<ReadResult<Option<NodeView>>, ClientError> {
        // The hot read, without `read`'s future level in between.
        let req = ReadRequest::Get(key);
        let body = read_body(group, &req, mode);
        let answer = self
            .call(group, proto::CMD_KV_READ, body, mode, None)
            .await?;
        let ReadRequest::Get(key) = &req else {
            return Err(unexpected());
        };
        let r = decoded(dongting_kv::decode_get_result(&answer, key))?;
        match r.data {
            ReadResponse::Get(n) => Ok(ReadResult {
                index: r.index,
                data: n,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Reads several keys; one result per key.
    pub async fn batch_get(
        &self,
        group: u32,
        keys: &[&str],
    ) -> Result<ReadResult<Vec<KeyRead>>, ClientError> {
        let keys = keys.iter().map(|k| key_bytes(k)).collect();
        let r = self
            .read(group, ReadRequest::BatchGet(keys), ReadMode::Linearizable)
            .await?;
        match r.data {
            ReadResponse::BatchGet(v) => Ok(ReadResult {
                index: r.index,
                data: v,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Lists all of a directory's children (the empty key lists the root),
    /// in key order, reading them a page at a time: a directory of any size
    /// lists. When it takes more than one page, each page is read at its own
    /// index and the result's index is the first page's: children added or
    /// removed during the listing may or may not appear, and a watch from the
    /// returned index sees every change after it.
    pub async fn list(
        &self,
        group: u32,
        dir: &str,
    ) -> Result<ReadResult<Vec<NodeView>>, ClientError> {
        self.list_with(group, dir, ReadMode::Linearizable).await
    }

    /// [`Self::list`] with the given consistency for every page.
    pub async fn list_with(
        &self,
        group: u32,
        dir: &str,
        mode: ReadMode,
    ) -> Result<ReadResult<Vec<NodeView>>, ClientError> {
        let first = self
            .list_page_with(group, dir, "", MAX_LIST_PAGE, mode)
            .await?;
        let index = first.index;
        let mut page = first.data;
        let mut nodes = Vec::new();
        loop {
            let next = page
                .next_after()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            nodes.append(&mut page.nodes);
            match next {
                Some(after) if page.more => {
                    page = self
                        .list_page_with(group, dir, &after, MAX_LIST_PAGE, mode)
                        .await?
                        .data;
                }
                _ => break,
            }
        }
        Ok(ReadResult { index, data: nodes })
    }

    /// One page of a directory's children: those whose key sorts after
    /// `start_after` (a full key, typically the last of the previous page;
    /// empty: from the first child), at most `limit` of them (0: 1,000; at
    /// most 10,000) and under the server's byte cap for one answer. The
    /// page's `more` says whether children follow.
    pub async fn list_page(
        &self,
        group: u32,
        dir: &str,
        start_after: &str,
        limit: u32,
    ) -> Result<ReadResult<Page>, ClientError> {
        self.list_page_with(group, dir, start_after, limit, ReadMode::Linearizable)
            .await
    }

    /// [`Self::list_page`] with the given consistency.
    pub async fn list_page_with(
        &self,
        group: u32,
        dir: &str,
        start_after: &str,
        limit: u32,
        mode: ReadMode,
    ) -> Result<ReadResult<Page>, ClientError> {
        if limit > MAX_LIST_PAGE {
            return Err(ClientError::InvalidArgument(format!(
                "page limit {limit} is out of range: at most {MAX_LIST_PAGE} (0: {})",
                DEFAULT_LIST_PAGE
            )));
        }
        let page = ListPage {
            start_after: key_bytes(start_after),
            limit,
        };
        let r = self
            .read(group, ReadRequest::ListPage(key_bytes(dir), page), mode)
            .await?;
        let data = match r.data {
            ReadResponse::ListPage { nodes, more } => Page { nodes, more },
            // A server that predates paging answers the whole directory.
            ReadResponse::List(nodes) => Page { nodes, more: false },
            _ => return Err(unexpected()),
        };
        Ok(ReadResult {
            index: r.index,
            data,
        })
    }

    /// Status of one server (its service address) and the groups it hosts.
    pub async fn server_status(&self, addr: SocketAddr) -> Result<NodeStatus, ClientError> {
        let body = proto::encode_status_request(0, true);
        let r = self
            .inner
            .rpc
            .call(addr, proto::CMD_STATUS, &body, self.timeout)
            .await
            .map_err(ClientError::Rpc)?;
        NodeStatus::decode(&r.body).map_err(|e| ClientError::InvalidArgument(e.to_string()))
    }

    /// Asks every server for its status and returns the service address of
    /// the node that leads `group`, if any does.
    pub async fn find_leader(&self, group: u32) -> Option<SocketAddr> {
        let mut calls = Vec::new();
        for &addr in &self.inner.cfg.servers {
            let c = self.clone();
            calls.push(tokio::spawn(
                async move { (addr, c.server_status(addr).await) },
            ));
        }
        for c in calls {
            if let Ok((addr, Ok(st))) = c.await
                && st
                    .groups
                    .iter()
                    .any(|g| g.group_id == group && g.role == Some(Role::Leader))
            {
                lock(&self.inner.leaders).insert(group, addr);
                return Some(addr);
            }
        }
        None
    }

    /// Fails new calls and closes connections after calls in flight finish
    /// (up to one second).
    pub async fn close(&self) {
        self.inner.permits.close();
        self.inner.rpc.close(Duration::from_secs(1)).await;
    }

    async fn write(&self, group: u32, op: Op) -> Result<Written, ClientError> {
        // Each attempt the server certainly did not execute gets a new sequence
        // number; an attempt whose fate is unknown (a lost connection) is resent
        // with the same one, which the state machine answers from its session
        // table if the first attempt was applied. A fresh number keeps a retry
        // that waited in backoff from falling behind the session's floor.
        let current = AtomicU64::new(0);
        // Releases the attempt's sequence number however this call ends,
        // also when its future is dropped mid-call: a number left behind would
        // hold the session's acknowledged floor back for good.
        let _release = SeqRelease {
            in_flight: &self.inner.in_flight_seqs,
            current: &current,
        };
        let encode = || -> Bytes {
            let (seq, acked_below) = {
                let mut s = lock(&self.inner.in_flight_seqs);
                let old = current.load(Ordering::Relaxed);
                if old != 0 {
                    s.end(old);
                }
                let seq = s.issue();
                current.store(seq, Ordering::Relaxed);
                (seq, s.oldest())
            };
            let cmd = Command {
                client_id: self.inner.client_id,
                seq,
                acked_below,
                leader_time_ms: 0,
                op: op.clone(),
            };
            dongting_kv::with_command(&cmd, |inner| {
                proto::encode_kv_request(group, ReadMode::Linearizable, inner)
            })
        };
        let body = encode();
        let attempts = Attempts {
            renew: &encode,
            policy: SeqPolicy::default(),
        };
        let r = self
            .call(
                group,
                proto::CMD_KV_WRITE,
                body,
                ReadMode::Linearizable,
                Some(&attempts),
            )
            .await;
        let body = r?;
        let w = dongting_kv::decode_write_result(&body)
            .map_err(|e| ClientError::Kv { error: e, index: 0 })?;
        match w.outcome {
            Ok(outcome) => Ok(Written {
                index: w.index,
                outcome,
            }),
            // The number was resent after an attempt whose fate is unknown,
            // and the session no longer keeps its result: that attempt's
            // fate stays unknown.
            Err(error @ KvError::SeqTooOld(_)) if attempts.may_have_run() => {
                Err(ClientError::UnknownOutcome(error.to_string()))
            }
            Err(error) => Err(ClientError::Kv {
                error,
                index: w.index,
            }),
        }
    }

    async fn read(
        &self,
        group: u32,
        req: ReadRequest,
        mode: ReadMode,
    ) -> Result<ReadResult<ReadResponse>, ClientError> {
        let body = read_body(group, &req, mode);
        let answer = self
            .call(group, proto::CMD_KV_READ, body, mode, None)
            .await?;
        read_answer(&answer)
    }

    fn pick_server(&self) -> Option<SocketAddr> {
        let s = &self.inner.cfg.servers;
        if s.is_empty() {
            return None;
        }
        let i = self.inner.rr.fetch_add(1, Ordering::Relaxed);
        Some(s[i % s.len()])
    }

    /// Sends to the group's leader, following redirects and retrying what is
    /// safe to retry, until the deadline.
    async fn call(
        &self,
        group: u32,
        command: u16,
        body: Bytes,
        mode: ReadMode,
        write: Option<&Attempts<'_>>,
    ) -> Result<Bytes, ClientError> {
        let timeout = self.timeout;
        let mut now = Instant::now();
        let deadline = now + timeout;
        // Fast path without a timer; wait (within the deadline) only when full.
        let _permit = match self.inner.permits.try_acquire() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(ClientError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Boxed: the rare path, kept out of every call's future.
                let p = match Box::pin(tokio::time::timeout(timeout, self.inner.permits.acquire()))
                    .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(ClientError::Closed),
                    Err(_) => return Err(ClientError::Timeout(timeout)),
                };
                now = Instant::now();
                p
            }
        };
        // The common case, a known leader that answers, in a small future;
        // anything else (discovery, redirects, retries) in a boxed one.
        let cached = lock(&self.inner.leaders).get(&group).copied();
        let first = match cached {
            Some(addr) => {
                let options = CallOptions::new(deadline.saturating_duration_since(now));
                match self
                    .inner
                    .rpc
                    .call_since(addr, command, &body, now, options)
                    .await
                {
                    Ok(r) => return Ok(r.body),
                    Err(e) => Some((addr, e)),
                }
            }
            None => None,
        };
        let r = Box::pin(self.call_slow(group, command, body, mode, write, deadline, first)).await;
        match (r, write) {
            // Once an attempt of a write may have run, the call ends in
            // success, the state machine's answer, or an unknown outcome:
            // never in an error that says the write was not executed.
            (Err(e), Some(w)) if w.may_have_run() && !planted_retryable_unknown() => {
                Err(e.unknown_outcome())
            }
            (r, _) => r,
        }
    }

    /// [`KvClient::call`] after its first attempt (`first`: the cached
    /// leader it went to and how it failed, when it made one): finds the
    /// leader, follows redirects and retries what is safe to retry, until
    /// `deadline`.
    #[allow(clippy::too_many_arguments)]
    async fn call_slow(
        &self,
        group: u32,
        command: u16,
        mut body: Bytes,
        mode: ReadMode,
        write: Option<&Attempts<'_>>,
        deadline: Instant,
        mut first: Option<(SocketAddr, RpcError)>,
    ) -> Result<Bytes, ClientError> {
        let timeout = self.timeout;
        let any_node = mode != ReadMode::Linearizable;
        let mut backoff = self.inner.cfg.min_backoff;
        let mut not_found = 0usize;
        let mut last_err: Option<ClientError> = None;
        let mut asked_status = false;
        loop {
            let (addr, cached, result) = match first.take() {
                Some((addr, e)) => (addr, Some(addr), Err(e)),
                None => {
                    if Instant::now() >= deadline {
                        return Err(last_err.unwrap_or(ClientError::Timeout(timeout)));
                    }
                    let cached = lock(&self.inner.leaders).get(&group).copied();
                    let addr = match cached {
                        Some(a) => a,
                        None => {
                            // One status round at a time per client: concurrent calls
                            // without a known leader try servers in turn meanwhile.
                            if !asked_status
                                && !any_node
                                && self.inner.cfg.servers.len() > 1
                                && !self.inner.discovering.swap(true, Ordering::AcqRel)
                            {
                                asked_status = true;
                                let found = {
                                    let _reset = ResetOnDrop(&self.inner.discovering);
                                    Box::pin(self.find_leader(group)).await
                                };
                                match found {
                                    Some(a) => a,
                                    None => self.pick_server().ok_or_else(|| {
                                        ClientError::InvalidArgument("no servers".into())
                                    })?,
                                }
                            } else {
                                self.pick_server().ok_or_else(|| {
                                    ClientError::InvalidArgument("no servers".into())
                                })?
                            }
                        }
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    let r = self.inner.rpc.call(addr, command, &body, left).await;
                    (addr, cached, r)
                }
            };
            match result {
                Ok(r) => {
                    if !any_node && cached != Some(addr) {
                        lock(&self.inner.leaders).insert(group, addr);
                    }
                    return Ok(r.body);
                }
                Err(e) => {
                    let status = e.status();
                    lock(&self.inner.leaders).remove(&group);
                    if let Some(w) = write
                        && w.after(&e)
                    {
                        body = (w.renew)();
                    }
                    if status == Status::NOT_RAFT_LEADER {
                        if let Some(h) = e.leader_hint()
                            && let Some(a) = Box::pin(resolve_hint(&h.host, h.port)).await
                            && a != addr
                        {
                            lock(&self.inner.leaders).insert(group, a);
                            last_err = Some(ClientError::Rpc(e));
                            continue;
                        }
                    } else if status == Status::RAFT_GROUP_NOT_FOUND {
                        not_found += 1;
                        if not_found >= self.inner.cfg.servers.len() {
                            return Err(ClientError::Rpc(e));
                        }
                        last_err = Some(ClientError::Rpc(e));
                        continue;
                    } else if status == Status::TIMEOUT {
                        return Err(ClientError::Timeout(timeout));
                    } else if status == Status::CLOSED {
                        return Err(ClientError::Closed);
                    } else if !(e.retryable() || status == Status::NETWORK_ERROR) {
                        // Writes are deduplicated by (client id, seq), so a lost
                        // connection is safe to retry; anything else is final.
                        return Err(ClientError::Rpc(e));
                    }
                    last_err = Some(ClientError::Rpc(e));
                    let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                    Box::pin(tokio::time::sleep(pause)).await;
                    backoff = (backoff * 2).min(self.inner.cfg.max_backoff);
                }
            }
        }
    }
}

/// A write's attempts as [`KvClient::call`] makes them: how to encode the
/// next one, and what the failures so far allow.
struct Attempts<'a> {
    /// Encodes the write again under a fresh sequence number.
    renew: &'a (dyn Fn() -> Bytes + Sync),
    /// Whether an attempt may have run.
    policy: SeqPolicy,
}

impl Attempts<'_> {
    /// Records an attempt's failure; true when the next attempt may be
    /// encoded with a new sequence number.
    fn after(&self, e: &RpcError) -> bool {
        self.policy.after(e)
    }

    /// Whether an attempt may have reached a server and been executed.
    fn may_have_run(&self) -> bool {
        self.policy.pinned()
    }
}

impl ClientError {
    /// This failure as the end of a write an earlier attempt of which may
    /// have been executed.
    fn unknown_outcome(self) -> ClientError {
        match self {
            ClientError::UnknownOutcome(_) => self,
            e => ClientError::UnknownOutcome(format!("last failure: {e}")),
        }
    }
}

/// When a write's retry may take a fresh sequence number.
///
/// An attempt the server certainly did not execute (a retryable error) may be
/// retried under a new number. Once one attempt's fate is unknown (the
/// connection failed after the request was sent), every later attempt must
/// carry that attempt's number, even when a later one is refused outright
/// (say NOT_RAFT_LEADER from a follower while a new leader is elected): the
/// unknown attempt may still be committed, and only the same number lets the
/// state machine answer the retry from its session table instead of applying
/// the write twice.
#[derive(Debug, Default)]
struct SeqPolicy {
    /// Set once an attempt may have run (an atomic only so that a shared
    /// reference does: the call's future stays `Send`).
    pinned: AtomicBool,
}

impl SeqPolicy {
    /// Records an attempt's failure; true when the next attempt may be
    /// encoded with a new sequence number.
    fn after(&self, e: &RpcError) -> bool {
        if !e.retryable() {
            self.pinned.store(true, Ordering::Relaxed);
        }
        !self.pinned()
    }

    /// Whether an attempt may have run.
    fn pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed)
    }
}

/// Whether the planted bug that reports a write whose attempt may have run
/// with its last attempt's error is on (only in a `failpoints` build).
fn planted_retryable_unknown() -> bool {
    #[cfg(feature = "failpoints")]
    {
        failpoints::retryable_unknown()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        false
    }
}

/// Clears a flag when dropped, also when the future holding it is cancelled.
struct ResetOnDrop<'a>(&'a AtomicBool);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn unexpected() -> ClientError {
    ClientError::Kv {
        error: KvError::InvalidCommand("the answer does not match the request".into()),
        index: 0,
    }
}

async fn resolve_hint(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_whose_attempt_may_have_run_keeps_its_sequence_number() {
        let refused = || RpcError::Remote {
            status: Status::NOT_RAFT_LEADER,
            message: "not the leader".into(),
            leader: None,
        };
        let lost = RpcError::Network {
            addr: "127.0.0.1:1".parse().expect("addr"),
            reason: "connection reset".into(),
            sent: true,
        };
        // Refusals alone: each retry may be renumbered.
        let p = SeqPolicy::default();
        assert!(p.after(&refused()));
        assert!(p.after(&refused()));
        // A lost connection after sending pins the number, also for later
        // refusals.
        assert!(!p.after(&lost));
        assert!(!p.after(&refused()));
        assert!(!p.after(&refused()));
    }

    #[tokio::test]
    async fn a_dropped_write_releases_its_sequence_number() {
        // Nothing listens on this port: the write keeps retrying until the
        // caller gives up by dropping its future.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let client = KvClient::new(KvClientConfig::new(vec![addr]));
        let dropped =
            tokio::time::timeout(Duration::from_millis(50), client.put(0, "k", b"v")).await;
        assert!(
            dropped.is_err(),
            "the write cannot succeed without a server"
        );
        assert!(
            lock(&client.inner.in_flight_seqs).is_empty(),
            "the abandoned write still holds a sequence number"
        );
    }

    #[test]
    fn a_config_no_call_could_use_is_refused() {
        let ok = KvClientConfig::new(vec!["127.0.0.1:5001".parse().expect("addr")]);
        assert_eq!(ok.validate(), Ok(()));
        let invalid = |cfg: KvClientConfig| match cfg.validate() {
            Err(ClientError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        };
        assert!(invalid(KvClientConfig::new(Vec::new())).contains("no server"));
        let port0 = KvClientConfig::new(vec![
            "127.0.0.1:5001".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
        ]);
        assert!(invalid(port0).contains("127.0.0.1:0"));
        let mut zero = ok.clone();
        zero.timeout = Duration::ZERO;
        assert!(invalid(zero).contains("timeout"));
    }

    #[test]
    fn the_oldest_sequence_number_in_flight_follows_every_end() {
        let mut w = SeqWindow::new(7);
        let seqs: Vec<u64> = (0..5).map(|_| w.issue()).collect();
        assert_eq!(seqs, vec![7, 8, 9, 10, 11]);
        assert_eq!(w.oldest(), 7);
        w.end(9);
        w.end(9); // a second end of one number changes nothing
        assert_eq!(w.oldest(), 7);
        w.end(7);
        assert_eq!(w.oldest(), 8);
        w.end(8);
        assert_eq!(w.oldest(), 10, "9 ended before: the floor passes it");
        w.end(3); // below the window: ignored
        w.end(11);
        assert!(!w.is_empty());
        w.end(10);
        assert!(w.is_empty());
        assert_eq!(w.oldest(), 12, "with none in flight, the next to issue");
        assert_eq!(w.issue(), 12);
    }
}
