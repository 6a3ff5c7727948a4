//! One connection to a peer: request ids, flow-control permits, calls waiting
//! for responses, the deadline sweeper, keep-alive pings and shutdown.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, Notify, Semaphore, SemaphorePermit, TryAcquireError, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::codec::{Frame, FrameHeader, FrameType};
use crate::command::CMD_PING;
use crate::conn::{QueueError, WriteQueue, lock};
use crate::error::RpcError;
use crate::proto::decode_error_body;

use super::Response;

/// Identity hasher for request ids: they are sequential, so hashing them again
/// buys nothing.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        // Spread the id over the high bits too, which hashbrown uses for tags.
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A call waiting for its response: where to deliver it, and when to give up.
pub(super) struct Waiter {
    pub(super) tx: oneshot::Sender<Result<Frame, RpcError>>,
    pub(super) deadline: Instant,
    pub(super) timeout_ms: u64,
}

/// A call's flow-control permits: one request, and its body's bytes.
type Permits<'a> = (SemaphorePermit<'a>, SemaphorePermit<'a>);

pub(super) type Pending = HashMap<u32, Waiter, BuildHasherDefault<IdHasher>>;

/// How often the deadline sweeper of a connection with calls in flight looks
/// for expired calls. A call fails with TIMEOUT at most this much after its
/// deadline; one sweep costs O(calls in flight), far less than a timer per call.
const DEADLINE_SWEEP_INTERVAL: Duration = Duration::from_millis(5);

/// A connection to a server that closes idle connections pings when nothing
/// was written for this fraction of the server's idle timeout two checks in a
/// row: the server hears from it at least every half timeout.
pub(super) const KEEPALIVE_FRACTION: u32 = 4;

/// Source of connection ids, unique within the process.
pub(super) static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

pub(super) struct ClientConn {
    /// Tells this connection from earlier and later ones to the same address.
    pub(super) id: u64,
    pub(super) addr: SocketAddr,
    pub(super) writer: WriteQueue,
    pub(super) pending: Mutex<Pending>,
    /// Wakes the deadline sweeper when the first call goes in flight.
    pub(super) pending_added: Notify,
    /// Wakes the keepalive task when the connection closes.
    pub(super) closed_notify: Notify,
    pub(super) next_id: AtomicU32,
    pub(super) closed: AtomicBool,
    pub(super) request_permits: Semaphore,
    pub(super) byte_permits: Semaphore,
    pub(super) max_body_bytes: usize,
    pub(super) max_pending_one_way_bytes: usize,
    pub(super) tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ClientConn {
    pub(super) fn is_live(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    pub(super) fn next_request_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            // 0 is reserved for connection-level errors.
            if id != 0 {
                return id;
            }
        }
    }

    pub(super) fn one_way(&self, command: u16, body: &[u8]) -> Result<(), RpcError> {
        if body.len() > self.max_body_bytes {
            return Err(RpcError::InvalidRequest(format!(
                "body of {} bytes exceeds the server's limit of {}",
                body.len(),
                self.max_body_bytes
            )));
        }
        let header = FrameHeader::new(FrameType::OneWay, command, 0);
        self.writer
            .push(&header, body, self.max_pending_one_way_bytes)
            .map_err(|e| match e {
                QueueError::Full => RpcError::FlowControl("too many bytes queued".into()),
                QueueError::Closed => self.not_sent("connection closed"),
                QueueError::Encode(e) => RpcError::InvalidRequest(e.to_string()),
            })
    }

    /// Marks the connection dead and fails every pending call.
    pub(super) fn fail_all(&self, error: &RpcError) {
        self.closed.store(true, Ordering::Release);
        self.writer.close();
        let pending = std::mem::take(&mut *lock(&self.pending));
        for (_, waiter) in pending {
            let _ = waiter.tx.send(Err(error.clone()));
        }
        self.pending_added.notify_one();
        self.closed_notify.notify_waiters();
    }

