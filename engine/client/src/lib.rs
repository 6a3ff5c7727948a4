//! `KvClient`: the DtKV client core.
//!
//! A client knows the service addresses of some servers. For each group it
//! remembers the leader it last reached; without one it asks the servers for
//! their status and picks the node that leads the group. A NOT_RAFT_LEADER
//! answer redirects the call to the hinted leader at once; a node that closes
//! its connection or answers STOPPING (a restart) is passed over for the rest
//! of the call and the others are asked at once which one leads. Other failures are
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

mod config;
mod discovery;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoints;
mod lock;
mod ops;
mod send;
mod seq;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dongting_net::{ClientConfig, RpcClient};
use tokio::sync::Semaphore;

pub use config::KvClientConfig;
pub use dongting_kv::{DEFAULT_LIST_PAGE, KeyRead, MAX_LIST_PAGE, NodeState};
pub use dongting_kv::{LockView, WatchEvent};
pub use dongting_proto::service::ReadMode as Consistency;
pub use error::{ClientError, INVALID_ARGUMENT, UNKNOWN_OUTCOME};
pub use lock::{AutoRenewalLock, DistributedLock, LockListener, RECHECK_INTERVAL};
pub use ops::{Page, Written};
pub use watch::{WATCH_QUEUE_FRAMES, WatchItem, WatchStream, state_name};

use error::unexpected;
use seq::SeqWindow;

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Fails new calls and closes connections after calls in flight finish
    /// (up to one second).
    pub async fn close(&self) {
        self.inner.permits.close();
        self.inner.rpc.close(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests;
