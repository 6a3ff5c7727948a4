//! The server-wide budget for bytes of large incomplete request frames.
//!
//! A connection reads a frame larger than [`FREE_FRAME_BYTES`] only after it
//! reserved the frame's whole announced length here; it keeps the share until
//! the frame is complete. A connection that gets no share stops reading (the
//! bytes stay in the socket, and TCP slows the sender down) until another
//! frame completes or its connection closes. Reserving whole frames, not bytes
//! as they come, means every share granted can be used to the end: readers
//! never wait on each other's half-read frames.
//!
//! Each port may also hold at most its own ceiling of the budget, so that one
//! port's clients cannot take the share another port keeps for its peers.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::conn::lock;

/// Bytes of an incomplete frame a connection may hold without a share of the
/// budget: frames up to this size never wait for it.
pub(crate) const FREE_FRAME_BYTES: usize = 64 * 1024;

struct Use {
    total: u64,
    by_port: Vec<u64>,
}

/// Bytes reserved by incomplete frames, over the whole server and per port.
pub(crate) struct BufferBudget {
    limit: u64,
    used: Mutex<Use>,
    released: Notify,
}

impl BufferBudget {
    /// A budget of `limit` bytes shared by `ports` ports.
    pub(crate) fn new(limit: u64, ports: usize) -> BufferBudget {
        BufferBudget {
            limit,
            used: Mutex::new(Use {
                total: 0,
                by_port: vec![0; ports],
            }),
            released: Notify::new(),
        }
    }

    /// Bytes reserved now.
    pub(crate) fn used(&self) -> u64 {
        lock(&self.used).total
    }

    /// Reserves `bytes` for port `port` (whose ceiling is `port_limit`) if
    /// both the server's and the port's budget have room. Cost: one mutex.
    pub(crate) fn try_reserve(
        self: &Arc<Self>,
        port: usize,
        port_limit: u64,
        bytes: u64,
    ) -> Option<Reservation> {
        let mut used = lock(&self.used);
        let fits = used.total + bytes <= self.limit && used.by_port[port] + bytes <= port_limit;
        if !fits {
            return None;
        }
        used.total += bytes;
        used.by_port[port] += bytes;
        Some(Reservation {
            budget: self.clone(),
            port,
            bytes,
        })
    }

    /// Waits until `bytes` can be reserved, then reserves them. Cancel-safe:
    /// a dropped wait holds nothing. The caller makes sure `bytes` fits the
    /// limits at all (see [`RpcServer::start`](crate::RpcServer::start)).
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        port: usize,
        port_limit: u64,
        bytes: u64,
    ) -> Reservation {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            released.as_mut().enable();
            if let Some(r) = self.try_reserve(port, port_limit, bytes) {
                return r;
            }
            released.await;
        }
    }

    fn release(&self, port: usize, bytes: u64) {
        {
            let mut used = lock(&self.used);
            used.total -= bytes;
            used.by_port[port] -= bytes;
        }
        self.released.notify_waiters();
    }
}

/// A share of the [`BufferBudget`], given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<BufferBudget>,
    port: usize,
    bytes: u64,
}

impl Reservation {
    /// The bytes this share covers.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.port, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shares_stay_within_the_server_and_port_limits() {
        let budget = Arc::new(BufferBudget::new(100, 2));
        let a = budget.try_reserve(0, 60, 60).expect("fits");
        assert!(budget.try_reserve(0, 60, 1).is_none(), "port 0 is full");
        let b = budget.try_reserve(1, 100, 40).expect("port 1 has room");
        assert!(budget.try_reserve(1, 100, 1).is_none(), "server is full");
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(budget.try_reserve(1, 100, 60).is_some());
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_waiting_reader_gets_its_share_when_another_is_released() {
        let budget = Arc::new(BufferBudget::new(100, 1));
        let held = budget.try_reserve(0, 100, 80).expect("fits");
        let b2 = budget.clone();
        let waiter = tokio::spawn(async move { b2.reserve(0, 100, 50).await.bytes() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "no room yet");
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, 50);
        assert_eq!(budget.used(), 0, "the waiter's share was dropped with it");
    }
}
