//! DtKV request metrics and peer link metrics: what they record on the hot
//! paths and how `GET /metrics` renders them.
//!
//! - Requests: every answer of the service port's DtKV commands is counted
//!   by operation and result code, and the time from the request's arrival
//!   at the node to its answer goes into a histogram by operation. The
//!   recording is fixed arrays of relaxed `AtomicU64` indexed by operation
//!   and code: per request one `Instant::now()` at arrival, one at the
//!   answer, three relaxed adds and a reference-count bump and drop. Built
//!   only with the `metrics` feature; without it [`KvResponder`] is the bare
//!   [`Responder`] and the request metrics are absent from `/metrics`.
//! - Peers: bytes of raft frames sent to and received from each peer (one
//!   relaxed add a batch or a frame), and the round-trip time of a ping on
//!   the checked link, sent by the peer task every
//!   [`PEER_RTT_PROBE_INTERVAL`] while the link is up (never per raft frame).

// Without the `metrics` feature the request tables are built but never read.
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
#[cfg(feature = "metrics")]
use std::time::Instant;

use dongting_kv::{KvError, Op, ReadRequest, ReadResponse, ReadResult, WriteResult};
use dongting_net::proto::LeaderHint;
use dongting_net::{ConnHandle, Responder, Status};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::shared::NodeShared;

/// How often the peer task times a ping on a checked link.
pub(crate) const PEER_RTT_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Upper bounds (ns) of the request duration buckets: 100 µs to 10 s.
const REQUEST_BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Upper bounds (ns) of the peer round-trip buckets: 50 µs to 5 s.
const RTT_BOUNDS_NS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// The operations of the service port's DtKV commands, by index: the label
/// `op`. `invalid` is a request whose envelope or body did not decode.
const OP_NAMES: [&str; 21] = [
    "invalid",
    "put",
    "remove",
    "mkdir",
    "batch_put",
    "batch_remove",
    "compare_and_set",
    "put_temp",
    "make_temp_dir",
    "update_ttl",
    "try_lock",
    "unlock",
    "update_lease",
    "expire",
    "get",
    "batch_get",
    "list",
    "list_page",
    "lock_info",
    "watch",
    "unwatch",
];
const N_OPS: usize = OP_NAMES.len();

/// One DtKV operation, as an index into the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KvOp(u8);

impl KvOp {
    /// A request whose envelope or body did not decode.
    pub(crate) const INVALID: KvOp = KvOp(0);
    const PUT: KvOp = KvOp(1);
    const GET: KvOp = KvOp(14);
    /// A watch registration.
    pub(crate) const WATCH: KvOp = KvOp(19);
    /// A watch removal.
    pub(crate) const UNWATCH: KvOp = KvOp(20);

    /// The operation of a write command (names as [`Op::name`]).
    pub(crate) fn of_write(op: &Op) -> KvOp {
        KvOp(match op {
            Op::Put { .. } => 1,
            Op::Remove { .. } => 2,
            Op::Mkdir { .. } => 3,
            Op::BatchPut { .. } => 4,
            Op::BatchRemove { .. } => 5,
            Op::CompareAndSet { .. } => 6,
            Op::PutTemp { .. } => 7,
            Op::MakeTempDir { .. } => 8,
            Op::UpdateTtl { .. } => 9,
            Op::TryLock { .. } => 10,
            Op::Unlock { .. } => 11,
            Op::UpdateLease { .. } => 12,
            Op::Expire { .. } => 13,
        })
    }

    /// The operation of a read request.
    pub(crate) fn of_read(r: &ReadRequest) -> KvOp {
        KvOp(match r {
            ReadRequest::Get(_) => 14,
            ReadRequest::BatchGet(_) => 15,
            ReadRequest::List(_) => 16,
            ReadRequest::ListPage(..) => 17,
            ReadRequest::LockInfo(_) => 18,
        })
    }

    fn name(self) -> &'static str {
        OP_NAMES[usize::from(self.0)]
    }
}

/// Result codes, by index (the label `code`): 0 is `OK`, then the RPC
/// statuses of [`Status::CODES`] by number, then the DtKV codes of
/// [`KvError::CODES`] in table order, then `OTHER` (a status this build
/// does not name).
const N_STATUS: usize = Status::CODES.len();
const N_CODES: usize = N_STATUS + KvError::CODES.len() + 1;
const CODE_OTHER: usize = N_CODES - 1;
const CODE_OK: usize = 0;

