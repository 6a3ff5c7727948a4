//! DtKV watches: the watch commands of the service port and the per-group
//! registry ([`WatchHub`]) that the group task owns. The wire bodies live in
//! `dongting_proto::watch`.
//!
//! Everything about a group's watches happens on its group task, the task
//! that also applies the log: a registration reads the history and joins the
//! live stream in one step, so no applied index is missed or sent twice.
//! Events go out as PUSH frames on the connection that registered the watch;
//! that connection's push queue (`max_pending_push_bytes`) is the bound. A
//! watch whose push does not fit falls back to the event history and catches
//! up from it once the queue drains; when the history no longer reaches back
//! that far, the watch gets a `Compacted` push and continues from the node's
//! applied index (see docs/kv.md, "Watches").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{KvStateMachine, SEPARATOR, WatchEvent};
use dongting_net::{ConnHandle, ConnHold, RpcError, Status};
use dongting_proto::watch::{
    CMD_KV_WATCH_PUSH, MAX_KEYS_PER_WATCH, WatchPushKind, WatchRequest, WatchResponse, encode_push,
};
use tracing::debug;

use crate::clock::mono_ms;

/// Most watches one group serves on one node; more are refused with FLOW_CONTROL.
pub const MAX_WATCHES_PER_GROUP: usize = 1_000_000;
/// A push frame is closed once its events reach this many bytes (a frame
/// still holds every event of its last index).
const MAX_PUSH_EVENT_BYTES: usize = 1024 * 1024;
/// History events scanned per lagging watch per catch-up round.
const CATCH_UP_SCAN: usize = 4096;
/// History events scanned per group per catch-up round, over all lagging watches.
const CATCH_UP_BUDGET: usize = 65_536;
/// Interval between retries of lagging watches.
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(100);
/// Interval between sweeps for closed connections and idle watches.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// A watch's identity: the connection's id and the client's watch id.
type WatchKey = (u64, u64);

/// One registered watch. Kept small: memory per watch is a stated limit
/// (docs/kv.md).
struct Watcher {
    /// The connection the watch lives on, held open against the service
    /// port's idle timeout while the watch exists.
    conn: ConnHold,
    watch_id: u64,
    keys: Box<[Bytes]>,
    /// The watcher has every event with an index at or below this one.
    sent: u64,
    /// When something was last pushed, in `mono_ms` (heartbeats go to idle
    /// watches).
    last_push_ms: u64,
    /// Behind the live stream: served from the history until caught up.
    lagging: bool,
}

impl Watcher {
    fn covers(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|k| dongting_kv::is_under(key, k))
    }
}

/// What a push attempt did.
enum Pushed {
    Ok,
    Full,
    Gone,
}

/// The watches of one group on this node. Owned by the group task.
///
/// Costs: routing an event is one hash lookup per segment of its key; each
/// watch with events gets one push per apply batch (one frame, more only past
/// 1 MiB of events). A registration reads the history from its start index.
pub(crate) struct WatchHub {
    group_id: u32,
    heartbeat: Duration,
    watchers: HashMap<WatchKey, Watcher>,
    by_key: HashMap<Bytes, Vec<WatchKey>>,
    lagging: Vec<WatchKey>,
    /// Events applied since the last dispatch.
    pending: Vec<WatchEvent>,
    last_catch_up: Instant,
    last_sweep: Instant,
}

impl WatchHub {
    /// Watches registered.
    pub(crate) fn count(&self) -> usize {
        self.watchers.len()
    }

    pub(crate) fn new(group_id: u32, heartbeat_ms: u64) -> WatchHub {
        WatchHub {
            group_id,
            heartbeat: Duration::from_millis(heartbeat_ms.max(1)),
            watchers: HashMap::new(),
            by_key: HashMap::new(),
            lagging: Vec::new(),
            pending: Vec::new(),
            last_catch_up: Instant::now(),
            last_sweep: Instant::now(),
        }
    }

