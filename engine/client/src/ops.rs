//! The KV operations: writes, reads, listing, and the encoding and decoding
//! of their bodies.

use std::time::Duration;

use bytes::Bytes;
use dongting_kv::{
    KvError, ListPage, NodeView, Op, Outcome, ReadRequest, ReadResponse, ReadResult,
};
use dongting_proto::service::{self as proto, ReadMode};

use crate::error::{ClientError, unexpected};
use crate::{DEFAULT_LIST_PAGE, KeyRead, KvClient, MAX_LIST_PAGE};

/// One page of a directory's children, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page's children.
    pub nodes: Vec<NodeView>,
    /// True when children follow the last one of this page.
    pub more: bool,
}

impl Page {
    /// The key to start the next page after: the page's last key.
    pub fn next_after(&self) -> Option<&Bytes> {
        self.nodes.last().map(|n| &n.key)
    }
}

/// The answer to a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Raft index the write was applied at.
    pub index: u64,
    /// What it did.
    pub outcome: Outcome,
}

/// A read request in its envelope.
pub(crate) fn read_body(group: u32, req: &ReadRequest, mode: ReadMode) -> Bytes {
    dongting_kv::with_read_request(req, |inner| proto::encode_kv_request(group, mode, inner))
}

/// A read's answer decoded; an error the server answered becomes `Err`.
pub(crate) fn read_answer(body: &[u8]) -> Result<ReadResult<ReadResponse>, ClientError> {
    decoded(dongting_kv::decode_read_result(body))
}

/// A decoded read answer; an error the server answered becomes `Err`.
fn decoded(
    r: Result<ReadResult<Result<ReadResponse, KvError>>, KvError>,
) -> Result<ReadResult<ReadResponse>, ClientError> {
    let r = r.map_err(|e| ClientError::Kv { error: e, index: 0 })?;
    match r.data {
        Ok(data) => Ok(ReadResult {
            index: r.index,
            data,
        }),
        Err(error) => Err(ClientError::Kv {
            error,
            index: r.index,
        }),
    }
}

/// A key as bytes; keys are `.`-separated paths like `app.db.url`.
fn key_bytes(key: &str) -> Bytes {
    Bytes::copy_from_slice(key.as_bytes())
}