/// DtKV code -> code index; codes are below 256 ([`KV_CODE_LIMIT`]).
const KV_CODE_LIMIT: usize = 256;
const KV_CODE_INDEX: [u8; KV_CODE_LIMIT] = {
    // The status numbers are their own indexes: checked here, at build time.
    let mut i = 0;
    while i < N_STATUS {
        assert!(Status::CODES[i].status.0 as usize == i);
        i += 1;
    }
    assert!(N_CODES < 256);
    let mut t = [CODE_OTHER as u8; KV_CODE_LIMIT];
    let mut k = 0;
    while k < KvError::CODES.len() {
        let code = KvError::CODES[k].code as usize;
        assert!(code < KV_CODE_LIMIT);
        t[code] = (N_STATUS + k) as u8;
        k += 1;
    }
    t
};

fn status_code_index(s: Status) -> usize {
    let n = s.0 as usize;
    if n < N_STATUS { n } else { CODE_OTHER }
}

fn kv_code_index(e: &KvError) -> usize {
    KV_CODE_INDEX
        .get(usize::from(e.code()))
        .map_or(CODE_OTHER, |&i| usize::from(i))
}

fn code_name(i: usize) -> &'static str {
    match i {
        CODE_OK => "OK",
        _ if i < N_STATUS => Status::CODES[i].name,
        _ if i < CODE_OTHER => KvError::CODES[i - N_STATUS].name,
        _ => "OTHER",
    }
}

/// A histogram of durations over fixed bucket bounds, recorded with relaxed
/// atomics: one add to a bucket, one to the sum.
pub(crate) struct Histogram {
    bounds_ns: &'static [u64; 16],
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: [AtomicU64; 17],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds_ns: &'static [u64; 16]) -> Histogram {
        Histogram {
            bounds_ns,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records `d`. Cost: a scan of 16 bounds and two relaxed adds.
    pub(crate) fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self
            .bounds_ns
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(self.bounds_ns.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // prometheus-client writes the bound f64::MAX as +Inf.
                let le = self.bounds_ns.get(i).map_or(f64::MAX, |&b| b as f64 / 1e9);
                (le, c.load(Relaxed))
            })
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|b| b.1).sum(),
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

/// A histogram as read at a scrape; `buckets` holds each bucket's own count.
#[derive(Debug, Clone)]
struct HistogramSnapshot {
    count: u64,
    sum_seconds: f64,
    buckets: Vec<(f64, u64)>,
}

/// One histogram family: a snapshot a label set, encoded under one name.
#[derive(Debug)]
struct HistogramFamily<L>(Vec<(L, HistogramSnapshot)>);

impl<L> TypedMetric for HistogramFamily<L> {
    const TYPE: MetricType = MetricType::Histogram;
}

impl<L: EncodeLabelSet + std::fmt::Debug> EncodeMetric for HistogramFamily<L> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        for (labels, h) in &self.0 {
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The request counters of one node: answers by operation and code, and
/// durations by operation.
pub(crate) struct KvMetrics {
    #[cfg(feature = "metrics")]
    answers: [[AtomicU64; N_CODES]; N_OPS],
    #[cfg(feature = "metrics")]
    durations: [Histogram; N_OPS],
}

impl KvMetrics {
    pub(crate) fn new() -> KvMetrics {
        KvMetrics {
            #[cfg(feature = "metrics")]
            answers: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            #[cfg(feature = "metrics")]
            durations: std::array::from_fn(|_| Histogram::new(&REQUEST_BOUNDS_NS)),
        }
    }

    #[cfg(feature = "metrics")]
    fn record(&self, op: KvOp, code: usize, took: Duration) {
        let op = usize::from(op.0);
        self.answers[op][code].fetch_add(1, Relaxed);
        self.durations[op].observe(took);
    }
}

/// When a request arrived at the node (nothing without the `metrics` feature).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival(#[cfg(feature = "metrics")] Instant);

impl Arrival {
    /// When `req`'s frame began to arrive, as the connection read it: no
    /// clock read of its own.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn of(req: &dongting_net::Request) -> Arrival {
        Arrival(
            #[cfg(feature = "metrics")]
            req.arrived(),
        )
    }
}

/// Records one answer of a request; an answer not recorded when this drops
/// (the responder was dropped, which answers SYS_ERROR) is recorded then.
#[cfg(feature = "metrics")]
struct Mark {
    metrics: Option<std::sync::Arc<KvMetrics>>,
    op: KvOp,
    arrived: Instant,
}

