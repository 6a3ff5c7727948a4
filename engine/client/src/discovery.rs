//! Leader discovery: server status, finding a group's leader, picking a
//! server, resolving a redirect's hint.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use dongting_proto::service as proto;
use dongting_proto::status::{NodeStatus, Role};

use crate::error::ClientError;
use crate::{KvClient, lock};

impl KvClient {
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

    pub(crate) fn pick_server(&self) -> Option<SocketAddr> {
        let s = &self.inner.cfg.servers;
        if s.is_empty() {
            return None;
        }
        let i = self.inner.rr.fetch_add(1, Ordering::Relaxed);
        Some(s[i % s.len()])
    }
}

/// Clears a flag when dropped, also when the future holding it is cancelled.
pub(crate) struct ResetOnDrop<'a>(pub(crate) &'a AtomicBool);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub(crate) async fn resolve_hint(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}
