//! Lock notifications pushed to clients.
//!
//! Applying a DtKV entry may end a client's wait for a lock: the client was
//! promoted to holder (on unlock or lease expiry) or its wait timeout passed.
//! The state machine reports these as [`LockNotification`]s; the node that
//! proposed the client's tryLock knows the connection it came on and pushes a
//! [`LockPush`] there (command [`CMD_KV_LOCK_PUSH`]).
//!
//! A push is a hint, not a promise: it is lost when the connection breaks or
//! leadership moved to a node that never saw the client's tryLock. The client
//! therefore also re-checks with a lock-info read while it waits and at its
//! wait deadline (see `docs/kv.md`).

use std::collections::HashMap;

use dongting_kv::{ClientId, LockNotification};
use dongting_net::ConnHandle;
use tracing::debug;

use dongting_proto::lock::{CMD_KV_LOCK_PUSH, LockPush};

/// Connections remembered per client.
const MAX_CONNS_PER_CLIENT: usize = 8;
/// Clients remembered per group; beyond this new waiters learn their outcome
/// from their own lock-info reads only.
const MAX_CLIENTS: usize = 65_536;

/// The connections of clients that queued for a lock through this node, owned
/// by the group task (no locking).
#[derive(Default)]
pub(crate) struct LockPushers {
    by_client: HashMap<ClientId, Vec<ConnHandle>>,
}

impl LockPushers {
    /// Remembers that `client` talks to this node on `conn`.
    pub(crate) fn register(&mut self, client: ClientId, conn: ConnHandle) {
        if client == 0 {
            return;
        }
        if !self.by_client.contains_key(&client) && self.by_client.len() >= MAX_CLIENTS {
            self.prune();
            if self.by_client.len() >= MAX_CLIENTS {
                return;
            }
        }
        let conns = self.by_client.entry(client).or_default();
        conns.retain(|c| !c.is_closed());
        if conns.iter().any(|c| c.id() == conn.id()) {
            return;
        }
        if conns.len() >= MAX_CONNS_PER_CLIENT {
            conns.remove(0);
        }
        conns.push(conn);
    }

    /// Forgets closed connections and clients left without one.
    pub(crate) fn prune(&mut self) {
        self.by_client.retain(|_, conns| {
            conns.retain(|c| !c.is_closed());
            !conns.is_empty()
        });
    }

    /// Pushes each notification to every open connection of its client.
    pub(crate) fn push(&mut self, group_id: u32, index: u64, notes: &[LockNotification]) {
        for n in notes {
            let Some(conns) = self.by_client.get_mut(&n.client_id) else {
                continue;
            };
            conns.retain(|c| !c.is_closed());
            let body = LockPush {
                group_id,
                index,
                key: n.key.clone(),
                kind: n.kind,
            }
            .encode();
            for c in conns.iter() {
                if let Err(e) = c.push(CMD_KV_LOCK_PUSH, &body) {
                    debug!(group = group_id, index, conn = c.id(), error = %e, "lock push not sent");
                }
            }
            if conns.is_empty() {
                self.by_client.remove(&n.client_id);
            }
        }
    }
}