    /// Registers a watch (or confirms an existing one) and sends it what the
    /// history holds after its start index. Runs on the group task between
    /// applies, so the history and the live stream meet exactly at the
    /// applied index.
    pub(crate) fn register(
        &mut self,
        sm: &KvStateMachine,
        conn: ConnHandle,
        req: WatchRequest,
    ) -> Result<WatchResponse, (Status, String)> {
        let applied = sm.applied_index();
        let id = (conn.id(), req.watch_id);
        if let Some(w) = self.watchers.get(&id) {
            return Ok(WatchResponse {
                start_index: w.sent,
                applied_index: applied,
                heartbeat_ms: self.heartbeat.as_millis() as u64,
                existing: true,
            });
        }
        if req.keys.is_empty() || req.keys.len() > MAX_KEYS_PER_WATCH {
            return Err((
                Status::CLIENT_ERROR,
                format!(
                    "a watch names 1 to {MAX_KEYS_PER_WATCH} keys, this one {}",
                    req.keys.len()
                ),
            ));
        }
        for k in &req.keys {
            dongting_kv::validate_key(k, sm.limits().max_key_bytes, true).map_err(|e| {
                (
                    Status::CLIENT_ERROR,
                    format!("watch key {:?}: {e}", String::from_utf8_lossy(k)),
                )
            })?;
        }
        if self.watchers.len() >= MAX_WATCHES_PER_GROUP {
            return Err((
                Status::FLOW_CONTROL,
                format!(
                    "group {} already serves {MAX_WATCHES_PER_GROUP} watches on this node",
                    self.group_id
                ),
            ));
        }
        let start = if req.from_index == 0 {
            applied
        } else {
            req.from_index
        };
        let mut req_keys = req.keys;
        req_keys.sort();
        req_keys.dedup();
        // The request's keys are slices of a receive buffer that a long-lived
        // watch must not keep alive: a watch holds the routing table's copy,
        // shared by every watch of the same key.
        let mut keys = Vec::with_capacity(req_keys.len());
        for k in &req_keys {
            match self.by_key.get_key_value(&k[..]) {
                Some((shared, _)) => keys.push(shared.clone()),
                None => keys.push(Bytes::copy_from_slice(k)),
            }
            let key = keys[keys.len() - 1].clone();
            self.by_key.entry(key).or_default().push(id);
        }
        self.watchers.insert(
            id,
            Watcher {
                conn: conn.hold(),
                watch_id: req.watch_id,
                keys: keys.into_boxed_slice(),
                sent: start,
                last_push_ms: mono_ms(),
                lagging: true,
            },
        );
        let mut budget = CATCH_UP_BUDGET;
        if self.catch_up(id, sm, &mut budget) {
            self.lagging.push(id);
        }
        Ok(WatchResponse {
            start_index: start,
            applied_index: applied,
            heartbeat_ms: self.heartbeat.as_millis() as u64,
            existing: false,
        })
    }

    /// Removes the connection's watch `watch_id`; false when there was none.
    pub(crate) fn unwatch(&mut self, conn_id: u64, watch_id: u64) -> bool {
        let found = self.watchers.contains_key(&(conn_id, watch_id));
        self.remove((conn_id, watch_id));
        found
    }

    fn remove(&mut self, id: WatchKey) {
        let Some(w) = self.watchers.remove(&id) else {
            return;
        };
        for k in w.keys.iter() {
            if let Some(v) = self.by_key.get_mut(k) {
                v.retain(|x| *x != id);
                if v.is_empty() {
                    self.by_key.remove(k);
                }
            }
        }
    }

    /// Takes the events of one applied entry (nothing is kept without watches).
    pub(crate) fn collect(&mut self, events: Vec<WatchEvent>) {
        if !self.watchers.is_empty() && !events.is_empty() {
            if self.pending.is_empty() {
                self.pending = events;
            } else {
                self.pending.extend(events);
            }
        }
    }

