//! [`Watch`]: a DtKV watch stream as a plain handle (no generics, no
//! lifetimes): opened and closed through an [`OpFuture`], read with
//! [`Watch::next_async`] (a callback) or the blocking [`Watch::next`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dongting_client::{NodeState, WatchItem, WatchStream};

use crate::args::{self, MAX_TIMEOUT_MS};
use crate::client::KvClient;
use crate::error::{Error, code};
use crate::op::OpFuture;
use crate::reply::{NodeKind, Reply, ReplyKind};
use crate::runtime::Runtime;

/// What a [`WatchEvent`] reports. The numbers are stable (the C ABI uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum WatchEventKind {
    /// A key changed: `index`, `key`, `node_kind` and `value` describe it.
    #[default]
    Changed = 0,
    /// The server's history no longer holds events the watch had not seen:
    /// re-read the watched keys (a linearizable read); events continue with
    /// indexes above `index`. `history_floor` is where the history starts.
    Compacted = 1,
}

/// One item of a watch. `key` and `value` share the receive buffer (no copy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchEvent {
    /// Changed or compacted.
    pub kind: WatchEventKind,
    /// Changed: the raft index of the write. Compacted: the index events
    /// continue after.
    pub index: u64,
    /// Changed: the key. Empty for compacted.
    pub key: Bytes,
    /// Changed: the key's state after the write (absent when removed).
    pub node_kind: NodeKind,
    /// Changed: the value after the write (empty unless `node_kind` is value).
    pub value: Bytes,
    /// Compacted: the lowest index the server's history resumes after.
    pub history_floor: u64,
}

impl WatchEvent {
    fn from_item(item: WatchItem) -> WatchEvent {
        match item {
            WatchItem::Event(e) => WatchEvent {
                kind: WatchEventKind::Changed,
                index: e.index,
                key: e.key,
                node_kind: match e.state {
                    NodeState::Absent => NodeKind::Absent,
                    NodeState::Value => NodeKind::Value,
                    NodeState::Dir => NodeKind::Dir,
                    NodeState::Lock => NodeKind::Lock,
                },
                value: e.value,
                history_floor: 0,
            },
            WatchItem::Compacted {
                resume_index,
                history_floor,
            } => WatchEvent {
                kind: WatchEventKind::Compacted,
                index: resume_index,
                history_floor,
                ..WatchEvent::default()
            },
        }
    }
}

/// A watch on keys of one group: it reconnects by itself (to any node of
/// the group) and resumes from the last index it delivered, so every change
/// is seen once and in raft index order (see docs/kv.md, "Watches").
/// Cheap to clone; clones share the stream (one caller of `next` at a time
/// gets each event).
///
/// Every call has a form that holds no thread while it waits:
/// [`KvClient::watch_async`] and [`Watch::close_async`] return an
/// [`OpFuture`], [`Watch::next_async`] calls back. A close ends a read in
/// progress at once (with CLOSED).
#[derive(Clone)]
pub struct Watch {
    rt: Runtime,
    stream: Arc<Shared>,
}

/// The stream behind every clone of a [`Watch`].
struct Shared {
    rt: Runtime,
    stream: tokio::sync::Mutex<Option<WatchStream>>,
    /// Set by a close: reads waiting for the stream or an item end at once.
    closed: tokio::sync::watch::Sender<bool>,
    /// The stream's progress index as of the end of the last read (reads
    /// are what advance it).
    last_index: AtomicU64,
}

impl Drop for Shared {
    /// The last handle is gone without `close`: unregister on the runtime
    /// (the caller's thread may have none).
    fn drop(&mut self) {
        if let Some(mut s) = self.stream.get_mut().take()
            && self.rt.check().is_ok()
        {
            self.rt.handle().spawn(async move { s.close().await });
        }
    }
}

impl Shared {
    fn closed_error() -> Error {
        Error::new(code::CLOSED, "the watch is closed")
    }

    /// Waits up to `timeout` for the next item; ends with CLOSED as soon
    /// as the watch is closed. Returns the item (or none) and the progress
    /// index after the read (0 with an error).
    async fn next(&self, timeout: Duration) -> (Result<Option<WatchEvent>, Error>, u64) {
        let mut closed = self.closed.subscribe();
        let read = async {
            let mut g = self.stream.lock().await;
            let Some(s) = g.as_mut() else {
                return (Err(Self::closed_error()), 0);
            };
            let r = match tokio::time::timeout(timeout, s.next()).await {
                Ok(Ok(item)) => Ok(Some(WatchEvent::from_item(item))),
                Ok(Err(e)) => Err(Error::from(e)),
                Err(_) => Ok(None),
            };
            let last = s.last_index();
            self.last_index.store(last, Ordering::Release);
            if r.is_ok() { (r, last) } else { (r, 0) }
        };
        tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => (Err(Self::closed_error()), 0),
            r = read => r,
        }
    }

    /// Ends reads in progress, then unregisters the stream. Idempotent.
    async fn close(&self) {
        self.closed.send_replace(true);
        let s = self.stream.lock().await.take();
        if let Some(mut s) = s {
            s.close().await;
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish()
    }
}

/// Fails a blocking call made on a runtime thread (it would wait for
/// itself).
fn check_blocking(rt: &Runtime) -> Result<(), Error> {
    rt.check()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid_argument(
            "a blocking watch call was made on a runtime thread",
        ));
    }
    Ok(())
}

/// What [`Watch::next_async`] calls: the item or error, and the progress index.
type NextCallback = Box<dyn FnOnce(Result<Option<WatchEvent>, Error>, u64) + Send>;

