//! Stopping a group: handing leadership over first when this node leads it,
//! then finishing the writes it accepted, within bounds.
//!
//! A leader that simply stopped would leave its followers to wait out an
//! election timeout before one of them leads, and writes would stall that
//! long. Instead the stopping leader picks the voter best placed to take over
//! ([`RawNode::transfer_candidate`](dongting_raft::RawNode::transfer_candidate)),
//! asks raft to transfer leadership to it (bounded by
//! `shutdown_transfer_timeout_ms`) and proposes nothing more. Reads and writes
//! that arrive meanwhile are parked, never proposed, and answered
//! NOT_RAFT_LEADER with the new leader's address once it is known (a client
//! retries them there under a new sequence number: nothing was executed), or
//! STOPPING if the transfer does not finish in time. The writes accepted
//! before the stop are committed by the new leader and answered here when this
//! node applies them.

use std::time::{Duration, Instant};

use dongting_net::Status;
use dongting_raft::{NodeId, Role};
use tokio::sync::oneshot;
use tracing::info;

use super::GroupTask;
use crate::metrics_kv::KvResponder;

/// Most requests parked while leadership is handed over; more are answered
/// STOPPING at once.
const MAX_PARKED_REQUESTS: usize = 16_384;

/// A stop in progress: hand leadership over (when leading), finish in-flight
/// writes until `deadline`, then close.
pub(crate) struct Stopping {
    pub(super) deadline: Instant,
    pub(super) delete: bool,
    pub(super) reply: oneshot::Sender<()>,
    /// The hand-over while it runs.
    pub(super) handover: Option<HandOver>,
}

/// Leadership being handed to another voter before the group stops.
pub(super) struct HandOver {
    target: NodeId,
    term: u64,
    started: Instant,
    until: Instant,
    /// Requests refused meanwhile, to be told where the new leader is.
    parked: Vec<KvResponder>,
}

impl Stopping {
    /// Whether the group may close: no hand-over runs, and every accepted
    /// write is answered or the grace period is over.
    pub(super) fn may_close(&self, pending_empty: bool, now: Instant) -> bool {
        now >= self.deadline || (self.handover.is_none() && pending_empty)
    }
}

impl GroupTask {
    /// Starts stopping: hands leadership over when this node leads (and the
    /// group is not being deleted), then lets the accepted writes finish for
    /// up to `grace`.
    pub(super) fn begin_stop(&mut self, grace: Duration, delete: bool, reply: oneshot::Sender<()>) {
        info!(group = self.group_id, "group stopping");
        let handover = if delete { None } else { self.start_handover() };
        let transfer = handover
            .as_ref()
            .map_or(Duration::ZERO, |h| h.until - h.started);
        self.stopping = Some(Stopping {
            deadline: Instant::now() + transfer + grace,
            delete,
            reply,
            handover,
        });
    }

    fn start_handover(&mut self) -> Option<HandOver> {
        if self.raft.role() != Role::Leader || self.failed {
            return None;
        }
        let term = self.raft.term();
        let timeout = self.shared.cfg.shutdown_transfer_timeout();
        if timeout.is_zero() {
            info!(
                group = self.group_id,
                term,
                "leadership not handed over on shutdown: turned off (shutdown_transfer_timeout_ms = 0)"
            );
            return None;
        }
        // An admin transfer already running keeps its target.
        let target = match self.raft.status().transfer_target {
            Some(t) => t,
            None => match self.raft.transfer_candidate() {
                Some(t) => t,
                None => {
                    info!(
                        group = self.group_id,
                        term, "leadership not handed over on shutdown: no other voter"
                    );
                    return None;
                }
            },
        };
        if let Err(e) = self
            .raft
            .transfer_leader(target, timeout.as_millis() as u64)
        {
            info!(group = self.group_id, term, to = target, error = %e,
                "leadership not handed over on shutdown: the transfer was refused");
            return None;
        }
        let started = Instant::now();
        Some(HandOver {
            target,
            term,
            started,
            until: started + timeout,
            parked: Vec::new(),
        })
    }

    /// While leadership is handed over on shutdown, keeps `responder` to
    /// answer once the new leader is known and returns `None`; otherwise
    /// gives it back.
    pub(super) fn park_if_handing_over(&mut self, responder: KvResponder) -> Option<KvResponder> {
        let Some(h) = self.stopping.as_mut().and_then(|s| s.handover.as_mut()) else {
            return Some(responder);
        };
        if h.parked.len() >= MAX_PARKED_REQUESTS {
            responder.error(Status::STOPPING, "the group is shutting down");
        } else {
            h.parked.push(responder);
        }
        None
    }

    /// Ends the hand-over once another node leads, or once its time is up;
    /// the parked requests learn the new leader, or get STOPPING.
    pub(super) fn check_handover(&mut self) {
        let Some(h) = self.stopping.as_ref().and_then(|s| s.handover.as_ref()) else {
            return;
        };
        let leader = self.raft.leader();
        let handed = self.raft.role() != Role::Leader && leader != 0 && leader != self.raft.id();
        let now = Instant::now();
        if !handed && now < h.until {
            return;
        }
        let Some(h) = self.stopping.as_mut().and_then(|s| s.handover.take()) else {
            return;
        };
        let ms = now.duration_since(h.started).as_millis() as u64;
        if handed {
            info!(
                group = self.group_id,
                term = self.raft.term(),
                to = leader,
                ms,
                "leadership handed over on shutdown"
            );
            for r in h.parked {
                self.not_leader(r);
            }
        } else {
            let why = if self.raft.role() == Role::Leader {
                "the target did not catch up and campaign in time"
            } else {
                "no new leader was known in time"
            };
            info!(
                group = self.group_id,
                term = h.term,
                to = h.target,
                ms,
                reason = why,
                "leadership not handed over on shutdown: stopping anyway"
            );
            for r in h.parked {
                r.error(Status::STOPPING, "the group is shutting down");
            }
        }
    }

    /// Answers what a stop left parked (the group closes before its
    /// hand-over ended).
    pub(super) fn drop_parked(stopping: &mut Stopping) {
        if let Some(h) = stopping.handover.take() {
            for r in h.parked {
                r.error(Status::STOPPING, "the group is shutting down");
            }
        }
    }
}