    /// Sends the collected events to the live watches they concern. Call once
    /// per apply batch, after the last entry of the batch is applied.
    pub(crate) fn dispatch(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending);
        // Positions of each watch's events, in order, each once.
        let mut per_watch: HashMap<WatchKey, Vec<usize>> = HashMap::new();
        for (pos, e) in events.iter().enumerate() {
            let key = &e.key[..];
            let mut prefix_end = Some(key.len());
            // The key itself, each of its ancestors, then the root.
            while let Some(end) = prefix_end {
                if let Some(ids) = self.by_key.get(&key[..end]) {
                    for id in ids {
                        let v = per_watch.entry(*id).or_default();
                        if v.last() != Some(&pos) {
                            v.push(pos);
                        }
                    }
                }
                prefix_end = if end == 0 {
                    None
                } else {
                    Some(
                        key[..end]
                            .iter()
                            .rposition(|b| *b == SEPARATOR)
                            .unwrap_or(0),
                    )
                };
            }
        }
        let mut gone = Vec::new();
        for (id, positions) in per_watch {
            let Some(w) = self.watchers.get_mut(&id) else {
                continue;
            };
            if w.lagging {
                continue;
            }
            let evs: Vec<&WatchEvent> = positions
                .iter()
                .map(|p| &events[*p])
                .filter(|e| e.index > w.sent)
                .collect();
            if evs.is_empty() {
                continue;
            }
            match push_events(self.group_id, w, &evs) {
                Pushed::Ok => {}
                Pushed::Full => {
                    debug!(
                        group = self.group_id,
                        watch = w.watch_id,
                        "watch push queue full; serving the watch from the history"
                    );
                    w.lagging = true;
                    self.lagging.push(id);
                }
                Pushed::Gone => gone.push(id),
            }
        }
        for id in gone {
            self.remove(id);
        }
    }

    /// Sends the history after `w.sent` to a lagging watch, within `budget`
    /// scanned events. Returns true while the watch is still lagging.
    fn catch_up(&mut self, id: WatchKey, sm: &KvStateMachine, budget: &mut usize) -> bool {
        let Some(w) = self.watchers.get_mut(&id) else {
            return false;
        };
        match catch_up_watcher(self.group_id, w, sm, budget) {
            Pushed::Ok => false,
            Pushed::Full => true,
            Pushed::Gone => {
                self.remove(id);
                false
            }
        }
    }

    /// Periodic work, called on every group tick: catch up lagging watches,
    /// heartbeat idle ones, drop the watches of closed connections.
    pub(crate) fn tick(&mut self, sm: &KvStateMachine) {
        if self.watchers.is_empty() {
            return;
        }
        let now = Instant::now();
        if !self.lagging.is_empty() && now.duration_since(self.last_catch_up) >= CATCH_UP_INTERVAL {
            self.last_catch_up = now;
            let mut budget = CATCH_UP_BUDGET;
            let ids = std::mem::take(&mut self.lagging);
            for id in ids {
                if self.catch_up(id, sm, &mut budget) {
                    self.lagging.push(id);
                }
            }
        }
        if now.duration_since(self.last_sweep) < SWEEP_INTERVAL {
            return;
        }
        self.last_sweep = now;
        let applied = sm.applied_index();
        let now_ms = mono_ms();
        let heartbeat_ms = self.heartbeat.as_millis() as u64;
        let mut gone = Vec::new();
        for (id, w) in &mut self.watchers {
            if w.conn.is_closed() {
                gone.push(*id);
                continue;
            }
            if w.lagging || now_ms.saturating_sub(w.last_push_ms) < heartbeat_ms {
                continue;
            }
            let progress = w.sent.max(applied);
            let body = encode_push(
                self.group_id,
                w.watch_id,
                WatchPushKind::Heartbeat,
                progress,
                &[],
                0,
                "",
            );
            match push_raw(w, &body) {
                Pushed::Ok => w.sent = progress,
                // A full queue is retried at the next sweep.
                Pushed::Full => {}
                Pushed::Gone => gone.push(*id),
            }
        }
        for id in gone {
            debug!(
                group = self.group_id,
                "watch of a closed connection removed"
            );
            self.remove(id);
        }
    }

    /// The state machine was replaced by a snapshot (restored from `applied`
    /// before): live watches had every event up to `applied_before`; all of
    /// them now resume from the new history, which starts at the snapshot.
    pub(crate) fn on_restore(&mut self, applied_before: u64) {
        self.pending.clear();
        for (id, w) in &mut self.watchers {
            if !w.lagging {
                w.sent = w.sent.max(applied_before);
                w.lagging = true;
                self.lagging.push(*id);
            }
        }
    }

    /// Tells every watch it is dropped (the group stops) and forgets them all.
    pub(crate) fn cancel_all(&mut self, why: &str) {
        for w in self.watchers.values_mut() {
            let body = encode_push(
                self.group_id,
                w.watch_id,
                WatchPushKind::Cancelled,
                w.sent,
                &[],
                0,
                why,
            );
            let _ = push_raw(w, &body);
        }
        self.watchers.clear();
        self.by_key.clear();
        self.lagging.clear();
        self.pending.clear();
    }
}