#[cfg(feature = "metrics")]
impl Mark {
    fn record(&mut self, code: usize) {
        if let Some(m) = self.metrics.take() {
            m.record(self.op, code, self.arrived.elapsed());
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Mark {
    fn drop(&mut self) {
        self.record(usize::try_from(Status::SYS_ERROR.0).unwrap_or(CODE_OTHER));
    }
}

/// The [`Responder`] of a DtKV request, which records the answer in the
/// node's request metrics (see the module documentation for the cost). An
/// answer past the client's deadline, which the responder does not send,
/// is counted with the code it would have carried.
pub(crate) struct KvResponder {
    responder: Responder,
    #[cfg(feature = "metrics")]
    mark: Mark,
}

impl std::fmt::Debug for KvResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.responder.fmt(f)
    }
}

impl KvResponder {
    /// Wraps the responder of a request of operation `op` that arrived at
    /// `arrived`, to be counted in `metrics`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(
        responder: Responder,
        metrics: &std::sync::Arc<KvMetrics>,
        op: KvOp,
        arrived: Arrival,
    ) -> KvResponder {
        KvResponder {
            responder,
            #[cfg(feature = "metrics")]
            mark: Mark {
                metrics: Some(metrics.clone()),
                op,
                arrived: arrived.0,
            },
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn answered(&mut self, code: usize) {
        #[cfg(feature = "metrics")]
        self.mark.record(code);
    }

    /// See [`Responder::conn`].
    pub(crate) fn conn(&self) -> Option<ConnHandle> {
        self.responder.conn()
    }

    /// Answers SUCCESS with `body`, counted as `OK`.
    pub(crate) fn ok(mut self, body: &[u8]) {
        self.answered(CODE_OK);
        self.responder.ok(body);
    }

    /// Answers a write with its result, counted by the result's DtKV code.
    pub(crate) fn ok_write(mut self, r: &WriteResult) {
        self.answered(match &r.outcome {
            Ok(_) => CODE_OK,
            Err(e) => kv_code_index(e),
        });
        dongting_kv::with_write_result(r, |d| self.responder.ok(d));
    }

    /// Answers a read with its result, counted by the result's DtKV code.
    pub(crate) fn ok_read(
        mut self,
        req: &ReadRequest,
        r: &ReadResult<Result<ReadResponse, KvError>>,
    ) {
        self.answered(match &r.data {
            Ok(_) => CODE_OK,
            Err(e) => kv_code_index(e),
        });
        dongting_kv::with_read_result(req, r, |d| self.responder.ok(d));
    }

    /// See [`Responder::error`].
    pub(crate) fn error(mut self, status: Status, message: &str) {
        self.answered(status_code_index(status));
        self.responder.error(status, message);
    }

    /// See [`Responder::not_leader`].
    pub(crate) fn not_leader(mut self, message: &str, leader: Option<&LeaderHint>) {
        self.answered(status_code_index(Status::NOT_RAFT_LEADER));
        self.responder.not_leader(message, leader);
    }

    /// See [`Responder::reject_malformed`]; counted as CLIENT_ERROR.
    pub(crate) fn reject_malformed(mut self, reason: &str) {
        self.answered(status_code_index(Status::CLIENT_ERROR));
        self.responder.reject_malformed(reason);
    }
}

/// The link metrics of one peer.
pub(crate) struct PeerMetrics {
    /// Bytes of raft frame bodies handed to the link to the peer.
    pub(crate) sent_bytes: AtomicU64,
    /// Bytes of raft frame bodies received from the peer on checked links.
    pub(crate) received_bytes: AtomicU64,
    /// Round-trip times of pings on the checked link.
    pub(crate) rtt: Histogram,
}

impl PeerMetrics {
    pub(crate) fn new() -> PeerMetrics {
        PeerMetrics {
            sent_bytes: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            rtt: Histogram::new(&RTT_BOUNDS_NS),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpCodeLabel {
    op: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: u32,
}

/// Registers the request metrics (with the `metrics` feature; puts and gets
/// always, other operations and codes once answered) and the peer link
/// metrics of `shared`.
pub(crate) fn register(reg: &mut Registry, shared: &NodeShared) {
    #[cfg(feature = "metrics")]
    register_requests(reg, &shared.kv_metrics);
    let mut peers: Vec<_> = crate::shared::read(&shared.peers)
        .values()
        .cloned()
        .collect();
    peers.sort_by_key(|p| p.id);
    let sent = Family::<PeerLabel, Counter>::default();
    let received = Family::<PeerLabel, Counter>::default();
    let mut rtt = Vec::with_capacity(peers.len());
    for p in peers {
        let l = PeerLabel { peer: p.id };
        sent.get_or_create(&l)
            .inc_by(p.metrics.sent_bytes.load(Relaxed));
        received
            .get_or_create(&l)
            .inc_by(p.metrics.received_bytes.load(Relaxed));
        rtt.push((l, p.metrics.rtt.snapshot()));
    }
    reg.register(
        "peer_sent_bytes",
        "Bytes of raft frame bodies sent to the peer",
        sent,
    );
    reg.register(
        "peer_received_bytes",
        "Bytes of raft frame bodies received from the peer",
        received,
    );
    reg.register(
        "peer_rtt_seconds",
        "Round-trip times of pings on the checked link to the peer",
        HistogramFamily(rtt),
    );
}

#[cfg(feature = "metrics")]
fn register_requests(reg: &mut Registry, m: &KvMetrics) {
    let answers = Family::<OpCodeLabel, Counter>::default();
    let mut durations = Vec::new();
    for op in 0..N_OPS {
        let name = KvOp(op as u8).name();
        // Puts and gets are shown from the start (rates over a fresh node
        // need a zero to start from); other series from their first answer.
        let always = op == usize::from(KvOp::PUT.0) || op == usize::from(KvOp::GET.0);
        for (code, n) in m.answers[op].iter().enumerate() {
            let n = n.load(Relaxed);
            if n > 0 || (always && code == CODE_OK) {
                answers
                    .get_or_create(&OpCodeLabel {
                        op: name,
                        code: code_name(code),
                    })
                    .inc_by(n);
            }
        }
        let h = m.durations[op].snapshot();
        if h.count > 0 || always {
            durations.push((OpLabel { op: name }, h));
        }
    }
    reg.register(
        "kv_requests",
        "DtKV requests answered by this node, by operation and result code",
        answers,
    );
    reg.register(
        "kv_request_duration_seconds",
        "Time from a DtKV request's arrival at this node to its answer, by operation",
        HistogramFamily(durations),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_index_and_a_unique_name() {
        let mut names = std::collections::HashSet::new();
        for i in 0..N_CODES {
            assert!(names.insert(code_name(i)), "{} twice", code_name(i));
        }
        for (k, c) in KvError::CODES.iter().enumerate() {
            let e = KvError::from_code(c.code, "");
            assert_eq!(code_name(kv_code_index(&e)), c.name);
            assert_eq!(kv_code_index(&e), N_STATUS + k);
        }
        for s in Status::CODES.iter().filter(|s| !s.status.is_success()) {
            assert_eq!(code_name(status_code_index(s.status)), s.name);
        }
        assert_eq!(code_name(status_code_index(Status(999))), "OTHER");
        assert_eq!(code_name(CODE_OK), "OK");
    }

    #[test]
    fn every_operation_has_its_name() {
        let k = || bytes::Bytes::from_static(b"k");
        let ops = [
            Op::Put {
                key: k(),
                value: k(),
            },
            Op::Remove { key: k() },
            Op::Mkdir { key: k() },
            Op::BatchPut { entries: vec![] },
            Op::BatchRemove { keys: vec![] },
            Op::CompareAndSet {
                key: k(),
                expected: k(),
                new_value: k(),
            },
            Op::PutTemp {
                key: k(),
                value: k(),
                ttl_ms: 1,
            },
            Op::MakeTempDir {
                key: k(),
                ttl_ms: 1,
            },
            Op::UpdateTtl {
                key: k(),
                ttl_ms: 1,
            },
            Op::TryLock {
                key: k(),
                lease_ms: 1,
                wait_timeout_ms: 0,
            },
            Op::Unlock { key: k() },
            Op::UpdateLease {
                key: k(),
                lease_ms: 1,
            },
            Op::Expire {
                key: k(),
                expected_version: 1,
            },
        ];
        for op in &ops {
            assert_eq!(KvOp::of_write(op).name(), op.name());
        }
        assert_eq!(KvOp::of_read(&ReadRequest::Get(k())).name(), "get");
        assert_eq!(
            KvOp::of_read(&ReadRequest::LockInfo(k())).name(),
            "lock_info"
        );
        assert_eq!(KvOp::WATCH.name(), "watch");
        assert_eq!(KvOp::UNWATCH.name(), "unwatch");
        assert_eq!(KvOp::INVALID.name(), "invalid");
        assert_eq!(KvOp::PUT.name(), "put");
        assert_eq!(KvOp::GET.name(), "get");
    }

    #[test]
    fn a_histogram_puts_each_duration_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new(&REQUEST_BOUNDS_NS);
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(11));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.00025, 1));
        assert_eq!(s.buckets[16], (f64::MAX, 1));
        assert!((s.sum_seconds - 11.000201).abs() < 1e-9);
    }
}
