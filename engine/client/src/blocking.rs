//! Blocking wrappers for callers without an async runtime.

use dongting_kv::{KeyRead, NodeView, ReadResult};

use crate::{ClientError, KvClient, KvClientConfig, Written};

/// A [`KvClient`] with blocking methods. It owns a small tokio runtime; do not
/// call it from inside another runtime's async task.
#[derive(Debug)]
pub struct BlockingKvClient {
    rt: tokio::runtime::Runtime,
    client: KvClient,
}

impl BlockingKvClient {
    /// Starts a two-thread runtime and a client on it.
    pub fn new(cfg: KvClientConfig) -> std::io::Result<BlockingKvClient> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let client = {
            let _g = rt.enter();
            KvClient::new(cfg)
        };
        Ok(BlockingKvClient { rt, client })
    }

    /// The async client (for use on this client's runtime).
    pub fn client(&self) -> &KvClient {
        &self.client
    }

    /// See [`KvClient::put`].
    pub fn put(&self, group: u32, key: &str, value: &[u8]) -> Result<Written, ClientError> {
        self.rt.block_on(self.client.put(group, key, value))
    }

    /// See [`KvClient::get`].
    pub fn get(&self, group: u32, key: &str) -> Result<ReadResult<Option<NodeView>>, ClientError> {
        self.rt.block_on(self.client.get(group, key))
    }

    /// See [`KvClient::remove`].
    pub fn remove(&self, group: u32, key: &str) -> Result<Written, ClientError> {
        self.rt.block_on(self.client.remove(group, key))
    }

    /// See [`KvClient::mkdir`].
    pub fn mkdir(&self, group: u32, key: &str) -> Result<Written, ClientError> {
        self.rt.block_on(self.client.mkdir(group, key))
    }

    /// See [`KvClient::list`].
    pub fn list(&self, group: u32, dir: &str) -> Result<ReadResult<Vec<NodeView>>, ClientError> {
        self.rt.block_on(self.client.list(group, dir))
    }

    /// See [`KvClient::batch_put`].
    pub fn batch_put(&self, group: u32, entries: &[(&str, &[u8])]) -> Result<Written, ClientError> {
        self.rt.block_on(self.client.batch_put(group, entries))
    }

    /// See [`KvClient::batch_get`].
    pub fn batch_get(
        &self,
        group: u32,
        keys: &[&str],
    ) -> Result<ReadResult<Vec<KeyRead>>, ClientError> {
        self.rt.block_on(self.client.batch_get(group, keys))
    }

    /// See [`KvClient::batch_remove`].
    pub fn batch_remove(&self, group: u32, keys: &[&str]) -> Result<Written, ClientError> {
        self.rt.block_on(self.client.batch_remove(group, keys))
    }

    /// See [`KvClient::compare_and_set`].
    pub fn compare_and_set(
        &self,
        group: u32,
        key: &str,
        expected: &[u8],
        new_value: &[u8],
    ) -> Result<Written, ClientError> {
        self.rt
            .block_on(self.client.compare_and_set(group, key, expected, new_value))
    }

    /// Closes the client.
    pub fn close(self) {
        self.rt.block_on(self.client.close());
    }
}
