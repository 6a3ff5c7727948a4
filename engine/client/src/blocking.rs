//! Blocking wrappers for callers without an async runtime.

use dongting_kv::{KeyRead, NodeView, ReadResult};

use std::time::Duration;

use crate::{
    ClientError, DistributedLock, KvClient, KvClientConfig, Page, WatchItem, WatchStream, Written,
};

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

    /// See [`KvClient::list_page`].
    pub fn list_page(
        &self,
        group: u32,
        dir: &str,
        start_after: &str,
        limit: u32,
    ) -> Result<ReadResult<Page>, ClientError> {
        self.rt
            .block_on(self.client.list_page(group, dir, start_after, limit))
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

    /// See [`KvClient::watch`].
    pub fn watch(
        &self,
        group: u32,
        keys: &[&[u8]],
        from_index: u64,
    ) -> Result<BlockingWatchStream, ClientError> {
        let stream = self
            .rt
            .block_on(self.client.watch(group, keys, from_index))?;
        Ok(BlockingWatchStream {
            rt: self.rt.handle().clone(),
            stream,
        })
    }

    /// See [`KvClient::put_temp`].
    pub fn put_temp(
        &self,
        group: u32,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.rt
            .block_on(self.client.put_temp(group, key, value, ttl))
    }

    /// See [`KvClient::make_temp_dir`].
    pub fn make_temp_dir(
        &self,
        group: u32,
        key: &str,
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.rt.block_on(self.client.make_temp_dir(group, key, ttl))
    }

    /// See [`KvClient::update_ttl`].
    pub fn update_ttl(&self, group: u32, key: &str, ttl: Duration) -> Result<Written, ClientError> {
        self.rt.block_on(self.client.update_ttl(group, key, ttl))
    }

    /// See [`KvClient::create_lock`].
    pub fn create_lock(&self, group: u32, key: &str) -> Result<BlockingLock, ClientError> {
        Ok(BlockingLock {
            rt: self.rt.handle().clone(),
            lock: self.client.create_lock(group, key)?,
        })
    }

    /// Closes the client.
    pub fn close(self) {
        self.rt.block_on(self.client.close());
    }
}

/// A [`WatchStream`] with blocking methods, running on its client's runtime.
#[derive(Debug)]
pub struct BlockingWatchStream {
    rt: tokio::runtime::Handle,
    stream: WatchStream,
}

impl BlockingWatchStream {
    /// The next item, waiting at most `timeout`: `Ok(None)` when nothing
    /// arrived in time (nothing is lost; call again).
    pub fn next(&mut self, timeout: Duration) -> Result<Option<WatchItem>, ClientError> {
        let stream = &mut self.stream;
        self.rt.block_on(async move {
            match tokio::time::timeout(timeout, stream.next()).await {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            }
        })
    }

    /// See [`WatchStream::last_index`].
    pub fn last_index(&self) -> u64 {
        self.stream.last_index()
    }

    /// See [`WatchStream::close`].
    pub fn close(&mut self) {
        self.rt.block_on(self.stream.close());
    }
}

/// A [`DistributedLock`] with blocking methods, running on its
/// [`BlockingKvClient`]'s runtime (usable after the client is dropped only
/// until that runtime shuts down).
#[derive(Debug, Clone)]
pub struct BlockingLock {
    rt: tokio::runtime::Handle,
    lock: DistributedLock,
}

impl BlockingLock {
    /// The async lock.
    pub fn lock(&self) -> &DistributedLock {
        &self.lock
    }

    /// See [`DistributedLock::try_lock`].
    pub fn try_lock(
        &self,
        lease_ms: u64,
        wait_timeout_ms: u64,
    ) -> Result<Option<u64>, ClientError> {
        self.rt
            .block_on(self.lock.try_lock(lease_ms, wait_timeout_ms))
    }

    /// See [`DistributedLock::unlock`].
    pub fn unlock(&self) -> Result<(), ClientError> {
        self.rt.block_on(self.lock.unlock())
    }

    /// See [`DistributedLock::update_lease`].
    pub fn update_lease(&self, lease_ms: u64) -> Result<(), ClientError> {
        self.rt.block_on(self.lock.update_lease(lease_ms))
    }

    /// See [`DistributedLock::is_held_by_current_client`].
    pub fn is_held_by_current_client(&self) -> bool {
        self.lock.is_held_by_current_client()
    }

    /// See [`DistributedLock::lease_rest_millis`].
    pub fn lease_rest_millis(&self) -> u64 {
        self.lock.lease_rest_millis()
    }
}
