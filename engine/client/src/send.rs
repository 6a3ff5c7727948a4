//! Sending a request: to the group's leader, following redirects and retrying
//! what is safe to retry, within the call's deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dongting_kv::{Command, KvError, Op, ReadRequest, ReadResponse, ReadResult};
use dongting_net::{CallOptions, RpcError, Status};
use dongting_proto::service::{self as proto, ReadMode};

use crate::discovery::{ResetOnDrop, resolve_hint};
use crate::error::ClientError;
use crate::ops::{Written, read_answer, read_body};
use crate::seq::{SeqPolicy, SeqRelease};
use crate::{KvClient, lock};

impl KvClient {
    pub(crate) async fn write(&self, group: u32, op: Op) -> Result<Written, ClientError> {
        // Each attempt the server certainly did not execute gets a new sequence
        // number; an attempt whose fate is unknown (a lost connection) is resent
        // with the same one, which the state machine answers from its session
        // table if the first attempt was applied. A fresh number keeps a retry
        // that waited in backoff from falling behind the session's floor.
        let current = AtomicU64::new(0);
        // Releases the attempt's sequence number however this call ends,
        // also when its future is dropped mid-call: a number left behind would
        // hold the session's acknowledged floor back for good.
        let _release = SeqRelease {
            in_flight: &self.inner.in_flight_seqs,
            current: &current,
        };
        let encode = || -> Bytes {
            let (seq, acked_below) = {
                let mut s = lock(&self.inner.in_flight_seqs);
                let old = current.load(Ordering::Relaxed);
                if old != 0 {
                    s.end(old);
                }
                let seq = s.issue();
                current.store(seq, Ordering::Relaxed);
                (seq, s.oldest())
            };
            let cmd = Command {
                client_id: self.inner.client_id,
                seq,
                acked_below,
                leader_time_ms: 0,
                op: op.clone(),
            };
            dongting_kv::with_command(&cmd, |inner| {
                proto::encode_kv_request(group, ReadMode::Linearizable, inner)
            })
        };
        let body = encode();
        let attempts = Attempts {
            renew: &encode,
            policy: SeqPolicy::default(),
        };
        let r = self
            .call(
                group,
                proto::CMD_KV_WRITE,
                body,
                ReadMode::Linearizable,
                Some(&attempts),
            )
            .await;
        let body = r?;
        let w = dongting_kv::decode_write_result(&body)
            .map_err(|e| ClientError::Kv { error: e, index: 0 })?;
        match w.outcome {
            Ok(outcome) => Ok(Written {
                index: w.index,
                outcome,
            }),
            // The number was resent after an attempt whose fate is unknown,
            // and the session no longer keeps its result: that attempt's
            // fate stays unknown.
            Err(error @ KvError::SeqTooOld(_)) if attempts.may_have_run() => {
                Err(ClientError::UnknownOutcome(error.to_string()))
            }
            Err(error) => Err(ClientError::Kv {
                error,
                index: w.index,
            }),
        }
    }

    pub(crate) async fn read(
        &self,
        group: u32,
        req: ReadRequest,
        mode: ReadMode,
    ) -> Result<ReadResult<ReadResponse>, ClientError> {
        let body = read_body(group, &req, mode);
        let answer = self
            .call(group, proto::CMD_KV_READ, body, mode, None)
            .await?;
        read_answer(&answer)
    }

