//! [`KvClient`]: every DtKV operation, as an [`OpFuture`] and blocking.

use std::net::{SocketAddr, ToSocketAddrs};

use bytes::Bytes;
use dongting_client::{ClientError, Consistency, KvClientConfig};

use crate::args;
use crate::error::{Error, code};
use crate::op::OpFuture;
use crate::reply::Reply;
use crate::runtime::Runtime;

/// Default per-call timeout (retries included).
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// A DtKV client on a [`Runtime`].
///
/// Every operation exists twice: `*_async` returns an [`OpFuture`] at once
/// (arguments are validated and copied before it returns, so borrowed inputs
/// may be released right after), and the plain form blocks the calling thread
/// until the result is there (never call it on a runtime thread). Keys are
/// UTF-8 paths like `app.db.url`; the empty key is the root directory.
/// Cloning is cheap; clones share connections and the write session.
#[derive(Clone)]
pub struct KvClient {
    pub(crate) rt: Runtime,
    pub(crate) client: dongting_client::KvClient,
}

impl std::fmt::Debug for KvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvClient")
            .field("client_id", &self.client.client_id())
            .finish()
    }
}

fn key_str(key: &[u8]) -> Result<String, Error> {
    key_utf8(key).map(str::to_string)
}

/// Checks that `key` is UTF-8 without copying it.
fn key_utf8(key: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(key).map_err(|_| {
        Error::new(
            code::KV_INVALID_KEY,
            "INVALID_KEY: the key is not valid UTF-8",
        )
    })
}

/// Parses `host:port[,host:port...]`, resolving host names (blocking DNS).
/// An address with port 0 is refused: nothing can listen there.
pub fn parse_servers(servers: &str) -> Result<Vec<SocketAddr>, Error> {
    let mut out = Vec::new();
    for part in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = part
            .to_socket_addrs()
            .map_err(|e| Error::invalid_argument(format!("bad server address {part:?}: {e}")))?
            .next()
            .ok_or_else(|| Error::invalid_argument(format!("{part:?} resolves to nothing")))?;
        if addr.port() == 0 {
            return Err(Error::invalid_argument(format!(
                "server address {part:?} has port 0"
            )));
        }
        out.push(addr);
    }
    if out.is_empty() {
        return Err(Error::invalid_argument("no server address given"));
    }
    Ok(out)
}

/// The blocking form of every operation of [`kv_ops!`](crate::kv_ops): it
/// waits for the `*_async` form's future on the calling thread.
macro_rules! blocking {
    ($($name:ident / $async_name:ident ($($arg:ident : $kind:ident),*);)*) => {
        impl KvClient {
            $(
                #[doc = concat!("Blocking [`KvClient::", stringify!($async_name), "`].")]
                pub fn $name(&self, $($arg: $crate::kv_kind_type!($kind)),*) -> Result<Reply, Error> {
                    self.$async_name($($arg),*).wait_result()
                }
            )*
        }
    };
}

crate::kv_ops!(blocking);

impl KvClient {
    /// A client for `servers` (`host:port` of service ports, comma-separated)
    /// whose calls take at most `timeout_ms` each, retries included (1 to
    /// [`MAX_TIMEOUT_MS`](crate::MAX_TIMEOUT_MS); [`DEFAULT_TIMEOUT_MS`] is the
    /// usual choice). Connects lazily, on the first call. INVALID_ARGUMENT
    /// for a timeout out of range, an address that does not parse or
    /// resolve, or one with port 0.
    pub fn new(rt: &Runtime, servers: &str, timeout_ms: u64) -> Result<KvClient, Error> {
        rt.check()?;
        let timeout = args::timeout("timeout_ms", timeout_ms)?;
        let mut cfg = KvClientConfig::new(parse_servers(servers)?);
        cfg.timeout = timeout;
        cfg.validate().map_err(|e| match e {
            ClientError::InvalidArgument(m) => Error::invalid_argument(m),
            other => Error::from(other),
        })?;
        let client = {
            let _g = rt.handle().enter();
            dongting_client::KvClient::new(cfg)
        };
        Ok(KvClient {
            rt: rt.clone(),
            client,
        })
    }

