//! Pieces shared by both ends of a connection: the coalescing write queue and
//! its writer task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::codec::{FrameError, FrameHeader, encode_frame};

/// Initial capacity of a write buffer: small, since most connections are idle
/// most of the time; a busy one grows its buffers to what its batches need
/// and keeps them (up to [`MAX_RETAINED_WRITE_BUF_BYTES`]).
const WRITE_BUF_BYTES: usize = 4 * 1024;
/// A write buffer that grew beyond this is released after the write instead of
/// being kept for reuse.
const MAX_RETAINED_WRITE_BUF_BYTES: usize = 1024 * 1024;
/// Initial read buffer capacity, and the amount reserved when it runs low.
pub(crate) const READ_BUF_BYTES: usize = 64 * 1024;
/// Reserve more read space when less than this is free.
pub(crate) const MIN_READ_SPACE_BYTES: usize = 4 * 1024;

/// Locks a mutex, ignoring poisoning: every critical section in this crate
/// leaves its data consistent even if a panic unwinds through it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The queue was closed (the connection is going away).
    Closed,
    /// More than the allowed bytes are waiting to be written.
    Full,
    /// The frame does not fit the length field.
    Encode(FrameError),
}

struct WriteBuf {
    buf: BytesMut,
    closed: bool,
}

/// Frames waiting to be written to one socket. Producers on any thread encode
/// straight into one shared buffer; the writer task swaps it out and writes
/// everything queued so far with one `write_all` (write coalescing).
pub(crate) struct WriteQueue {
    inner: Mutex<WriteBuf>,
    notify: Notify,
    /// Batches written to the socket so far (one per `write_all`).
    batches: AtomicU64,
}

impl WriteQueue {
    pub(crate) fn new() -> WriteQueue {
        WriteQueue {
            inner: Mutex::new(WriteBuf {
                buf: BytesMut::with_capacity(WRITE_BUF_BYTES),
                closed: false,
            }),
            notify: Notify::new(),
            batches: AtomicU64::new(0),
        }
    }

    /// Batches written to the socket so far: unchanged between two readings
    /// means nothing was sent in between.
    pub(crate) fn batches_written(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Encodes a frame into the queue. `max_pending_bytes` bounds the bytes
    /// already waiting (pass `usize::MAX` for frames whose count is bounded
    /// elsewhere, such as responses under flow control).
    pub(crate) fn push(
        &self,
        header: &FrameHeader,
        body: &[u8],
        max_pending_bytes: usize,
    ) -> Result<(), QueueError> {
        let was_empty;
        {
            let mut inner = lock(&self.inner);
            if inner.closed {
                return Err(QueueError::Closed);
            }
            if inner.buf.len() > max_pending_bytes {
                return Err(QueueError::Full);
            }
            was_empty = inner.buf.is_empty();
            encode_frame(header, body, &mut inner.buf).map_err(QueueError::Encode)?;
        }
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Stops accepting frames; the writer task writes what is queued, shuts the
    /// socket's write side down and exits.
    pub(crate) fn close(&self) {
        lock(&self.inner).closed = true;
        self.notify.notify_one();
    }

    /// True once [`WriteQueue::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }

    /// Writes queued frames until the queue is closed and drained or the socket
    /// fails. One `write_all` per batch of frames.
    pub(crate) async fn run_writer(&self, mut socket: OwnedWriteHalf) -> std::io::Result<()> {
        let mut batch = BytesMut::with_capacity(WRITE_BUF_BYTES);
        loop {
            let have_batch = {
                let mut inner = lock(&self.inner);
                if inner.buf.is_empty() {
                    if inner.closed {
                        break;
                    }
                    false
                } else {
                    std::mem::swap(&mut inner.buf, &mut batch);
                    true
                }
            };
            if !have_batch {
                self.notify.notified().await;
                // Woken by the first frame after an idle spell: let the tasks
                // that are ready to run now queue their frames too, so they
                // share this write instead of costing a syscall each.
                tokio::task::yield_now().await;
                continue;
            }
            socket.write_all(&batch).await?;
            self.batches.fetch_add(1, Ordering::Relaxed);
            if batch.capacity() > MAX_RETAINED_WRITE_BUF_BYTES {
                batch = BytesMut::with_capacity(WRITE_BUF_BYTES);
            } else {
                batch.clear();
            }
        }
        socket.shutdown().await
    }
}
