//! DtKV watches: the wire bodies of the watch commands and pushes, and the
//! per-group registry ([`WatchHub`]) that the group task owns.
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
use dongting_kv::{KvStateMachine, NodeState, SEPARATOR, WatchEvent};
use dongting_net::{ConnHandle, ConnHold, RpcError, Status};
use flatbuffers::FlatBufferBuilder;
use tracing::debug;

use crate::clock::mono_ms;
use crate::codec::BodyError;
use crate::generated::watch_generated::dongting::server::fb as wfb;

/// Service port: register a watch (REQ `WatchRequest`, answer `WatchResponse`).
pub const CMD_KV_WATCH: u16 = 130;
/// Service port: remove a watch (REQ `UnwatchRequest`, empty answer).
pub const CMD_KV_UNWATCH: u16 = 131;
/// Service port, server to client: the events, heartbeats and notices of a
/// registered watch (PUSH `WatchPush`).
pub const CMD_KV_WATCH_PUSH: u16 = 132;

/// Most keys one watch may name.
pub const MAX_KEYS_PER_WATCH: usize = 1024;
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

/// A watch registration as sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRequest {
    /// The group.
    pub group_id: u32,
    /// Client-chosen id, unique among the client's watches on the connection.
    pub watch_id: u64,
    /// Watched keys; each covers itself and every key under it. The empty key
    /// is the root (the whole tree).
    pub keys: Vec<Bytes>,
    /// Events with a raft index above this one are sent; 0 means from the
    /// serving node's applied index.
    pub from_index: u64,
}

