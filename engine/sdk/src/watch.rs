//! [`Watch`]: a DtKV watch stream as a plain handle (no generics, no
//! lifetimes), read with a blocking [`Watch::next`] that bindings call with
//! their interpreter lock released.

use std::sync::Arc;

use bytes::Bytes;
use dongting_client::{NodeState, WatchItem, WatchStream};

use crate::args::{self, MAX_TIMEOUT_MS};
use crate::client::KvClient;
use crate::error::{Error, code};
use crate::reply::NodeKind;
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
#[derive(Clone)]
pub struct Watch {
    rt: Runtime,
    stream: Arc<Shared>,
}

/// The stream behind every clone of a [`Watch`].
struct Shared {
    rt: Runtime,
    stream: tokio::sync::Mutex<Option<WatchStream>>,
}

impl std::ops::Deref for Shared {
    type Target = tokio::sync::Mutex<Option<WatchStream>>;
    fn deref(&self) -> &Self::Target {
        &self.stream
    }
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

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish()
    }
}

/// Runs `fut` on the runtime and blocks the calling thread for its result.
fn block<T: Send + 'static>(
    rt: &Runtime,
    fut: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    rt.check()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid_argument(
            "a blocking watch call was made on a runtime thread",
        ));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.handle().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        Error::new(
            code::RUNTIME_SHUT_DOWN,
            "the runtime was shut down before the watch call finished",
        )
    })?
}

/// What [`Watch::next_async`] calls: the item or error, and the progress index.
type NextCallback = Box<dyn FnOnce(Result<Option<WatchEvent>, Error>, u64) + Send>;

impl KvClient {
    /// Watches `keys` of `group` (each key covers itself and every key under
    /// it; the empty key is the whole tree) for changes with a raft index
    /// above `from_index` (0: from the serving node's applied index). Blocks
    /// until a server accepted the watch, at most the client's timeout.
    /// Errors: invalid keys (nothing sent), no server reachable in time,
    /// RAFT_GROUP_NOT_FOUND, a shut-down runtime.
    pub fn watch(&self, group: u32, keys: &[&[u8]], from_index: u64) -> Result<Watch, Error> {
        for k in keys {
            if std::str::from_utf8(k).is_err() {
                return Err(Error::new(
                    code::KV_INVALID_KEY,
                    "INVALID_KEY: a watch key is not valid UTF-8",
                ));
            }
        }
        let owned: Vec<Bytes> = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
        let client = self.client.clone();
        let stream = block(&self.rt, async move {
            let refs: Vec<&[u8]> = owned.iter().map(|k| &k[..]).collect();
            client
                .watch(group, &refs, from_index)
                .await
                .map_err(Error::from)
        })?;
        Ok(Watch {
            rt: self.rt.clone(),
            stream: Arc::new(Shared {
                rt: self.rt.clone(),
                stream: tokio::sync::Mutex::new(Some(stream)),
            }),
        })
    }
}

impl Watch {
    /// The next item, waiting at most `timeout_ms` (0 to [`MAX_TIMEOUT_MS`],
    /// one day; 0 takes only what already arrived):
    /// `Ok(None)` when nothing arrived in time (nothing is lost; call again).
    /// Blocks the calling thread (never call it on a runtime thread).
    /// Errors: CLOSED after [`Watch::close`] or the client's close,
    /// RUNTIME_SHUT_DOWN, and the errors of a registration refused for good.
    pub fn next(&self, timeout_ms: u64) -> Result<Option<WatchEvent>, Error> {
        let timeout = args::wait("timeout_ms", timeout_ms, MAX_TIMEOUT_MS)?;
        let stream = self.stream.clone();
        block(&self.rt, async move {
            let mut g = stream.lock().await;
            let Some(s) = g.as_mut() else {
                return Err(Error::new(code::CLOSED, "the watch is closed"));
            };
            match tokio::time::timeout(timeout, s.next()).await {
                Ok(Ok(item)) => Ok(Some(WatchEvent::from_item(item))),
                Ok(Err(e)) => Err(Error::from(e)),
                Err(_) => Ok(None),
            }
        })
    }

    /// [`Watch::next`] without blocking: `callback` runs once, on a runtime
    /// thread (or at once on this thread for a bad argument or a shut-down
    /// runtime), with the item (`None` after `timeout_ms` without one) and
    /// the watch's [`Watch::last_index`] at that moment (0 with an error).
    /// Calls queue behind each other like blocking ones. Keep `callback`
    /// short: it runs on an IO thread.
    pub fn next_async(&self, timeout_ms: u64, callback: NextCallback) {
        let timeout = match args::wait("timeout_ms", timeout_ms, MAX_TIMEOUT_MS) {
            Ok(t) => t,
            Err(e) => {
                callback(Err(e), 0);
                return;
            }
        };
        if let Err(e) = self.rt.check() {
            callback(Err(e), 0);
            return;
        }
        /// Runs the callback exactly once, with RUNTIME_SHUT_DOWN when the
        /// task is dropped unfinished (the runtime stopped under it).
        struct Once(Option<NextCallback>);
        impl Once {
            fn call(mut self, r: Result<Option<WatchEvent>, Error>, last: u64) {
                if let Some(cb) = self.0.take() {
                    cb(r, last);
                }
            }
        }
        impl Drop for Once {
            fn drop(&mut self) {
                if let Some(cb) = self.0.take() {
                    cb(
                        Err(Error::new(
                            code::RUNTIME_SHUT_DOWN,
                            "the runtime was shut down before the watch call finished",
                        )),
                        0,
                    );
                }
            }
        }
        let once = Once(Some(callback));
        let stream = self.stream.clone();
        self.rt.handle().spawn(async move {
            let mut g = stream.lock().await;
            let Some(s) = g.as_mut() else {
                drop(g);
                once.call(Err(Error::new(code::CLOSED, "the watch is closed")), 0);
                return;
            };
            let r = match tokio::time::timeout(timeout, s.next()).await {
                Ok(Ok(item)) => Ok(Some(WatchEvent::from_item(item))),
                Ok(Err(e)) => Err(Error::from(e)),
                Err(_) => Ok(None),
            };
            let last = if r.is_ok() { s.last_index() } else { 0 };
            drop(g);
            once.call(r, last);
        });
    }

    /// The highest raft index the watch is complete up to (resume a new watch
    /// from it). Blocks while another thread is inside [`Watch::next`].
    pub fn last_index(&self) -> Result<u64, Error> {
        let stream = self.stream.clone();
        block(&self.rt, async move {
            Ok(stream.lock().await.as_ref().map_or(0, |s| s.last_index()))
        })
    }

    /// Unregisters the watch and ends it; later `next` calls fail with CLOSED.
    /// Idempotent. Blocks until the server answered or the client's timeout.
    pub fn close(&self) -> Result<(), Error> {
        let stream = self.stream.clone();
        block(&self.rt, async move {
            let s = stream.lock().await.take();
            if let Some(mut s) = s {
                s.close().await;
            }
            Ok(())
        })
    }
}