impl KvClient {
    /// Watches `keys` of `group` (each key covers itself and every key under
    /// it; the empty key is the whole tree) for changes with a raft index
    /// above `from_index` (0: from the serving node's applied index). The
    /// future completes once a server accepted the watch, at most the
    /// client's timeout; its reply (kind [`ReplyKind::Watch`]) holds the
    /// watch in [`Reply::watch`](crate::Reply::watch).
    /// Errors: invalid keys (nothing sent), no server reachable in time,
    /// RAFT_GROUP_NOT_FOUND, a shut-down runtime.
    pub fn watch_async(&self, group: u32, keys: &[&[u8]], from_index: u64) -> OpFuture {
        for k in keys {
            if std::str::from_utf8(k).is_err() {
                return OpFuture::ready(Err(Error::new(
                    code::KV_INVALID_KEY,
                    "INVALID_KEY: a watch key is not valid UTF-8",
                )));
            }
        }
        let owned: Vec<Bytes> = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
        let client = self.client.clone();
        let rt = self.rt.clone();
        self.rt.submit_op(move || async move {
            let refs: Vec<&[u8]> = owned.iter().map(|k| &k[..]).collect();
            let stream = client
                .watch(group, &refs, from_index)
                .await
                .map_err(Error::from)?;
            let watch = Watch {
                rt: rt.clone(),
                stream: Arc::new(Shared {
                    rt,
                    last_index: AtomicU64::new(stream.last_index()),
                    stream: tokio::sync::Mutex::new(Some(stream)),
                    closed: tokio::sync::watch::Sender::new(false),
                }),
            };
            Ok(Reply {
                kind: ReplyKind::Watch,
                watch: Some(watch),
                ..Reply::default()
            })
        })
    }

    /// Blocking [`KvClient::watch_async`]: the watch once a server accepted
    /// it (never call it on a runtime thread).
    pub fn watch(&self, group: u32, keys: &[&[u8]], from_index: u64) -> Result<Watch, Error> {
        check_blocking(&self.rt)?;
        self.watch_async(group, keys, from_index)
            .wait_result()?
            .watch
            .ok_or_else(|| Error::new(code::WRONG_RESULT_KIND, "the reply holds no watch"))
    }
}

impl Watch {
    /// The next item, waiting at most `timeout_ms` (0 to [`MAX_TIMEOUT_MS`],
    /// one day; 0 takes only what already arrived):
    /// `Ok(None)` when nothing arrived in time (nothing is lost; call again).
    /// Blocks the calling thread (never call it on a runtime thread).
    /// Errors: CLOSED after [`Watch::close`] (also one made while this call
    /// waits) or the client's close, RUNTIME_SHUT_DOWN, and the errors of a
    /// registration refused for good.
    pub fn next(&self, timeout_ms: u64) -> Result<Option<WatchEvent>, Error> {
        let timeout = args::wait("timeout_ms", timeout_ms, MAX_TIMEOUT_MS)?;
        check_blocking(&self.rt)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn_next(
            timeout,
            Box::new(move |r, _| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or_else(|_| Err(shut_down()))
    }

    /// [`Watch::next`] without blocking: `callback` runs once, on a runtime
    /// thread (or at once on this thread for a bad argument or a shut-down
    /// runtime), with the item (`None` after `timeout_ms` without one) and
    /// the watch's [`Watch::last_index`] at that moment (0 with an error).
    /// Calls queue behind each other like blocking ones; a close ends them
    /// at once with CLOSED. Keep `callback` short: it runs on an IO thread.
    pub fn next_async(&self, timeout_ms: u64, callback: NextCallback) {
        let timeout = match args::wait("timeout_ms", timeout_ms, MAX_TIMEOUT_MS) {
            Ok(t) => t,
            Err(e) => {
                callback(Err(e), 0);
                return;
            }
        };
        self.spawn_next(timeout, callback);
    }

    fn spawn_next(&self, timeout: Duration, callback: NextCallback) {
        if let Err(e) = self.rt.check() {
            callback(Err(e), 0);
            return;
        }
        /// Runs the callback exactly once, with RUNTIME_SHUT_DOWN when the
        /// task is dropped unfinished (the runtime stopped under it).
        struct Once(Option<NextCallback>);
        impl Drop for Once {
            fn drop(&mut self) {
                if let Some(cb) = self.0.take() {
                    cb(Err(shut_down()), 0);
                }
            }
        }
        let mut once = Once(Some(callback));
        let stream = self.stream.clone();
        self.rt.handle().spawn(async move {
            let (r, last) = stream.next(timeout).await;
            drop(stream);
            if let Some(cb) = once.0.take() {
                cb(r, last);
            }
        });
    }

    /// The highest raft index the watch is complete up to (resume a new watch
    /// from it), as of the end of the last read. Never blocks.
    pub fn last_index(&self) -> Result<u64, Error> {
        Ok(self.stream.last_index.load(Ordering::Acquire))
    }

    /// Unregisters the watch and ends it: a read in progress and later ones
    /// fail with CLOSED. Idempotent. The future completes once the server
    /// answered or after the client's timeout.
    pub fn close_async(&self) -> OpFuture {
        // Reads in progress end now, not when the runtime gets to the close.
        self.stream.closed.send_replace(true);
        let stream = self.stream.clone();
        self.rt.submit_op(move || async move {
            stream.close().await;
            Ok(Reply::default())
        })
    }

    /// Blocking [`Watch::close_async`] (never call it on a runtime thread).
    pub fn close(&self) -> Result<(), Error> {
        check_blocking(&self.rt)?;
        self.close_async().wait_result().map(|_| ())
    }
}

fn shut_down() -> Error {
    Error::new(
        code::RUNTIME_SHUT_DOWN,
        "the runtime was shut down before the watch call finished",
    )
}