impl WatchRequest {
    /// Encodes the request. Cost: one copy of every key.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(
            64 + self.keys.iter().map(|k| k.len() + 16).sum::<usize>(),
        );
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                let key = fbb.create_vector(k);
                wfb::WatchKey::create(&mut fbb, &wfb::WatchKeyArgs { key: Some(key) })
            })
            .collect();
        let keys = fbb.create_vector(&keys);
        let root = wfb::WatchRequest::create(
            &mut fbb,
            &wfb::WatchRequestArgs {
                group_id: self.group_id,
                watch_id: self.watch_id,
                keys: Some(keys),
                from_index: self.from_index,
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes a request; keys are zero-copy slices of `body`.
    pub fn decode(body: &Bytes) -> Result<WatchRequest, BodyError> {
        let t = flatbuffers::root::<wfb::WatchRequest<'_>>(body)
            .map_err(|e| BodyError::new("watch request", e))?;
        let keys = t
            .keys()
            .map(|v| {
                v.iter()
                    .map(|k| {
                        k.key()
                            .map(|b| slice_of(body, b.bytes()))
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(WatchRequest {
            group_id: t.group_id(),
            watch_id: t.watch_id(),
            keys,
            from_index: t.from_index(),
        })
    }
}

/// The answer to a watch registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchResponse {
    /// The watch sends events with an index above this one.
    pub start_index: u64,
    /// The serving node's applied index at registration.
    pub applied_index: u64,
    /// The node's `watch_heartbeat_ms`.
    pub heartbeat_ms: u64,
    /// The connection already had this watch id; nothing changed.
    pub existing: bool,
}

impl WatchResponse {
    /// Encodes the answer.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(64);
        let root = wfb::WatchResponse::create(
            &mut fbb,
            &wfb::WatchResponseArgs {
                start_index: self.start_index,
                applied_index: self.applied_index,
                heartbeat_ms: self.heartbeat_ms,
                existing: self.existing,
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes an answer.
    pub fn decode(body: &[u8]) -> Result<WatchResponse, BodyError> {
        let t = flatbuffers::root::<wfb::WatchResponse<'_>>(body)
            .map_err(|e| BodyError::new("watch response", e))?;
        Ok(WatchResponse {
            start_index: t.start_index(),
            applied_index: t.applied_index(),
            heartbeat_ms: t.heartbeat_ms(),
            existing: t.existing(),
        })
    }
}

/// Removes a watch: `(group_id, watch_id)`.
pub fn encode_unwatch(group_id: u32, watch_id: u64) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(32);
    let root =
        wfb::UnwatchRequest::create(&mut fbb, &wfb::UnwatchRequestArgs { group_id, watch_id });
    fbb.finish_minimal(root);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Decodes an unwatch request into `(group_id, watch_id)`.
pub fn decode_unwatch(body: &[u8]) -> Result<(u32, u64), BodyError> {
    let t = flatbuffers::root::<wfb::UnwatchRequest<'_>>(body)
        .map_err(|e| BodyError::new("unwatch request", e))?;
    Ok((t.group_id(), t.watch_id()))
}

/// What a watch push carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchPushKind {
    /// Events of whole raft indexes, in index order.
    Events,
    /// No events; the watch is complete up to `progress_index`.
    Heartbeat,
    /// Events the watcher had not received are gone from the history: it must
    /// re-read its keys. Events continue after `progress_index`.
    Compacted,
    /// The server dropped the watch; register again from the last index seen.
    Cancelled,
}

impl WatchPushKind {
    fn to_fb(self) -> wfb::WatchPushKind {
        match self {
            WatchPushKind::Events => wfb::WatchPushKind::Events,
            WatchPushKind::Heartbeat => wfb::WatchPushKind::Heartbeat,
            WatchPushKind::Compacted => wfb::WatchPushKind::Compacted,
            WatchPushKind::Cancelled => wfb::WatchPushKind::Cancelled,
        }
    }
}

/// A decoded watch push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPush {
    /// The group.
    pub group_id: u32,
    /// The client's watch id.
    pub watch_id: u64,
    /// What the push carries.
    pub kind: WatchPushKind,
    /// The watch has every event with an index at or below this one.
    pub progress_index: u64,
    /// Events (kind `Events`), ordered by index; keys and values are
    /// zero-copy slices of the frame.
    pub events: Vec<WatchEvent>,
    /// `Compacted`: the lowest index the history can resume after.
    pub history_floor: u64,
    /// `Compacted` and `Cancelled`: why.
    pub message: String,
}

fn state_code(s: NodeState) -> u8 {
    match s {
        NodeState::Absent => 0,
        NodeState::Value => 1,
        NodeState::Dir => 2,
        NodeState::Lock => 3,
    }
}

/// Encodes a push. Cost: one copy of every key and value into the frame.
pub fn encode_push(
    group_id: u32,
    watch_id: u64,
    kind: WatchPushKind,
    progress_index: u64,
    events: &[&WatchEvent],
    history_floor: u64,
    message: &str,
) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| e.key.len() + e.value.len() + 48)
        .sum();
    let mut fbb = FlatBufferBuilder::with_capacity(size + 96 + message.len());
    let evs: Vec<_> = events
        .iter()
        .map(|e| {
            let key = fbb.create_vector(&e.key[..]);
            let value = if e.value.is_empty() {
                None
            } else {
                Some(fbb.create_vector(&e.value[..]))
            };
            wfb::WatchEventFb::create(
                &mut fbb,
                &wfb::WatchEventFbArgs {
                    index: e.index,
                    key: Some(key),
                    state: state_code(e.state),
                    value,
                },
            )
        })
        .collect();
    let evs = if evs.is_empty() {
        None
    } else {
        Some(fbb.create_vector(&evs))
    };
    let message = if message.is_empty() {
        None
    } else {
        Some(fbb.create_string(message))
    };
    let root = wfb::WatchPush::create(
        &mut fbb,
        &wfb::WatchPushArgs {
            group_id,
            watch_id,
            kind: kind.to_fb(),
            progress_index,
            events: evs,
            history_floor,
            message,
        },
    );
    fbb.finish_minimal(root);
    let (buf, head) = fbb.collapse();
    if head == 0 { buf } else { buf[head..].to_vec() }
}

/// Verifies and decodes a push; keys and values are slices of `body`.
/// Refuses unknown kinds and states, and events out of index order.
pub fn decode_push(body: &Bytes) -> Result<WatchPush, BodyError> {
    let t = flatbuffers::root::<wfb::WatchPush<'_>>(body)
        .map_err(|e| BodyError::new("watch push", e))?;
    let kind = match t.kind() {
        wfb::WatchPushKind::Events => WatchPushKind::Events,
        wfb::WatchPushKind::Heartbeat => WatchPushKind::Heartbeat,
        wfb::WatchPushKind::Compacted => WatchPushKind::Compacted,
        wfb::WatchPushKind::Cancelled => WatchPushKind::Cancelled,
        other => {
            return Err(BodyError::new(
                "watch push",
                format!("unknown kind {}", other.0),
            ));
        }
    };
    let mut events = Vec::new();
    let mut last = 0;
    if let Some(v) = t.events() {
        events.reserve(v.len());
        for e in v.iter() {
            let state = match e.state() {
                0 => NodeState::Absent,
                1 => NodeState::Value,
                2 => NodeState::Dir,
                3 => NodeState::Lock,
                s => {
                    return Err(BodyError::new(
                        "watch push",
                        format!("unknown node state {s}"),
                    ));
                }
            };
            if e.index() < last {
                return Err(BodyError::new(
                    "watch push",
                    format!("event index {} after {last}", e.index()),
                ));
            }
            last = e.index();
            events.push(WatchEvent {
                index: e.index(),
                key: e
                    .key()
                    .map(|b| slice_of(body, b.bytes()))
                    .unwrap_or_default(),
                state,
                value: e
                    .value()
                    .map(|b| slice_of(body, b.bytes()))
                    .unwrap_or_default(),
            });
        }
    }
    if last > t.progress_index() {
        return Err(BodyError::new(
            "watch push",
            format!(
                "event index {last} above the progress index {}",
                t.progress_index()
            ),
        ));
    }
    Ok(WatchPush {
        group_id: t.group_id(),
        watch_id: t.watch_id(),
        kind,
        progress_index: t.progress_index(),
        events,
        history_floor: t.history_floor(),
        message: t.message().unwrap_or_default().to_string(),
    })
}

/// `part` (a slice inside `whole`) as a zero-copy `Bytes`.
fn slice_of(whole: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        return Bytes::new();
    }
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    whole.slice(start..start + part.len())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, key: &str, value: &str) -> WatchEvent {
        WatchEvent {
            index,
            key: Bytes::copy_from_slice(key.as_bytes()),
            state: if value.is_empty() {
                NodeState::Absent
            } else {
                NodeState::Value
            },
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn bodies_round_trip() {
        let req = WatchRequest {
            group_id: 3,
            watch_id: 99,
            keys: vec![Bytes::from_static(b"a.b"), Bytes::new()],
            from_index: 17,
        };
        assert_eq!(WatchRequest::decode(&req.encode()).expect("decode"), req);
        let resp = WatchResponse {
            start_index: 17,
            applied_index: 20,
            heartbeat_ms: 1000,
            existing: true,
        };
        assert_eq!(WatchResponse::decode(&resp.encode()).expect("decode"), resp);
        assert_eq!(
            decode_unwatch(&encode_unwatch(4, 5)).expect("decode"),
            (4, 5)
        );
        let a = ev(5, "a.b", "v1");
        let b = ev(6, "a.b.c", "");
        let body = Bytes::from(encode_push(
            3,
            99,
            WatchPushKind::Events,
            6,
            &[&a, &b],
            0,
            "",
        ));
        let p = decode_push(&body).expect("decode");
        assert_eq!(p.kind, WatchPushKind::Events);
        assert_eq!(p.events, vec![a.clone(), b.clone()]);
        assert_eq!((p.group_id, p.watch_id, p.progress_index), (3, 99, 6));
        let c = Bytes::from(encode_push(
            3,
            99,
            WatchPushKind::Compacted,
            40,
            &[],
            30,
            "gone",
        ));
        let p = decode_push(&c).expect("decode");
        assert_eq!(
            (p.kind, p.history_floor, p.message.as_str()),
            (WatchPushKind::Compacted, 30, "gone")
        );
    }

    #[test]
    fn pushes_that_break_the_rules_are_refused() {
        assert!(decode_push(&Bytes::from_static(b"not a push")).is_err());
        let a = ev(7, "k", "v");
        let b = ev(5, "k", "w");
        // Out of order.
        let body = Bytes::from(encode_push(
            1,
            1,
            WatchPushKind::Events,
            7,
            &[&a, &b],
            0,
            "",
        ));
        assert!(decode_push(&body).is_err());
        // An event above the progress index.
        let body = Bytes::from(encode_push(1, 1, WatchPushKind::Events, 6, &[&a], 0, ""));
        assert!(decode_push(&body).is_err());
    }
}
