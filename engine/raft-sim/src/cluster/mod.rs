//! The simulated cluster and its driver: the nodes, their clocks and simulated
//! state machines, virtual time, and the chaos phase step by step.

mod check;
mod disk;
mod faults;
mod net;

use std::collections::{HashMap, VecDeque};
use std::fmt;

use bytes::Bytes;
use dongting_raft::{Config, Entry, MemStorage, Membership, Mutation, NodeId, RawNode, Ready};

use crate::{
    DRIFT_MARGIN_MS, ELECT_TIMEOUT_MS, HEARTBEAT_MS, MAX_CLOCK_PPM, NODE_IDS, Rng, SimOptions,
    SimStats, Violation,
};
use net::InFlight;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Applied {
    term: u64,
    kind: u8,
    hash: u64,
}

struct Hist {
    a: Applied,
    /// A term at or above the term in which the entry was committed.
    commit_bound: u64,
}

struct Node {
    id: NodeId,
    raw: Option<RawNode<MemStorage>>,
    down: Option<MemStorage>,
    restart_at_ms: u64,
    disk: VecDeque<(u64, Ready)>,
    /// Upper bound of this node's write latency (raised by "slow disk" faults).
    disk_max_ms: u64,
    sm: Vec<Applied>,
    clock_ppm: i64,
    last_term: u64,
    last_commit: u64,
    reads: HashMap<u64, u64>,
}

fn local_ms(now: u64, ppm: i64) -> u64 {
    (now as i64 + now as i64 * ppm / 1_000_000) as u64
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn applied_of(e: &Entry) -> Applied {
    Applied {
        term: e.term,
        kind: e.kind.code(),
        hash: fnv(&e.data),
    }
}

fn encode_sm(sm: &[Applied]) -> Bytes {
    let mut v = Vec::with_capacity(sm.len() * 17);
    for a in sm {
        v.extend_from_slice(&a.term.to_le_bytes());
        v.push(a.kind);
        v.extend_from_slice(&a.hash.to_le_bytes());
    }
    Bytes::from(v)
}

fn decode_sm(data: &[u8]) -> Option<Vec<Applied>> {
    if !data.len().is_multiple_of(17) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 17);
    for c in data.chunks_exact(17) {
        let term = u64::from_le_bytes(c[0..8].try_into().ok()?);
        let hash = u64::from_le_bytes(c[9..17].try_into().ok()?);
        out.push(Applied {
            term,
            kind: c[8],
            hash,
        });
    }
    Some(out)
}

/// Per-seed limits, so that some seeds replicate one entry per message and
/// others batch.
#[derive(Debug, Clone, Copy)]
struct Profile {
    max_append_entries: usize,
    max_inflight_msgs: usize,
    /// Leaders crash, lose messages and come back much more often.
    storm: bool,
}

fn node_config(id: NodeId, seed: u64, mutation: Mutation, applied: u64, p: Profile) -> Config {
    let mut c = Config::new(id);
    c.elect_timeout_ms = ELECT_TIMEOUT_MS;
    c.heartbeat_interval_ms = HEARTBEAT_MS;
    c.lease_drift_margin_ms = DRIFT_MARGIN_MS;
    c.max_inflight_msgs = p.max_inflight_msgs;
    c.max_inflight_bytes = 4096;
    c.max_append_entries = p.max_append_entries;
    c.max_append_bytes = 512;
    c.max_apply_entries = 16;
    c.max_cached_entries = 32;
    c.snapshot_chunk_bytes = 256;
    c.max_held_proposals = 64;
    c.applied = applied;
    c.seed = seed.wrapping_mul(31).wrapping_add(id);
    c.mutation = mutation;
    c
}

type SimResult<T> = Result<T, String>;

/// One simulated cluster.
pub struct Sim {
    opts: SimOptions,
    rng: Rng,
    now_ms: u64,
    step: usize,
    nodes: Vec<Node>,
    net: Vec<InFlight>,
    net_seq: u64,
    /// `blocked[from][to]`: messages from `from` to `to` are lost.
    blocked: [[bool; 6]; 6],
    drop_permille: u64,
    dup_permille: u64,
    max_delay_ms: u64,
    leaders: HashMap<u64, NodeId>,
    history: Vec<Hist>,
    log_map: HashMap<(u64, u64), (u64, u8, Option<u64>)>,
    acked: HashMap<u64, u64>,
    max_acked_index: u64,
    next_prop: u64,
    next_ctx: u64,
    stats: SimStats,
    faults: bool,
    profile: Profile,
    /// A leader to isolate shortly after it started a transfer (storm seeds):
    /// the old leader must stop serving reads once the target can win.
    isolate_at: Option<(u64, NodeId)>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sim(seed {}, step {}, t={}ms)",
            self.opts.seed, self.step, self.now_ms
        )
    }
}