/// Serves a lagging watch from the history: `Ok` once it is live again,
/// `Full` while it still lags (queue full or budget spent), `Gone` when its
/// connection closed.
fn catch_up_watcher(
    group_id: u32,
    w: &mut Watcher,
    sm: &KvStateMachine,
    budget: &mut usize,
) -> Pushed {
    let applied = sm.applied_index();
    loop {
        if *budget == 0 {
            return Pushed::Full;
        }
        let batch = match sm.events_after(w.sent, CATCH_UP_SCAN.min(*budget)) {
            Ok(b) => b,
            Err(e) => {
                let body = encode_push(
                    group_id,
                    w.watch_id,
                    WatchPushKind::Compacted,
                    applied,
                    &[],
                    sm.history_floor(),
                    &e.to_string(),
                );
                let r = push_raw(w, &body);
                if let Pushed::Ok = r {
                    w.sent = w.sent.max(applied);
                    w.lagging = false;
                }
                return r;
            }
        };
        let Some(last) = batch.last().map(|e| e.index) else {
            w.sent = w.sent.max(applied);
            w.lagging = false;
            return Pushed::Ok;
        };
        *budget = budget.saturating_sub(batch.len());
        let evs: Vec<&WatchEvent> = batch.iter().filter(|e| w.covers(&e.key)).collect();
        if !evs.is_empty() {
            match push_events(group_id, w, &evs) {
                Pushed::Ok => {}
                other => return other,
            }
        }
        w.sent = w.sent.max(last);
    }
}

/// Pushes `evs` (ordered, above `w.sent`) in frames of whole indexes and
/// advances `w.sent` past what was queued. On a full queue, `w.sent` stays
/// below the first index that did not fit.
fn push_events(group_id: u32, w: &mut Watcher, evs: &[&WatchEvent]) -> Pushed {
    let mut start = 0;
    while start < evs.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < evs.len() {
            let e = evs[end];
            if bytes >= MAX_PUSH_EVENT_BYTES && e.index != evs[end - 1].index {
                break;
            }
            bytes += e.key.len() + e.value.len() + 48;
            end += 1;
        }
        let chunk = &evs[start..end];
        let last = chunk[chunk.len() - 1].index;
        let body = encode_push(
            group_id,
            w.watch_id,
            WatchPushKind::Events,
            last,
            chunk,
            0,
            "",
        );
        match push_raw(w, &body) {
            Pushed::Ok => w.sent = w.sent.max(last),
            Pushed::Full => {
                // Everything before this frame's first index was delivered.
                w.sent = w.sent.max(chunk[0].index - 1);
                return Pushed::Full;
            }
            Pushed::Gone => return Pushed::Gone,
        }
        start = end;
    }
    Pushed::Ok
}

fn push_raw(w: &mut Watcher, body: &[u8]) -> Pushed {
    match w.conn.push(CMD_KV_WATCH_PUSH, body) {
        Ok(()) => {
            w.last_push_ms = mono_ms();
            Pushed::Ok
        }
        Err(RpcError::FlowControl(_)) => Pushed::Full,
        Err(_) => Pushed::Gone,
    }
}
