//! Progress of the IO threads: watermarks, hard-state saves, flushes and waiting for change.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::hard_state::HardState;
use crate::io::{Command, lock};

use super::{LOG_DIR, Pending, PendingKind, Progress, RaftLog};

impl RaftLog {
    /// Queues an atomic replacement of the hard state (see
    /// [`save_hard_state`](crate::save_hard_state)), ordered after every write
    /// submitted before it. Durable once [`durable_hard_state`](RaftLog::durable_hard_state)
    /// returns it (after `poll_progress`). Costs two or three fsyncs on the
    /// writer thread: save it when term or vote change, not on every commit.
    pub fn save_hard_state(&mut self, state: HardState) -> Result<()> {
        self.check_usable()?;
        crate::hard_state::encode(&state)?;
        let seq = self.take_seq();
        self.pending.push_back(Pending {
            seq,
            bytes_after: self.submitted_bytes,
            kind: PendingKind::HardState(state.clone()),
        });
        self.send(Command::SaveHardState { seq, state })
    }

    /// Asks the syncer to fdatasync now (useful with `sync_force` off before a
    /// clean handover). Returns at once.
    pub fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        self.send(Command::Flush)
    }

    /// Absorbs what the IO threads published and returns the current
    /// watermarks. Cheap (two atomic loads, a walk over newly completed
    /// batches). Returns [`StoreError::Stopped`] after a fatal IO error.
    pub fn poll_progress(&mut self) -> Result<Progress> {
        let written = self.shared.written_seq.load(Ordering::SeqCst);
        let synced = self.shared.synced_seq.load(Ordering::SeqCst);
        while self.written_pos < self.pending.len() && self.pending[self.written_pos].seq <= written
        {
            let p = &self.pending[self.written_pos];
            self.written_bytes = p.bytes_after;
            if let PendingKind::Log { last_index } = p.kind {
                self.progress.written_index = last_index;
            }
            self.written_pos += 1;
        }
        while self
            .pending
            .front()
            .is_some_and(|p| p.seq <= synced && self.written_pos > 0)
        {
            if let Some(p) = self.pending.pop_front() {
                self.written_pos -= 1;
                match p.kind {
                    PendingKind::Log { last_index } => self.progress.synced_index = last_index,
                    PendingKind::HardState(hs) => self.durable_hard_state = Some(hs),
                }
            }
        }
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(StoreError::Stopped {
                cause: self.shared.fatal().unwrap_or_else(|| "log stopped".into()),
            });
        }
        Ok(self.progress)
    }

    /// Whether the disk is full right now (writes are refused until it is not).
    pub fn is_disk_full(&self) -> bool {
        self.shared.disk_full.load(Ordering::SeqCst)
    }

    /// `Ready` when the IO threads published something since the last `Ready`
    /// (then call `poll_progress` / `take_read_results`); otherwise stores the
    /// waker and returns `Pending`. Works with any executor.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let g = *lock(&self.shared.generation);
        if g != self.seen_generation {
            self.seen_generation = g;
            return Poll::Ready(());
        }
        *lock(&self.shared.waker) = Some(cx.waker().clone());
        let g = *lock(&self.shared.generation);
        if g != self.seen_generation {
            self.seen_generation = g;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// A future that completes when the IO threads publish progress.
    pub fn changed(&mut self) -> Changed<'_> {
        Changed { log: self }
    }

    /// Blocks the calling thread until progress is published or `timeout`
    /// passes. For blocking callers (tests, tools, replay at startup); never
    /// call it on an async runtime's worker.
    pub fn wait_changed_blocking(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.shared.generation);
        while *g == self.seen_generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            g = self
                .shared
                .progress_cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        self.seen_generation = *g;
    }

    /// Waits until everything submitted is synced. Blocking.
    pub fn sync_blocking(&mut self) -> Result<Progress> {
        self.flush()?;
        loop {
            let p = self.poll_progress()?;
            if self.pending.is_empty() {
                return Ok(p);
            }
            if self.is_disk_full() {
                return Err(StoreError::DiskFull {
                    path: self.group_dir.join(LOG_DIR),
                });
            }
            self.wait_changed_blocking(Duration::from_millis(100));
        }
    }
}

/// Future returned by [`RaftLog::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    log: &'a mut RaftLog,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.log.poll_changed(cx)
    }
}