impl KvClient {
    /// Sets `key` to `value` (the parent directory must exist).
    pub async fn put(&self, group: u32, key: &str, value: &[u8]) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::Put {
                key: key_bytes(key),
                value: Bytes::copy_from_slice(value),
            },
        )
        .await
    }

    /// Like [`KvClient::put`] with a value the caller already holds as `Bytes` (no copy).
    /// (Not an `async fn`: the write's own future, one level less to build
    /// and move per call.)
    pub fn put_bytes(
        &self,
        group: u32,
        key: Bytes,
        value: Bytes,
    ) -> impl std::future::Future<Output = Result<Written, ClientError>> + Send + '_ {
        self.write(group, Op::Put { key, value })
    }

    /// Creates or updates a temporary value owned by this client: it is
    /// removed `ttl` after this write unless [`KvClient::update_ttl`] re-arms it.
    pub async fn put_temp(
        &self,
        group: u32,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::PutTemp {
                key: key_bytes(key),
                value: Bytes::copy_from_slice(value),
                ttl_ms: ttl.as_millis() as u64,
            },
        )
        .await
    }

    /// Creates (or re-arms) a temporary directory whose whole subtree is removed
    /// together when its TTL passes.
    pub async fn make_temp_dir(
        &self,
        group: u32,
        key: &str,
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::MakeTempDir {
                key: key_bytes(key),
                ttl_ms: ttl.as_millis() as u64,
            },
        )
        .await
    }

    /// Re-arms a temporary node's TTL from now (owner only).
    pub async fn update_ttl(
        &self,
        group: u32,
        key: &str,
        ttl: Duration,
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::UpdateTtl {
                key: key_bytes(key),
                ttl_ms: ttl.as_millis() as u64,
            },
        )
        .await
    }

    /// Removes a value or an empty directory.
    pub async fn remove(&self, group: u32, key: &str) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::Remove {
                key: key_bytes(key),
            },
        )
        .await
    }

    /// Creates a directory (no change when it exists).
    pub async fn mkdir(&self, group: u32, key: &str) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::Mkdir {
                key: key_bytes(key),
            },
        )
        .await
    }

    /// Sets several keys in one raft entry; one result per key in the outcome.
    pub async fn batch_put(
        &self,
        group: u32,
        entries: &[(&str, &[u8])],
    ) -> Result<Written, ClientError> {
        let entries = entries
            .iter()
            .map(|(k, v)| (key_bytes(k), Bytes::copy_from_slice(v)))
            .collect();
        self.write(group, Op::BatchPut { entries }).await
    }

    /// Removes several keys in one raft entry.
    pub async fn batch_remove(&self, group: u32, keys: &[&str]) -> Result<Written, ClientError> {
        let keys = keys.iter().map(|k| key_bytes(k)).collect();
        self.write(group, Op::BatchRemove { keys }).await
    }

    /// Sets `key` to `new_value` if its value is `expected` (empty: must be
    /// absent; empty `new_value`: delete).
    pub async fn compare_and_set(
        &self,
        group: u32,
        key: &str,
        expected: &[u8],
        new_value: &[u8],
    ) -> Result<Written, ClientError> {
        self.write(
            group,
            Op::CompareAndSet {
                key: key_bytes(key),
                expected: Bytes::copy_from_slice(expected),
                new_value: Bytes::copy_from_slice(new_value),
            },
        )
        .await
    }

    /// Reads one key (linearizable).
    pub async fn get(
        &self,
        group: u32,
        key: &str,
    ) -> Result<ReadResult<Option<NodeView>>, ClientError> {
        self.get_with(group, key_bytes(key), ReadMode::Linearizable)
            .await
    }

    /// Reads one key with the given consistency.
    pub async fn get_with(
        &self,
        group: u32,
        key: Bytes,
        mode: ReadMode,
    ) -> Result<ReadResult<Option<NodeView>>, ClientError> {
        // The hot read, without `read`'s future level in between.
        let req = ReadRequest::Get(key);
        let body = read_body(group, &req, mode);
        let answer = self
            .call(group, proto::CMD_KV_READ, body, mode, None)
            .await?;
        let ReadRequest::Get(key) = &req else {
            return Err(unexpected());
        };
        let r = decoded(dongting_kv::decode_get_result(&answer, key))?;
        match r.data {
            ReadResponse::Get(n) => Ok(ReadResult {
                index: r.index,
                data: n,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Reads several keys; one result per key.
    pub async fn batch_get(
        &self,
        group: u32,
        keys: &[&str],
    ) -> Result<ReadResult<Vec<KeyRead>>, ClientError> {
        let keys = keys.iter().map(|k| key_bytes(k)).collect();
        let r = self
            .read(group, ReadRequest::BatchGet(keys), ReadMode::Linearizable)
            .await?;
        match r.data {
            ReadResponse::BatchGet(v) => Ok(ReadResult {
                index: r.index,
                data: v,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Lists all of a directory's children (the empty key lists the root),
    /// in key order, reading them a page at a time: a directory of any size
    /// lists. When it takes more than one page, each page is read at its own
    /// index and the result's index is the first page's: children added or
    /// removed during the listing may or may not appear, and a watch from the
    /// returned index sees every change after it.
    pub async fn list(
        &self,
        group: u32,
        dir: &str,
    ) -> Result<ReadResult<Vec<NodeView>>, ClientError> {
        self.list_with(group, dir, ReadMode::Linearizable).await
    }

    /// [`Self::list`] with the given consistency for every page.
    pub async fn list_with(
        &self,
        group: u32,
        dir: &str,
        mode: ReadMode,
    ) -> Result<ReadResult<Vec<NodeView>>, ClientError> {
        let first = self
            .list_page_with(group, dir, "", MAX_LIST_PAGE, mode)
            .await?;
        let index = first.index;
        let mut page = first.data;
        let mut nodes = Vec::new();
        loop {
            let next = page
                .next_after()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            nodes.append(&mut page.nodes);
            match next {
                Some(after) if page.more => {
                    page = self
                        .list_page_with(group, dir, &after, MAX_LIST_PAGE, mode)
                        .await?
                        .data;
                }
                _ => break,
            }
        }
        Ok(ReadResult { index, data: nodes })
    }

    /// One page of a directory's children: those whose key sorts after
    /// `start_after` (a full key, typically the last of the previous page;
    /// empty: from the first child), at most `limit` of them (0: 1,000; at
    /// most 10,000) and under the server's byte cap for one answer. The
    /// page's `more` says whether children follow.
    pub async fn list_page(
        &self,
        group: u32,
        dir: &str,
        start_after: &str,
        limit: u32,
    ) -> Result<ReadResult<Page>, ClientError> {
        self.list_page_with(group, dir, start_after, limit, ReadMode::Linearizable)
            .await
    }

    /// [`Self::list_page`] with the given consistency.
    pub async fn list_page_with(
        &self,
        group: u32,
        dir: &str,
        start_after: &str,
        limit: u32,
        mode: ReadMode,
    ) -> Result<ReadResult<Page>, ClientError> {
        if limit > MAX_LIST_PAGE {
            return Err(ClientError::InvalidArgument(format!(
                "page limit {limit} is out of range: at most {MAX_LIST_PAGE} (0: {})",
                DEFAULT_LIST_PAGE
            )));
        }
        let page = ListPage {
            start_after: key_bytes(start_after),
            limit,
        };
        let r = self
            .read(group, ReadRequest::ListPage(key_bytes(dir), page), mode)
            .await?;
        let data = match r.data {
            ReadResponse::ListPage { nodes, more } => Page { nodes, more },
            // A server that predates paging answers the whole directory.
            ReadResponse::List(nodes) => Page { nodes, more: false },
            _ => return Err(unexpected()),
        };
        Ok(ReadResult {
            index: r.index,
            data,
        })
    }
}
