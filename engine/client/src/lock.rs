//! Distributed locks: [`DistributedLock`] and [`AutoRenewalLock`].
//!
//! A lock is a DtKV node held by one client session at a time, with a lease
//! the holder renews and a FIFO queue of waiters. Every grant returns a
//! fencing token, the raft index of the grant: larger for every new holder,
//! so a resource that remembers the largest token it saw can refuse a holder
//! whose lease already ended.
//!
//! The client's view of its lease is conservative: a lease counts from the
//! moment the request that set it was *sent*, on this process's monotonic
//! clock, so it ends here no later than on the leader (as long as the
//! servers' clocks do not run faster than this one's).
//!
//! A waiter learns that it was promoted (or that its wait timed out) from a
//! push by the node it queued on; since a push is lost with its connection or
//! a leader change, the waiter also reads the lock's state every
//! [`RECHECK_INTERVAL`] and at its wait deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{KvError, LockNotificationKind, LockOutcome, LockView, Op, Outcome, ReadResult};
use dongting_proto::lock::LockPush;
use dongting_proto::service::ReadMode;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{ClientError, KvClient, lock, unexpected};

/// How often a waiter reads the lock's state in case a push was lost.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Shortest pause between failed acquisition attempts of an [`AutoRenewalLock`].
const MIN_RETRY_PAUSE: Duration = Duration::from_millis(50);

type WaiterKey = (u32, Bytes);
/// The calls waiting on one lock: (subscription id, where to hand pushes).
type LockSubscribers = Vec<(u64, mpsc::UnboundedSender<LockPush>)>;

/// Routes lock pushes to the calls waiting for them.
#[derive(Default)]
pub(crate) struct LockWaiters {
    next_id: AtomicU64,
    by_lock: Mutex<HashMap<WaiterKey, LockSubscribers>>,
}

/// A registration for the pushes of one lock; removed on drop.
struct Subscription {
    waiters: Arc<LockWaiters>,
    key: WaiterKey,
    id: u64,
    rx: mpsc::UnboundedReceiver<LockPush>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut m = lock(&self.waiters.by_lock);
        if let Some(v) = m.get_mut(&self.key) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                m.remove(&self.key);
            }
        }
    }
}

impl LockWaiters {
    fn subscribe(self: &Arc<Self>, group: u32, key: Bytes) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let k = (group, key);
        lock(&self.by_lock)
            .entry(k.clone())
            .or_default()
            .push((id, tx));
        Subscription {
            waiters: self.clone(),
            key: k,
            id,
            rx,
        }
    }

    /// Hands a push to every call waiting on its lock (runs on a connection's
    /// reader task: no blocking).
    pub(crate) fn deliver(&self, push: LockPush) {
        let m = lock(&self.by_lock);
        if let Some(v) = m.get(&(push.group_id, push.key.clone())) {
            for (_, tx) in v {
                let _ = tx.send(push.clone());
            }
        }
    }
}

/// What this process knows of its hold on a lock.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    token: u64,
    /// When the lease ends at the latest (monotonic); `None` when not held.
    lease_end: Option<Instant>,
}

/// A distributed lock on one key of one group, used through the session of
/// the [`KvClient`] that created it. Cheap to clone; clones share the state.
///
/// The lock node's parent directory must exist and must not be temporary.
#[derive(Clone)]
pub struct DistributedLock {
    client: KvClient,
    group: u32,
    key: Bytes,
    held: Arc<Mutex<Held>>,
}

impl std::fmt::Debug for DistributedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedLock")
            .field("group", &self.group)
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("held", &*lock(&self.held))
            .finish()
    }
}

fn check_lease(lease_ms: u64) -> Result<(), ClientError> {
    if lease_ms == 0 {
        return Err(ClientError::InvalidArgument(
            "the lease must be at least 1 ms".into(),
        ));
    }
    Ok(())
}

/// True for the answers that mean "this client does not hold the lock".
fn not_held(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Kv {
            error: KvError::NotOwner(_) | KvError::NotFound(_),
            ..
        }
    )
}