    /// Sends to the group's leader, following redirects and retrying what is
    /// safe to retry, until the deadline.
    pub(crate) async fn call(
        &self,
        group: u32,
        command: u16,
        body: Bytes,
        mode: ReadMode,
        write: Option<&Attempts<'_>>,
    ) -> Result<Bytes, ClientError> {
        let timeout = self.timeout;
        let mut now = Instant::now();
        let deadline = now + timeout;
        // Fast path without a timer; wait (within the deadline) only when full.
        let _permit = match self.inner.permits.try_acquire() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(ClientError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Boxed: the rare path, kept out of every call's future.
                let p = match Box::pin(tokio::time::timeout(timeout, self.inner.permits.acquire()))
                    .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(ClientError::Closed),
                    Err(_) => return Err(ClientError::Timeout(timeout)),
                };
                now = Instant::now();
                p
            }
        };
        // The common case, a known leader that answers, in a small future;
        // anything else (discovery, redirects, retries) in a boxed one.
        let cached = lock(&self.inner.leaders).get(&group).copied();
        let first = match cached {
            Some(addr) => {
                let options = CallOptions::new(deadline.saturating_duration_since(now));
                match self
                    .inner
                    .rpc
                    .call_since(addr, command, &body, now, options)
                    .await
                {
                    Ok(r) => return Ok(r.body),
                    Err(e) => Some((addr, e)),
                }
            }
            None => None,
        };
        let r = Box::pin(self.call_slow(group, command, body, mode, write, deadline, first)).await;
        match (r, write) {
            // Once an attempt of a write may have run, the call ends in
            // success, the state machine's answer, or an unknown outcome:
            // never in an error that says the write was not executed.
            (Err(e), Some(w)) if w.may_have_run() && !planted_retryable_unknown() => {
                Err(e.unknown_outcome())
            }
            (r, _) => r,
        }
    }

    /// [`KvClient::call`] after its first attempt (`first`: the cached
    /// leader it went to and how it failed, when it made one): finds the
    /// leader, follows redirects and retries what is safe to retry, until
    /// `deadline`.
    #[allow(clippy::too_many_arguments)]
    async fn call_slow(
        &self,
        group: u32,
        command: u16,
        mut body: Bytes,
        mode: ReadMode,
        write: Option<&Attempts<'_>>,
        deadline: Instant,
        mut first: Option<(SocketAddr, RpcError)>,
    ) -> Result<Bytes, ClientError> {
        let timeout = self.timeout;
        let any_node = mode != ReadMode::Linearizable;
        let mut backoff = self.inner.cfg.min_backoff;
        let mut not_found = 0usize;
        let mut last_err: Option<ClientError> = None;
        let mut asked_status = false;
        // Servers that went away during this call (closed the connection,
        // or stopping): not asked again while another server may answer,
        // so that no retry waits out a reconnect backoff to a stopped node.
        let mut gone: Vec<SocketAddr> = Vec::new();
        loop {
            let (addr, cached, result) = match first.take() {
                Some((addr, e)) => (addr, Some(addr), Err(e)),
                None => {
                    if Instant::now() >= deadline {
                        return Err(last_err.unwrap_or(ClientError::Timeout(timeout)));
                    }
                    let cached = lock(&self.inner.leaders).get(&group).copied();
                    let addr = match cached {
                        Some(a) => a,
                        None => {
                            // One status round at a time per client: concurrent calls
                            // without a known leader try servers in turn meanwhile.
                            if !asked_status
                                && !any_node
                                && self.inner.cfg.servers.len() > 1
                                && !self.inner.discovering.swap(true, Ordering::AcqRel)
                            {
                                asked_status = true;
                                let found = {
                                    let _reset = ResetOnDrop(&self.inner.discovering);
                                    Box::pin(self.find_leader_avoiding(group, &gone)).await
                                };
                                match found {
                                    Some(a) => a,
                                    None => self.pick_server(&gone).ok_or_else(|| {
                                        ClientError::InvalidArgument("no servers".into())
                                    })?,
                                }
                            } else {
                                self.pick_server(&gone).ok_or_else(|| {
                                    ClientError::InvalidArgument("no servers".into())
                                })?
                            }
                        }
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    let r = self.inner.rpc.call(addr, command, &body, left).await;
                    (addr, cached, r)
                }
            };
            match result {
                Ok(r) => {
                    if !any_node && cached != Some(addr) {
                        lock(&self.inner.leaders).insert(group, addr);
                    }
                    return Ok(r.body);
                }
                Err(e) => {
                    let status = e.status();
                    lock(&self.inner.leaders).remove(&group);
                    if let Some(w) = write
                        && w.after(&e)
                    {
                        body = (w.renew)();
                    }
                    if status == Status::NOT_RAFT_LEADER {
                        // A hint at a server that went away is stale (a
                        // follower that has not yet heard of the new leader).
                        if let Some(h) = e.leader_hint()
                            && let Some(a) = Box::pin(resolve_hint(&h.host, h.port)).await
                            && a != addr
                            && !gone.contains(&a)
                        {
                            lock(&self.inner.leaders).insert(group, a);
                            last_err = Some(ClientError::Rpc(e));
                            continue;
                        }
                    } else if status == Status::RAFT_GROUP_NOT_FOUND {
                        not_found += 1;
                        if not_found >= self.inner.cfg.servers.len() {
                            return Err(ClientError::Rpc(e));
                        }
                        last_err = Some(ClientError::Rpc(e));
                        continue;
                    } else if status == Status::TIMEOUT {
                        return Err(ClientError::Timeout(timeout));
                    } else if status == Status::CLOSED {
                        return Err(ClientError::Closed);
                    } else if !(e.retryable() || status == Status::NETWORK_ERROR) {
                        // Writes are deduplicated by (client id, seq), so a lost
                        // connection is safe to retry; anything else is final.
                        return Err(ClientError::Rpc(e));
                    }
                    // The node went away (a restart, a shutdown that handed
                    // leadership over): ask the others at once which one
                    // leads now, once per node that goes, instead of
                    // backing off.
                    if going_away(status)
                        && !any_node
                        && !gone.contains(&addr)
                        && gone.len() + 1 < self.inner.cfg.servers.len()
                    {
                        gone.push(addr);
                        asked_status = false;
                        last_err = Some(ClientError::Rpc(e));
                        continue;
                    }
                    last_err = Some(ClientError::Rpc(e));
                    let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                    Box::pin(tokio::time::sleep(pause)).await;
                    backoff = (backoff * 2).min(self.inner.cfg.max_backoff);
                }
            }
        }
    }
}

/// Whether an error says the node that answered (or failed to) is going
/// away: its connection failed, or it is stopping the group or itself.
fn going_away(status: Status) -> bool {
    status == Status::NETWORK_ERROR
        || status == Status::STOPPING
        || status == Status::RAFT_GROUP_STOPPED
}

/// A write's attempts as [`KvClient::call`] makes them: how to encode the
/// next one, and what the failures so far allow.
pub(crate) struct Attempts<'a> {
    /// Encodes the write again under a fresh sequence number.
    renew: &'a (dyn Fn() -> Bytes + Sync),
    /// Whether an attempt may have run.
    policy: SeqPolicy,
}

impl Attempts<'_> {
    /// Records an attempt's failure; true when the next attempt may be
    /// encoded with a new sequence number.
    fn after(&self, e: &RpcError) -> bool {
        self.policy.after(e)
    }

    /// Whether an attempt may have reached a server and been executed.
    fn may_have_run(&self) -> bool {
        self.policy.pinned()
    }
}

/// Whether the planted bug that reports a write whose attempt may have run
/// with its last attempt's error is on (only in a `failpoints` build).
fn planted_retryable_unknown() -> bool {
    #[cfg(feature = "failpoints")]
    {
        crate::failpoints::retryable_unknown()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        false
    }
}