impl Sim {
    /// A cluster of [`NODE_IDS`]: members {1, 2, 3}, observer 4, node 5 outside
    /// the configuration until membership churn adds it.
    pub fn new(opts: SimOptions) -> SimResult<Sim> {
        let mut rng = Rng::new(opts.seed);
        let profile = Profile {
            max_append_entries: [2, 4, 8, 8][rng.below(4) as usize],
            max_inflight_msgs: [2, 4][rng.below(2) as usize],
            storm: rng.chance(250),
        };
        let boot = Membership::new(&[1, 2, 3], &[4]);
        let mut nodes = Vec::new();
        for id in NODE_IDS {
            let ppm = rng.below(2 * MAX_CLOCK_PPM as u64 + 1) as i64 - MAX_CLOCK_PPM;
            let cfg = node_config(id, opts.seed, opts.mutation, 0, profile);
            let raw = RawNode::new(cfg, MemStorage::new(boot.clone()), 0)
                .map_err(|e| format!("node {id} failed to start: {e}"))?;
            nodes.push(Node {
                id,
                raw: Some(raw),
                down: None,
                restart_at_ms: 0,
                disk: VecDeque::new(),
                disk_max_ms: 12,
                sm: Vec::new(),
                clock_ppm: ppm,
                last_term: 0,
                last_commit: 0,
                reads: HashMap::new(),
            });
        }
        Ok(Sim {
            opts,
            rng,
            now_ms: 0,
            step: 0,
            nodes,
            net: Vec::new(),
            net_seq: 0,
            blocked: [[false; 6]; 6],
            drop_permille: 0,
            dup_permille: 0,
            max_delay_ms: 10,
            leaders: HashMap::new(),
            history: Vec::new(),
            log_map: HashMap::new(),
            acked: HashMap::new(),
            max_acked_index: 0,
            next_prop: 1,
            next_ctx: 1,
            stats: SimStats::default(),
            faults: true,
            profile,
            isolate_at: None,
        })
    }

    fn trace(&self, s: impl FnOnce() -> String) {
        if self.opts.trace {
            eprintln!("[{:>4} {:>6}ms] {}", self.step, self.now_ms, s());
        }
    }

    fn dump(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| match &n.raw {
                Some(r) => format!(
                    "{}:{:?} t{} leader{} commit{} applied{} last{} start{} {:?}",
                    n.id,
                    r.role(),
                    r.term(),
                    r.leader(),
                    r.commit_index(),
                    r.applied_index(),
                    r.last_index(),
                    r.log_start().index,
                    r.membership()
                ),
                None => format!("{}:down", n.id),
            })
            .collect()
    }

    fn violation(&self, what: String) -> Violation {
        if self.opts.trace {
            for l in self.dump() {
                eprintln!("  {l}");
            }
        }
        Violation {
            seed: self.opts.seed,
            step: self.step,
            now_ms: self.now_ms,
            what,
        }
    }

    /// Run the chaos phase and the liveness phase.
    pub fn run(mut self) -> Result<SimStats, Violation> {
        for _ in 0..self.opts.steps {
            let dt = self.rng.range(1, 20);
            if let Err(e) = self.chaos_step(dt) {
                return Err(self.violation(e));
            }
            self.step += 1;
        }
        if let Err(e) = self.liveness() {
            return Err(self.violation(e));
        }
        self.stats.committed = self.history.len() as u64;
        Ok(self.stats)
    }

    fn chaos_step(&mut self, dt: u64) -> SimResult<()> {
        self.now_ms += dt;
        if self.faults {
            self.inject_faults()?;
        }
        self.client_ops()?;
        self.advance_world()
    }

    fn advance_world(&mut self) -> SimResult<()> {
        self.restart_due()?;
        self.deliver_due()?;
        self.complete_disk()?;
        for i in 0..self.nodes.len() {
            let ppm = self.nodes[i].clock_ppm;
            let t = local_ms(self.now_ms, ppm);
            if let Some(raw) = self.nodes[i].raw.as_mut() {
                raw.tick(t);
            }
        }
        self.drain_readies()?;
        self.check()
    }
}