impl KvClient {
    /// A handle on the lock at `key` in `group`; nothing is sent until
    /// [`DistributedLock::try_lock`]. Fails with `InvalidArgument` when the
    /// key breaks the key rules.
    pub fn create_lock(&self, group: u32, key: &str) -> Result<DistributedLock, ClientError> {
        dongting_kv::validate_key(key.as_bytes(), usize::MAX, false)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        Ok(DistributedLock {
            client: self.clone(),
            group,
            key: Bytes::copy_from_slice(key.as_bytes()),
            held: Arc::new(Mutex::new(Held::default())),
        })
    }

    /// Starts an [`AutoRenewalLock`] on `key`: a background task that keeps
    /// trying to acquire the lock with `lease`, renews it every third of the
    /// lease, and tells `listener` when it gets and loses it.
    pub fn create_auto_renewal_lock(
        &self,
        group: u32,
        key: &str,
        lease: Duration,
        listener: Arc<dyn LockListener>,
    ) -> Result<AutoRenewalLock, ClientError> {
        let lease_ms = lease.as_millis() as u64;
        check_lease(lease_ms)?;
        let lock = self.create_lock(group, key)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(auto_renew(lock.clone(), lease_ms, listener, stop_rx));
        Ok(AutoRenewalLock {
            lock,
            stop: stop_tx,
            task: Some(task),
        })
    }

    /// The state of the lock at `key` (linearizable read): its holder with
    /// fencing token and lease deadline (leader wall-clock ms), and how many
    /// clients wait; `None` when no lock node exists there.
    pub async fn lock_info(
        &self,
        group: u32,
        key: &str,
    ) -> Result<ReadResult<Option<LockView>>, ClientError> {
        self.lock_info_bytes(group, Bytes::copy_from_slice(key.as_bytes()))
            .await
    }

    async fn lock_info_bytes(
        &self,
        group: u32,
        key: Bytes,
    ) -> Result<ReadResult<Option<LockView>>, ClientError> {
        let r = self
            .read(
                group,
                dongting_kv::ReadRequest::LockInfo(key),
                ReadMode::Linearizable,
            )
            .await?;
        match r.data {
            dongting_kv::ReadResponse::LockInfo(v) => Ok(ReadResult {
                index: r.index,
                data: v,
            }),
            _ => Err(unexpected()),
        }
    }
}

impl DistributedLock {
    /// The group of the lock.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The key of the lock.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Acquires the lock with a lease of `lease_ms`, waiting up to
    /// `wait_timeout_ms` (0: do not wait) behind the current holder and
    /// earlier waiters. Returns the fencing token, or `None` when the wait
    /// ended without the lock. A holder calling it again keeps its token and
    /// gets a fresh lease.
    ///
    /// A waiter promoted by the server is confirmed with one lease renewal,
    /// so the lease this client counts starts at a request it sent.
    /// A grant whose answer arrives after the lease (counted from the request)
    /// has run out is reported as `None`: that hold is already over.
    ///
    /// When the attempt's outcome is unknown (it may have reached a server,
    /// and no answer came within the deadline), the call releases whatever
    /// it may hold (or leaves the queue) before it returns
    /// [`ClientError::UnknownOutcome`]; the error says whether that release
    /// was confirmed, or whether the lock may stay held until its lease
    /// passes.
    pub async fn try_lock(
        &self,
        lease_ms: u64,
        wait_timeout_ms: u64,
    ) -> Result<Option<u64>, ClientError> {
        check_lease(lease_ms)?;
        // Listen before sending: the promotion may be pushed before the answer.
        let mut sub = self
            .client
            .inner
            .lock_waiters
            .subscribe(self.group, self.key.clone());
        let sent = Instant::now();
        let w = self
            .client
            .write(
                self.group,
                Op::TryLock {
                    key: self.key.clone(),
                    lease_ms,
                    wait_timeout_ms,
                },
            )
            .await;
        let w = match w {
            Ok(w) => w,
            Err(ClientError::UnknownOutcome(cause)) => {
                return Err(self.release_unknown(cause, lease_ms).await);
            }
            Err(e) => return Err(e),
        };
        match w.outcome {
            Outcome::Lock(LockOutcome::Acquired { token, .. }) => {
                let lease_end = sent + Duration::from_millis(lease_ms);
                if Instant::now() >= lease_end {
                    // The answer came after the lease counted from the
                    // request ran out: the hold is over (or about to be)
                    // on the server, so it is not reported as held.
                    self.clear();
                    return Ok(None);
                }
                self.set_held(token, lease_end);
                Ok(Some(token))
            }
            Outcome::Lock(LockOutcome::NotAcquired { .. }) => {
                self.clear();
                Ok(None)
            }
            Outcome::Lock(LockOutcome::Queued { .. }) => {
                let deadline = sent + Duration::from_millis(wait_timeout_ms);
                self.wait(&mut sub, w.index, lease_ms, deadline).await
            }
            _ => Err(unexpected()),
        }
    }

