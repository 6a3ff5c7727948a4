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
        self.find_leader_avoiding(group, &[]).await
    }

    /// [`KvClient::find_leader`] without asking the servers in `avoid` (ones
    /// that just went away: a call to one may wait out its reconnect
    /// backoff). The servers are asked at once and their answers taken in
    /// the configured order, so that of two addresses that reach the same
    /// leader the first listed is kept; the calls still running when one
    /// answers are aborted.
    pub(crate) async fn find_leader_avoiding(
        &self,
        group: u32,
        avoid: &[SocketAddr],
    ) -> Option<SocketAddr> {
        let calls: Vec<_> = self
            .inner
            .cfg
            .servers
            .iter()
            .filter(|a| !avoid.contains(a))
            .map(|&addr| {
                let c = self.clone();
                tokio::spawn(async move { (addr, c.server_status(addr).await) })
            })
            .collect();
        let mut found = None;
        for call in calls {
            if found.is_some() {
                call.abort();
                continue;
            }
            if let Ok((addr, Ok(st))) = call.await
                && st
                    .groups
                    .iter()
                    .any(|g| g.group_id == group && g.role == Some(Role::Leader))
            {
                lock(&self.inner.leaders).insert(group, addr);
                found = Some(addr);
            }
        }
        found
    }

    /// The next server in turn, passing over those in `avoid` unless every
    /// server is there.
    pub(crate) fn pick_server(&self, avoid: &[SocketAddr]) -> Option<SocketAddr> {
        let s = &self.inner.cfg.servers;
        if s.is_empty() {
            return None;
        }
        for _ in 0..s.len() {
            let i = self.inner.rr.fetch_add(1, Ordering::Relaxed);
            if !avoid.contains(&s[i % s.len()]) {
                return Some(s[i % s.len()]);
            }
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