    /// The write session id of this client (owner of its temporary nodes).
    pub fn client_id(&self) -> u64 {
        self.client.client_id()
    }

    /// The runtime this client runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    pub(crate) fn inner_client(&self) -> &dongting_client::KvClient {
        &self.client
    }

    fn run<F, Fut>(&self, f: F) -> OpFuture
    where
        F: FnOnce(dongting_client::KvClient) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Reply, Error>> + Send + 'static,
    {
        let client = self.client.clone();
        self.rt.submit_op(move || f(client))
    }

    /// Sets `key` to `value` (its parent directory must exist). Reply:
    /// `index`, `created`.
    pub fn put_async(&self, group: u32, key: &[u8], value: &[u8]) -> OpFuture {
        if let Err(e) = key_utf8(key) {
            return OpFuture::ready(Err(e));
        }
        let key = Bytes::copy_from_slice(key);
        let value = Bytes::copy_from_slice(value);
        self.run(move |c| async move {
            c.put_bytes(group, key, value)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Reads one key, linearizably. Reply: `nodes` holds the node, or nothing
    /// when the key is absent.
    pub fn get_async(&self, group: u32, key: &[u8]) -> OpFuture {
        if let Err(e) = key_utf8(key) {
            return OpFuture::ready(Err(e));
        }
        let key = Bytes::copy_from_slice(key);
        self.run(move |c| async move {
            c.get_with(group, key, Consistency::Linearizable)
                .await
                .map(|r| Reply::get(r.index, r.data))
                .map_err(Error::from)
        })
    }

    /// Removes a value or an empty directory (NOT_FOUND when absent).
    pub fn remove_async(&self, group: u32, key: &[u8]) -> OpFuture {
        let key = match key_str(key) {
            Ok(k) => k,
            Err(e) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            c.remove(group, &key)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Creates a directory. Reply: `created` (false when it existed).
    pub fn mkdir_async(&self, group: u32, key: &[u8]) -> OpFuture {
        let key = match key_str(key) {
            Ok(k) => k,
            Err(e) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            c.mkdir(group, &key)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Lists a directory's children (the empty key lists the root). Reply:
    /// `nodes`, in key order.
    pub fn list_async(&self, group: u32, dir: &[u8]) -> OpFuture {
        let dir = match key_str(dir) {
            Ok(k) => k,
            Err(e) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            c.list(group, &dir)
                .await
                .map(|r| Reply::list(r.index, r.data))
                .map_err(Error::from)
        })
    }

    /// One page of a directory's children: those whose key sorts after
    /// `start_after` (empty: from the first), at most `limit` (0: 1,000; at
    /// most 10,000) and under the server's byte cap for one answer. Reply:
    /// `nodes` in key order; `more` when children follow the last one.
    pub fn list_page_async(
        &self,
        group: u32,
        dir: &[u8],
        start_after: &[u8],
        limit: u64,
    ) -> OpFuture {
        let args = key_str(dir)
            .and_then(|d| Ok((d, key_str(start_after)?, crate::args::page_limit(limit)?)));
        let (dir, after, limit) = match args {
            Ok(a) => a,
            Err(e) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            c.list_page(group, &dir, &after, limit)
                .await
                .map(|r| Reply::page(r.index, r.data.nodes, r.data.more))
                .map_err(Error::from)
        })
    }

    /// Sets several keys in one raft entry. Reply: `codes`, one per key.
    pub fn batch_put_async(&self, group: u32, keys: &[&[u8]], values: &[&[u8]]) -> OpFuture {
        if keys.len() != values.len() {
            return OpFuture::ready(Err(Error::invalid_argument(format!(
                "{} keys but {} values",
                keys.len(),
                values.len()
            ))));
        }
        let mut entries = Vec::with_capacity(keys.len());
        for (k, v) in keys.iter().zip(values) {
            match key_str(k) {
                Ok(k) => entries.push((k, v.to_vec())),
                Err(e) => return OpFuture::ready(Err(e)),
            }
        }
        self.run(move |c| async move {
            let refs: Vec<(&str, &[u8])> = entries
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            c.batch_put(group, &refs)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    fn keys(keys: &[&[u8]]) -> Result<Vec<String>, Error> {
        keys.iter().map(|k| key_str(k)).collect()
    }

    /// Reads several keys. Reply: `nodes` (kind absent for a missing key) and
    /// `codes`, one each per key in request order.
    pub fn batch_get_async(&self, group: u32, keys: &[&[u8]]) -> OpFuture {
        let keys = match Self::keys(keys) {
            Ok(k) => k,
            Err(e) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let raw: Vec<Bytes> = keys
                .iter()
                .map(|k| Bytes::copy_from_slice(k.as_bytes()))
                .collect();
            c.batch_get(group, &refs)
                .await
                .map(|r| Reply::batch_get(r.index, &raw, r.data))
                .map_err(Error::from)
        })
    }

    /// Removes several keys in one raft entry. Reply: `codes`, one per key.
    pub fn batch_remove_async(&self, group: u32, keys: &[&[u8]]) -> OpFuture {
        let keys = match Self::keys(keys) {
            Ok(k) => k,
            Err(e) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            c.batch_remove(group, &refs)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Sets `key` to `new_value` if its value is `expected` (empty `expected`:
    /// the key must be absent; empty `new_value`: delete). A different value
    /// fails with CAS_MISMATCH.
    pub fn compare_and_set_async(
        &self,
        group: u32,
        key: &[u8],
        expected: &[u8],
        new_value: &[u8],
    ) -> OpFuture {
        let key = match key_str(key) {
            Ok(k) => k,
            Err(e) => return OpFuture::ready(Err(e)),
        };
        let expected = expected.to_vec();
        let new_value = new_value.to_vec();
        self.run(move |c| async move {
            c.compare_and_set(group, &key, &expected, &new_value)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Creates or updates a temporary value owned by this client, removed
    /// `ttl_ms` after this write unless re-armed. Reply: `deadline_ms`.
    pub fn put_temp_async(&self, group: u32, key: &[u8], value: &[u8], ttl_ms: u64) -> OpFuture {
        let (key, ttl) = match (key_str(key), args::ttl(ttl_ms)) {
            (Ok(k), Ok(t)) => (k, t),
            (Err(e), _) | (_, Err(e)) => return OpFuture::ready(Err(e)),
        };
        let value = value.to_vec();
        self.run(move |c| async move {
            c.put_temp(group, &key, &value, ttl)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Creates (or re-arms) a temporary directory whose subtree is removed
    /// when its TTL passes. Reply: `deadline_ms`.
    pub fn make_temp_dir_async(&self, group: u32, key: &[u8], ttl_ms: u64) -> OpFuture {
        let (key, ttl) = match (key_str(key), args::ttl(ttl_ms)) {
            (Ok(k), Ok(t)) => (k, t),
            (Err(e), _) | (_, Err(e)) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            c.make_temp_dir(group, &key, ttl)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Re-arms a temporary node's TTL from now (owner only). Reply:
    /// `deadline_ms`.
    pub fn update_ttl_async(&self, group: u32, key: &[u8], ttl_ms: u64) -> OpFuture {
        let (key, ttl) = match (key_str(key), args::ttl(ttl_ms)) {
            (Ok(k), Ok(t)) => (k, t),
            (Err(e), _) | (_, Err(e)) => return OpFuture::ready(Err(e)),
        };
        self.run(move |c| async move {
            c.update_ttl(group, &key, ttl)
                .await
                .map(Reply::write)
                .map_err(Error::from)
        })
    }

    /// Fails new calls and closes connections once calls in flight finish
    /// (up to one second).
    pub fn close_async(&self) -> OpFuture {
        self.run(move |c| async move {
            c.close().await;
            Ok(Reply::default())
        })
    }

    /// Blocking [`KvClient::close_async`].
    pub fn close(&self) -> Result<(), Error> {
        self.close_async().wait_result().map(|_| ())
    }
}