    /// After a try-lock whose outcome is unknown: releases the hold (or the
    /// place in the queue) it may have got, within a fresh call deadline,
    /// and returns the error that reports both.
    async fn release_unknown(&self, cause: String, lease_ms: u64) -> ClientError {
        self.clear();
        let release = match self.send_unlock().await {
            Ok(()) => "released".to_string(),
            Err(e) if not_held(&e) => "not held".to_string(),
            Err(e) => format!(
                "its release failed too ({e}); the lock may stay held until its lease of {lease_ms} ms passes"
            ),
        };
        ClientError::UnknownOutcome(format!("try_lock: {cause}; lock {release}"))
    }

    /// Waits, queued since `queued_index`, for a push or for the state read
    /// at a re-check to tell the outcome.
    async fn wait(
        &self,
        sub: &mut Subscription,
        queued_index: u64,
        lease_ms: u64,
        deadline: Instant,
    ) -> Result<Option<u64>, ClientError> {
        let me = self.client.client_id();
        loop {
            let check_at = deadline.min(Instant::now() + RECHECK_INTERVAL);
            tokio::select! {
                // The sender lives in the subscription map while `sub` does,
                // so the channel never closes here.
                Some(p) = sub.rx.recv() => {
                    if p.index <= queued_index {
                        continue;
                    }
                    match p.kind {
                        LockNotificationKind::Acquired { token, .. } => {
                            return self.confirm(token, lease_ms).await;
                        }
                        LockNotificationKind::WaitTimedOut => {
                            self.clear();
                            return Ok(None);
                        }
                    }
                }
                _ = tokio::time::sleep_until(check_at.into()) => {
                    if let Ok(r) = self.client.lock_info_bytes(self.group, self.key.clone()).await
                        && let Some(LockView { holder: Some((holder, token, _)), .. }) = r.data
                        && holder == me
                    {
                        return self.confirm(token, lease_ms).await;
                    }
                    if Instant::now() >= deadline {
                        // Leave the queue (and release, should the promotion
                        // have come between the read and now).
                        self.clear();
                        match self.send_unlock().await {
                            Ok(()) => return Ok(None),
                            Err(e) if not_held(&e) => return Ok(None),
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }

    /// A promotion happened at the server: renew once so the lease counted
    /// here starts at a request sent now.
    async fn confirm(&self, token: u64, lease_ms: u64) -> Result<Option<u64>, ClientError> {
        let sent = Instant::now();
        match self.renew(lease_ms).await {
            Ok(()) => {
                self.set_held(token, sent + Duration::from_millis(lease_ms));
                Ok(Some(token))
            }
            Err(e) if not_held(&e) => {
                self.clear();
                Ok(None)
            }
            Err(ClientError::UnknownOutcome(cause)) => {
                Err(self.release_unknown(cause, lease_ms).await)
            }
            Err(e) => Err(e),
        }
    }

    async fn renew(&self, lease_ms: u64) -> Result<(), ClientError> {
        let w = self
            .client
            .write(
                self.group,
                Op::UpdateLease {
                    key: self.key.clone(),
                    lease_ms,
                },
            )
            .await?;
        match w.outcome {
            Outcome::Deadline { .. } => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn send_unlock(&self) -> Result<(), ClientError> {
        self.client
            .write(
                self.group,
                Op::Unlock {
                    key: self.key.clone(),
                },
            )
            .await
            .map(|_| ())
    }

    /// Releases the lock (the next waiter becomes the holder) or leaves its
    /// queue. Succeeds when this client neither holds nor waits for it.
    pub async fn unlock(&self) -> Result<(), ClientError> {
        self.clear();
        match self.send_unlock().await {
            Err(e) if not_held(&e) => Ok(()),
            r => r,
        }
    }

    /// Extends the lease to `lease_ms` from now. Fails with NOT_OWNER (and
    /// forgets the lock) when this client no longer holds it.
    pub async fn update_lease(&self, lease_ms: u64) -> Result<(), ClientError> {
        check_lease(lease_ms)?;
        let sent = Instant::now();
        match self.renew(lease_ms).await {
            Ok(()) => {
                let mut h = lock(&self.held);
                if h.lease_end.is_some() {
                    h.lease_end = Some(sent + Duration::from_millis(lease_ms));
                }
                Ok(())
            }
            Err(e) => {
                if not_held(&e) {
                    self.clear();
                }
                Err(e)
            }
        }
    }

    /// True while this client holds the lock by its own count: acquired and
    /// the lease, counted from the request that last set it, not yet over.
    /// Local: sends nothing.
    pub fn is_held_by_current_client(&self) -> bool {
        lock(&self.held)
            .lease_end
            .is_some_and(|e| Instant::now() < e)
    }

    /// Milliseconds left of the lease by this client's count (0 when not held).
    pub fn lease_rest_millis(&self) -> u64 {
        lock(&self.held).lease_end.map_or(0, |e| {
            e.saturating_duration_since(Instant::now()).as_millis() as u64
        })
    }

    /// The fencing token of the current hold, if held.
    pub fn token(&self) -> Option<u64> {
        let h = lock(&self.held);
        h.lease_end.filter(|e| Instant::now() < *e).map(|_| h.token)
    }

    /// Renews the lease to `lease_ms` every third of it, retrying a failed
    /// renewal while the lease lasts, and returns as soon as the lock can no
    /// longer be proven held (a renewal refused, or the lease over by this
    /// client's count). Returns at once when not held.
    pub async fn keep_renewed(&self, lease_ms: u64) {
        let renew_every = (Duration::from_millis(lease_ms) / 3).max(Duration::from_millis(1));
        // Each attempt may take a third of the lease, so a failed one leaves
        // time for another before the lease is over.
        let attempts = DistributedLock {
            client: self.client.with_timeout(renew_every),
            group: self.group,
            key: self.key.clone(),
            held: self.held.clone(),
        };
        hold(&attempts, lease_ms, renew_every).await;
    }

    fn lease_end(&self) -> Option<Instant> {
        lock(&self.held).lease_end
    }

    fn set_held(&self, token: u64, lease_end: Instant) {
        *lock(&self.held) = Held {
            token,
            lease_end: Some(lease_end),
        };
    }

    fn clear(&self) {
        *lock(&self.held) = Held::default();
    }
}

/// Told by an [`AutoRenewalLock`] when it gets and loses the lock. Called on
/// the lock's background task: return quickly.
pub trait LockListener: Send + Sync + 'static {
    /// The lock is held, with this fencing token.
    fn on_acquired(&self, token: u64);
    /// The lock can no longer be proven held: a renewal failed, or the lease
    /// ran out by this client's count (for example when cut off from the
    /// cluster). Stop using the protected resource at once.
    fn on_lost(&self);
}

/// A lock that a background task keeps acquiring and renewing. Dropping it
/// stops the task; [`AutoRenewalLock::close`] also releases the lock.
pub struct AutoRenewalLock {
    lock: DistributedLock,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AutoRenewalLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoRenewalLock")
            .field("lock", &self.lock)
            .finish()
    }
}

impl AutoRenewalLock {
    /// The underlying lock (for `is_held_by_current_client`, `token`...).
    pub fn lock(&self) -> &DistributedLock {
        &self.lock
    }

    /// Stops acquiring and renewing, and releases the lock if held (or
    /// leaves its queue). The listener is not called.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.lock.unlock().await
    }
}

impl Drop for AutoRenewalLock {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn auto_renew(
    lock: DistributedLock,
    lease_ms: u64,
    listener: Arc<dyn LockListener>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = renew_loop(&lock, lease_ms, listener.as_ref()) => {}
    }
}

async fn renew_loop(lock: &DistributedLock, lease_ms: u64, listener: &dyn LockListener) {
    let max_pause = (Duration::from_millis(lease_ms) / 3).max(MIN_RETRY_PAUSE);
    let mut pause = MIN_RETRY_PAUSE;
    loop {
        match lock.try_lock(lease_ms, lease_ms).await {
            Ok(Some(token)) => {
                pause = MIN_RETRY_PAUSE;
                listener.on_acquired(token);
                lock.keep_renewed(lease_ms).await;
                lock.clear();
                listener.on_lost();
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "lock acquisition failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(max_pause);
            }
        }
    }
}

/// Renews until the lock can no longer be proven held; returns then.
async fn hold(lock: &DistributedLock, lease_ms: u64, renew_every: Duration) {
    loop {
        let Some(lease_end) = lock.lease_end() else {
            return;
        };
        let next = Instant::now() + renew_every;
        tokio::select! {
            _ = tokio::time::sleep_until(lease_end.into()) => return,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        // Renew, retrying failed attempts, until the lease is over by our count.
        loop {
            let Some(lease_end) = lock.lease_end() else {
                return;
            };
            let r = tokio::select! {
                r = lock.update_lease(lease_ms) => Some(r),
                _ = tokio::time::sleep_until(lease_end.into()) => None,
            };
            match r {
                Some(Ok(())) => break,
                Some(Err(e)) if not_held(&e) => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "lease renewal failed; retrying");
                    tokio::time::sleep(MIN_RETRY_PAUSE.min(renew_every)).await;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(group: u32, key: &'static [u8], index: u64) -> LockPush {
        LockPush {
            group_id: group,
            index,
            key: Bytes::from_static(key),
            kind: LockNotificationKind::WaitTimedOut,
        }
    }

    #[test]
    fn pushes_reach_the_subscribers_of_their_lock_only() {
        let w = Arc::new(LockWaiters::default());
        let mut a = w.subscribe(0, Bytes::from_static(b"l"));
        let mut other_key = w.subscribe(0, Bytes::from_static(b"m"));
        let mut other_group = w.subscribe(1, Bytes::from_static(b"l"));
        w.deliver(push(0, b"l", 5));
        assert_eq!(a.rx.try_recv().map(|p| p.index), Ok(5));
        assert!(other_key.rx.try_recv().is_err());
        assert!(other_group.rx.try_recv().is_err());
        drop(a);
        drop(other_key);
        drop(other_group);
        assert!(lock(&w.by_lock).is_empty(), "subscriptions left behind");
        // Nobody listens: the push is dropped.
        w.deliver(push(0, b"l", 6));
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_before_sending() {
        let c = KvClient::new(crate::KvClientConfig::new(vec![
            "127.0.0.1:9".parse().expect("addr"),
        ]));
        assert!(matches!(
            c.create_lock(0, ".bad"),
            Err(ClientError::InvalidArgument(_))
        ));
        let l = c.create_lock(0, "ok").expect("lock");
        assert!(matches!(
            l.try_lock(0, 10).await,
            Err(ClientError::InvalidArgument(_))
        ));
        assert!(matches!(
            l.update_lease(0).await,
            Err(ClientError::InvalidArgument(_))
        ));
        assert!(!l.is_held_by_current_client());
        assert_eq!(l.lease_rest_millis(), 0);
        assert_eq!(l.token(), None);
        l.keep_renewed(1_000).await;
    }
}
