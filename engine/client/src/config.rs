//! Settings of a [`KvClient`](crate::KvClient) and their validation.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ClientError;

/// Settings of a [`KvClient`](crate::KvClient).
#[derive(Debug, Clone)]
pub struct KvClientConfig {
    /// Service addresses (`host:servicePort`) of the servers to start from.
    pub servers: Vec<SocketAddr>,
    /// Time a call may take, retries included (per call with
    /// [`KvClient::with_timeout`](crate::KvClient::with_timeout)). Default 5 s.
    pub timeout: Duration,
    /// Calls in flight at once; further calls wait for a slot within their
    /// deadline. Default 10,000.
    pub max_in_flight: usize,
    /// First pause before a retry (doubles up to `max_backoff`). Default 10 ms.
    pub min_backoff: Duration,
    /// Longest pause between retries. Default 500 ms.
    pub max_backoff: Duration,
    /// Session id for exactly-once writes; `None` picks a random one. A
    /// given id (for example to act again as the owner of temporary nodes
    /// from a new process) numbers its writes from the wall-clock time in
    /// microseconds, so they never repeat an earlier process's numbers.
    pub client_id: Option<u64>,
}

impl KvClientConfig {
    /// Defaults for the given servers.
    pub fn new(servers: Vec<SocketAddr>) -> KvClientConfig {
        KvClientConfig {
            servers,
            timeout: Duration::from_secs(5),
            max_in_flight: 10_000,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            client_id: None,
        }
    }

    /// Refuses settings no call could succeed with: no server, a server
    /// address with port 0 (nothing can listen there), a zero timeout.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.servers.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no server address given".into(),
            ));
        }
        if let Some(a) = self.servers.iter().find(|a| a.port() == 0) {
            return Err(ClientError::InvalidArgument(format!(
                "server address {a} has port 0"
            )));
        }
        if self.timeout.is_zero() {
            return Err(ClientError::InvalidArgument(
                "the timeout must be more than 0".into(),
            ));
        }
        Ok(())
    }
}