    /// Takes a request permit and `body_len` byte permits; also says whether
    /// it had to wait for them. The common case, permits available, costs two
    /// atomic operations and no timer.
    pub(super) async fn acquire<'a>(
        &'a self,
        body_len: usize,
        deadline: Instant,
        wait: bool,
    ) -> Result<(Permits<'a>, bool), RpcError> {
        let bytes = u32::try_from(body_len)
            .map_err(|_| RpcError::InvalidRequest("body too large".into()))?;
        let mut waited = false;
        // Waiting for a permit is the rare path: boxed, to keep calls' futures small.
        let request = match self.request_permits.try_acquire() {
            Ok(permit) => permit,
            Err(e) => {
                waited = true;
                Box::pin(permit_slow_path(
                    self.request_permits.acquire(),
                    e,
                    deadline,
                    wait,
                ))
                .await?
            }
        };
        let bytes = match self.byte_permits.try_acquire_many(bytes) {
            Ok(permit) => permit,
            Err(e) => {
                waited = true;
                Box::pin(permit_slow_path(
                    self.byte_permits.acquire_many(bytes),
                    e,
                    deadline,
                    wait,
                ))
                .await?
            }
        };
        Ok(((request, bytes), waited))
    }

    pub(super) async fn call(
        &self,
        command: u16,
        body: &[u8],
        deadline: Instant,
        timeout: Duration,
        wait: bool,
        now: Option<Instant>,
    ) -> Result<Response, RpcError> {
        let (_permits, waited) = self.acquire(body.len(), deadline, wait).await?;
        let id = self.next_request_id();
        let now = match now {
            Some(now) if !waited => now,
            _ => Instant::now(),
        };
        let remaining = deadline.saturating_duration_since(now);
        let timeout_ms = u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX);
        let call_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        if timeout_ms == 0 {
            return Err(RpcError::Timeout {
                timeout_ms: call_timeout_ms,
            });
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if !self.is_live() {
                return Err(self.not_sent("connection closed"));
            }
            if pending.is_empty() {
                self.pending_added.notify_one();
            }
            pending.insert(
                id,
                Waiter {
                    tx,
                    deadline,
                    timeout_ms: call_timeout_ms,
                },
            );
        }
        let mut header = FrameHeader::new(FrameType::Request, command, id);
        header.timeout_ms = timeout_ms;
        if let Err(e) = self.writer.push(&header, body, usize::MAX) {
            lock(&self.pending).remove(&id);
            return Err(match e {
                QueueError::Encode(e) => RpcError::InvalidRequest(e.to_string()),
                QueueError::Closed | QueueError::Full => self.not_sent("connection closed"),
            });
        }
        // The deadline sweeper answers TIMEOUT; a dropped sender means the
        // connection went away.
        match rx.await {
            Ok(result) => result.and_then(into_response),
            Err(_) => Err(RpcError::Network {
                addr: self.addr,
                reason: "connection closed".into(),
                sent: true,
            }),
        }
    }

    /// Fails calls whose deadline has passed, every
    /// [`DEADLINE_SWEEP_INTERVAL`] while any call is in flight; sleeps
    /// otherwise. Ends when the connection is closed.
    pub(super) async fn sweep_deadlines(&self) {
        loop {
            if !self.is_live() {
                return;
            }
            if lock(&self.pending).is_empty() {
                self.pending_added.notified().await;
                continue;
            }
            tokio::time::sleep(DEADLINE_SWEEP_INTERVAL).await;
            let now = Instant::now();
            let expired: Vec<Waiter> = lock(&self.pending)
                .extract_if(|_, w| w.deadline <= now)
                .map(|(_, w)| w)
                .collect();
            for w in expired {
                let _ = w.tx.send(Err(RpcError::Timeout {
                    timeout_ms: w.timeout_ms,
                }));
            }
        }
    }

    /// Sends a one-way PING each time a whole `every` passed with nothing
    /// written, so a server that closes idle connections never finds this one
    /// idle. Ends when the connection closes.
    pub(super) async fn keep_alive(&self, every: Duration) {
        let mut seen = self.writer.batches_written();
        loop {
            let closed = self.closed_notify.notified();
            tokio::pin!(closed);
            // Registered before the check, so a close in between is not missed.
            closed.as_mut().enable();
            if !self.is_live() {
                return;
            }
            tokio::select! {
                _ = &mut closed => return,
                _ = tokio::time::sleep(every) => {}
            }
            let written = self.writer.batches_written();
            if written == seen
                && let Err(e) = self.one_way(CMD_PING, &[])
            {
                debug!(peer = %self.addr, error = %e, "keepalive ping not sent");
            }
            seen = written;
        }
    }

    pub(super) fn not_sent(&self, reason: &str) -> RpcError {
        RpcError::Network {
            addr: self.addr,
            reason: reason.to_owned(),
            sent: false,
        }
    }

    /// Writes what is queued, waits up to `grace` for pending calls, then
    /// closes the connection.
    pub(super) async fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while !lock(&self.pending).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.fail_all(&RpcError::Closed("client closed"));
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            // The writer flushes and the server closes its side after our
            // shutdown; give that a moment, then stop waiting.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_millis(500), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// A permit that was not available at once: fail fast, or wait for it until
/// the deadline.
async fn permit_slow_path<'a>(
    acquire: impl Future<Output = Result<SemaphorePermit<'a>, AcquireError>>,
    error: TryAcquireError,
    deadline: Instant,
    wait: bool,
) -> Result<SemaphorePermit<'a>, RpcError> {
    match error {
        TryAcquireError::Closed => Err(RpcError::Closed("connection closed")),
        TryAcquireError::NoPermits if !wait => {
            Err(RpcError::FlowControl("in-flight limit reached".into()))
        }
        TryAcquireError::NoPermits => tokio::time::timeout_at(deadline.into(), acquire)
            .await
            .map_err(|_| RpcError::FlowControl("no in-flight permit before the deadline".into()))?
            .map_err(|_| RpcError::Closed("connection closed")),
    }
}

fn into_response(frame: Frame) -> Result<Response, RpcError> {
    if frame.header.status.is_success() {
        return Ok(Response {
            command: frame.header.command,
            body: frame.body,
        });
    }
    Err(remote_error(&frame))
}

pub(super) fn remote_error(frame: &Frame) -> RpcError {
    let (message, leader) = match decode_error_body(&frame.body) {
        Ok(decoded) => decoded,
        Err(e) => (format!("(unreadable error body: {e})"), None),
    };
    RpcError::Remote {
        status: frame.header.status,
        message,
        leader,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn id_hasher_spreads_sequential_ids() {
        let mut a = IdHasher::default();
        a.write_u32(1);
        let mut b = IdHasher::default();
        b.write_u32(2);
        assert_ne!(a.finish() >> 57, b.finish() >> 57);
    }

    #[test]
    fn statuses_of_local_errors() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let not_sent = RpcError::Network {
            addr,
            reason: String::new(),
            sent: false,
        };
        assert_eq!(not_sent.status(), Status::NETWORK_ERROR);
        assert!(not_sent.retryable());
        let sent = RpcError::Network {
            addr,
            reason: String::new(),
            sent: true,
        };
        assert!(!sent.retryable());
        assert!(RpcError::FlowControl(String::new()).retryable());
        assert!(!RpcError::Timeout { timeout_ms: 1 }.retryable());
    }
}
