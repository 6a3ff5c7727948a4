//! Deterministic simulator for the Dongting Raft core.
//!
//! A seeded run drives five [`RawNode`]s over a virtual network and virtual
//! clocks. Every source of nondeterminism (message delays, drops, duplicates,
//! partitions, crashes, disk latency, client traffic, admin operations, election
//! timeouts) comes from one seed, so a failing seed replays exactly.
//!
//! Faults: message drop, duplication, reordering and delay; symmetric and
//! asymmetric partitions and leader isolation; crash and restart losing every
//! write not yet reported durable; membership churn (prepare, commit, abort,
//! observers); leader transfers; snapshots and log compaction; per-node clock
//! rate drift.
//!
//! Invariants checked after every step: at most one leader per term; log
//! matching; leader completeness; every node's applied sequence is a prefix of
//! one history; term and commit index monotonic; snapshots agree with the
//! history; reads linearizable against the applied history. After the chaos
//! phase the network heals, crashed nodes restart, and a liveness phase requires
//! a leader and the commit of fresh proposals on every node of the configuration
//! within [`LIVENESS_BOUND_MS`].

use std::collections::{HashMap, VecDeque};
use std::fmt;

use bytes::Bytes;
use dongting_raft::{
    AdminOutcome, Config, Entry, EntryKind, MemStorage, Membership, Message, Mutation, NodeId,
    RawNode, Ready, Role, Storage,
};

/// Node ids that exist in every run (not all are always in the configuration).
pub const NODE_IDS: [NodeId; 5] = [1, 2, 3, 4, 5];
/// Base election timeout of simulated nodes.
pub const ELECT_TIMEOUT_MS: u64 = 300;
/// Heartbeat interval of simulated nodes.
pub const HEARTBEAT_MS: u64 = 30;
/// Lease drift margin of simulated nodes (10 % of the election timeout).
pub const DRIFT_MARGIN_MS: u64 = 30;
/// Largest clock-rate error of a node, in parts per million (±2 %, well inside
/// the drift margin).
pub const MAX_CLOCK_PPM: i64 = 20_000;
/// After healing, a leader must emerge and every liveness proposal must be
/// applied by every node of the configuration within this much virtual time.
pub const LIVENESS_BOUND_MS: u64 = 60 * ELECT_TIMEOUT_MS;

/// Default chaos steps per seed.
pub const DEFAULT_STEPS: usize = 300;

/// Small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u64) -> bool {
        self.below(1000) < permille
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Seed of every random choice.
    pub seed: u64,
    /// Chaos steps before the liveness phase.
    pub steps: usize,
    /// Planted bug to enable on every node.
    pub mutation: Mutation,
    /// Print every event to stderr.
    pub trace: bool,
}

impl SimOptions {
    /// Defaults for `seed`: [`DEFAULT_STEPS`] steps, no mutation, no trace.
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            steps: DEFAULT_STEPS,
            mutation: Mutation::None,
            trace: false,
        }
    }
}

/// A broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Seed that produced it.
    pub seed: u64,
    /// Step at which it was detected (steps past the chaos phase are liveness).
    pub step: usize,
    /// Virtual time in milliseconds.
    pub now_ms: u64,
    /// Which invariant and the values involved.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} step {} t={}ms: {}",
            self.seed, self.step, self.now_ms, self.what
        )
    }
}

/// The command that replays `seed` (run with `steps` chaos steps and `mutation`)
/// with a trace.
pub fn replay_command(seed: u64, steps: usize, mutation: Mutation) -> String {
    let mut env = format!("SIM_SEED={seed}");
    if steps != DEFAULT_STEPS {
        env.push_str(&format!(" SIM_STEPS={steps}"));
    }
    if mutation != Mutation::None {
        env.push_str(&format!(" SIM_MUTATION={mutation:?}"));
    }
    format!("{env} cargo test -p dongting-raft-sim --test sim -- replay --nocapture")
}

/// Parse a mutation name as printed by `Debug` (`None`, `CommitPreviousTerm`...).
pub fn parse_mutation(s: &str) -> Option<Mutation> {
    Some(match s {
        "" | "None" => Mutation::None,
        "CommitPreviousTerm" => Mutation::CommitPreviousTerm,
        "VoteWithoutLogCheck" => Mutation::VoteWithoutLogCheck,
        "LeaseWithoutQuorum" => Mutation::LeaseWithoutQuorum,
        "CountUnpersistedSelf" => Mutation::CountUnpersistedSelf,
        _ => return None,
    })
}

/// Counters of what a run exercised.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Distinct (term, leader) pairs observed.
    pub leaders: u64,
    /// Highest term reached.
    pub max_term: u64,
    /// Entries in the applied history.
    pub committed: u64,
    /// Proposals appended by a leader.
    pub proposals: u64,
    /// Reads answered with an index and checked.
    pub reads_ok: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Membership admin operations that appended an entry.
    pub config_ops: u64,
    /// Leader transfers started.
    pub transfers: u64,
    /// Local snapshots taken (with compaction).
    pub snapshots: u64,
    /// Snapshots installed from a leader.
    pub installs: u64,
    /// Virtual time the liveness phase needed.
    pub liveness_ms: u64,
}

struct InFlight {
    at_ms: u64,
    seq: u64,
    msg: Message,
}

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

fn msg_summary(m: &Message) -> String {
    use dongting_raft::MessageBody as B;
    let body = match &m.body {
        B::Append {
            prev_index,
            prev_term,
            commit,
            entries,
            seq,
            ..
        } => format!(
            "Append prev=({prev_index},{prev_term}) commit={commit} n={} seq={seq}",
            entries.len()
        ),
        B::AppendResponse {
            reject,
            index,
            hint_index,
            hint_term,
            seq,
            ..
        } => format!(
            "AppendResponse reject={reject} index={index} hint=({hint_index},{hint_term}) seq={seq}"
        ),
        B::InstallSnapshot {
            meta,
            offset,
            data,
            done,
            ..
        } => format!(
            "InstallSnapshot index={} offset={offset} len={} done={done}",
            meta.index,
            data.len()
        ),
        b => format!("{b:?}"),
    };
    format!("{} -> {} t{} {body}", m.from, m.to, m.term)
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

    // ------------------------------------------------------------------ faults

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].raw.is_some())
            .collect()
    }

    fn leader_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                self.nodes[*i]
                    .raw
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader)
            })
            .collect()
    }

    fn pick(&mut self, v: &[usize]) -> Option<usize> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.below(v.len() as u64) as usize])
        }
    }

    fn isolate(&mut self, n: usize) {
        for b in NODE_IDS {
            self.blocked[n][b as usize] = b as usize != n;
            self.blocked[b as usize][n] = b as usize != n;
        }
    }

    fn inject_faults(&mut self) -> SimResult<()> {
        if let Some((at, id)) = self.isolate_at
            && self.now_ms >= at
        {
            self.isolate_at = None;
            self.isolate(id as usize);
            self.trace(|| format!("isolate former transfer source {id}"));
        }
        if self.profile.storm && self.rng.chance(15) {
            self.transfer()?;
        }
        if self.profile.storm && self.rng.chance(40) {
            let leaders = self.leader_nodes();
            if let Some(l) = self.pick(&leaders) {
                if self.rng.chance(500) {
                    self.crash_node(l, 20, ELECT_TIMEOUT_MS);
                } else {
                    let n = self.nodes[l].id as usize;
                    self.isolate(n);
                    self.trace(|| format!("storm: isolate leader {n}"));
                }
            } else if self.rng.chance(200) {
                self.blocked = [[false; 6]; 6];
                self.trace(|| "storm: heal network".into());
            }
        }
        let r = self.rng.below(1000);
        match r {
            0..=9 => {
                // Symmetric partition into two random groups.
                let mut side = [false; 6];
                for id in NODE_IDS {
                    side[id as usize] = self.rng.chance(500);
                }
                for a in NODE_IDS {
                    for b in NODE_IDS {
                        self.blocked[a as usize][b as usize] = side[a as usize] != side[b as usize];
                    }
                }
                self.trace(|| format!("partition {side:?}"));
            }
            10..=14 => {
                // Asymmetric: one node cannot send (or cannot receive).
                let n = NODE_IDS[self.rng.below(5) as usize] as usize;
                let out = self.rng.chance(500);
                for b in NODE_IDS {
                    if b as usize != n {
                        if out {
                            self.blocked[n][b as usize] = true;
                        } else {
                            self.blocked[b as usize][n] = true;
                        }
                    }
                }
                self.trace(|| format!("asymmetric cut of node {n} outbound={out}"));
            }
            15..=19 => {
                // Isolate the leader.
                let leaders = self.leader_nodes();
                if let Some(l) = self.pick(&leaders) {
                    let n = self.nodes[l].id as usize;
                    for b in NODE_IDS {
                        if b as usize != n {
                            self.blocked[n][b as usize] = true;
                            self.blocked[b as usize][n] = true;
                        }
                    }
                    self.trace(|| format!("isolate leader {n}"));
                }
            }
            20..=39 => {
                self.blocked = [[false; 6]; 6];
                self.trace(|| "heal network".into());
            }
            40..=49 => {
                self.drop_permille = [0, 0, 20, 100, 300][self.rng.below(5) as usize];
                self.dup_permille = [0, 0, 20, 100][self.rng.below(4) as usize];
                self.max_delay_ms = [5, 10, 30, 100][self.rng.below(4) as usize];
                let (d, u, m) = (self.drop_permille, self.dup_permille, self.max_delay_ms);
                self.trace(|| format!("network drop={d}‰ dup={u}‰ max_delay={m}ms"));
            }
            50..=64 => self.crash(false)?,
            65..=69 => self.crash(true)?,
            70..=79 => {
                let i = self.rng.below(self.nodes.len() as u64) as usize;
                let slow = self.rng.chance(500);
                self.nodes[i].disk_max_ms = if slow { 150 } else { 12 };
                let id = self.nodes[i].id;
                self.trace(|| format!("node {id} disk {}", if slow { "slow" } else { "normal" }));
            }
            80..=89 => self.membership_op()?,
            90..=96 => self.transfer()?,
            97..=111 => self.snapshot()?,
            _ => {}
        }
        Ok(())
    }

    fn crash(&mut self, leader: bool) -> SimResult<()> {
        let live = if leader {
            self.leader_nodes()
        } else {
            self.live()
        };
        if let Some(i) = self.pick(&live) {
            self.crash_node(i, 50, 3 * ELECT_TIMEOUT_MS);
        }
        Ok(())
    }

    fn crash_node(&mut self, i: usize, min_down_ms: u64, max_down_ms: u64) {
        let restart = self.now_ms + self.rng.range(min_down_ms, max_down_ms);
        let n = &mut self.nodes[i];
        if let Some(raw) = n.raw.take() {
            n.down = Some(raw.into_store());
        }
        let lost = n.disk.len();
        n.disk.clear();
        n.reads.clear();
        n.restart_at_ms = restart;
        self.stats.crashes += 1;
        let id = self.nodes[i].id;
        self.trace(|| format!("crash node {id} (lost {lost} unpersisted readies)"));
    }

    fn restart_due(&mut self) -> SimResult<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].raw.is_none() && self.nodes[i].restart_at_ms <= self.now_ms {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    fn restart(&mut self, i: usize) -> SimResult<()> {
        let (seed, mutation) = (self.opts.seed, self.opts.mutation);
        let now = self.now_ms;
        let n = &mut self.nodes[i];
        let Some(store) = n.down.take() else {
            return Ok(());
        };
        let (applied, sm) = match store.snapshot() {
            Ok(s) => {
                let sm = decode_sm(&s.data).ok_or("undecodable local snapshot")?;
                (s.meta.index, sm)
            }
            Err(_) => (0, Vec::new()),
        };
        if sm.len() as u64 != applied {
            return Err(format!(
                "node {} snapshot at {applied} holds {} entries",
                n.id,
                sm.len()
            ));
        }
        let hs_term = store.hard_state().term;
        let cfg = node_config(n.id, seed ^ now, mutation, applied, self.profile);
        let raw = RawNode::new(cfg, store, local_ms(now, n.clock_ppm))
            .map_err(|e| format!("node {} failed to restart: {e}", n.id))?;
        if raw.term() != hs_term {
            return Err(format!(
                "node {} restarted in term {} not {hs_term}",
                n.id,
                raw.term()
            ));
        }
        n.sm = sm;
        n.last_term = raw.term();
        n.last_commit = raw.commit_index();
        n.raw = Some(raw);
        let id = n.id;
        self.trace(|| format!("restart node {id} applied={applied}"));
        Ok(())
    }

    fn membership_op(&mut self) -> SimResult<()> {
        let leaders = self.leader_nodes();
        let Some(l) = self.pick(&leaders) else {
            return Ok(());
        };
        let joint = self.nodes[l]
            .raw
            .as_ref()
            .and_then(|r| r.membership().joint.clone());
        let r = match joint {
            None => {
                let size = [1, 2, 3, 3, 3, 3, 4, 5][self.rng.below(8) as usize];
                let mut ids = NODE_IDS.to_vec();
                for k in (1..ids.len()).rev() {
                    let j = self.rng.below(k as u64 + 1) as usize;
                    ids.swap(k, j);
                }
                let members: Vec<NodeId> = ids[..size].to_vec();
                let observers: Vec<NodeId> = ids[size..]
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(500))
                    .collect();
                let Some(raw) = self.nodes[l].raw.as_mut() else {
                    return Ok(());
                };
                let r = raw.prepare_membership(&members, &observers);
                if let Ok(AdminOutcome::Appended(_)) = r {
                    // Repeating the same prepare must be a no-op that says so.
                    match raw.prepare_membership(&members, &observers) {
                        Ok(AdminOutcome::AlreadyPending(_)) | Ok(AdminOutcome::AlreadyDone(_)) => {}
                        other => return Err(format!("repeated prepare not idempotent: {other:?}")),
                    }
                }
                self.trace(|| {
                    format!("prepare members={members:?} observers={observers:?}: {r:?}")
                });
                r
            }
            Some(j) => {
                let commit = self.rng.chance(650);
                let Some(raw) = self.nodes[l].raw.as_mut() else {
                    return Ok(());
                };
                let r = if commit {
                    raw.commit_membership(j.prepare_index)
                } else {
                    raw.abort_membership()
                };
                if let Ok(AdminOutcome::Appended(_)) = r {
                    let again = if commit {
                        raw.commit_membership(j.prepare_index)
                    } else {
                        raw.abort_membership()
                    };
                    match again {
                        Ok(AdminOutcome::AlreadyPending(_)) | Ok(AdminOutcome::AlreadyDone(_)) => {}
                        other => {
                            return Err(format!("repeated resolution not idempotent: {other:?}"));
                        }
                    }
                }
                let p = j.prepare_index;
                self.trace(|| {
                    format!(
                        "{} prepare {p}: {r:?}",
                        if commit { "commit" } else { "abort" }
                    )
                });
                r
            }
        };
        if let Ok(AdminOutcome::Appended(_)) = r {
            self.stats.config_ops += 1;
        }
        Ok(())
    }

    fn transfer(&mut self) -> SimResult<()> {
        let leaders = self.leader_nodes();
        let Some(l) = self.pick(&leaders) else {
            return Ok(());
        };
        let target = NODE_IDS[self.rng.below(5) as usize];
        let timeout = self.rng.range(ELECT_TIMEOUT_MS / 2, 3 * ELECT_TIMEOUT_MS);
        let Some(raw) = self.nodes[l].raw.as_mut() else {
            return Ok(());
        };
        let r = raw.transfer_leader(target, timeout);
        let from = self.nodes[l].id;
        if r.is_ok() {
            self.stats.transfers += 1;
            if self.profile.storm && self.isolate_at.is_none() && self.rng.chance(500) {
                let at = self.now_ms + self.rng.range(5, 60);
                self.isolate_at = Some((at, from));
            }
        }
        self.trace(|| format!("transfer {from} -> {target}: {r:?}"));
        Ok(())
    }

    fn snapshot(&mut self) -> SimResult<()> {
        let live = self.live();
        let Some(i) = self.pick(&live) else {
            return Ok(());
        };
        let keep = self.rng.below(4);
        let n = &mut self.nodes[i];
        let Some(raw) = n.raw.as_mut() else {
            return Ok(());
        };
        let idx = raw.applied_index();
        if idx <= raw.log_start().index + 4 {
            return Ok(());
        }
        let Ok(meta) = raw.snapshot_meta(idx) else {
            return Ok(());
        };
        if n.sm.len() as u64 != idx {
            return Err(format!(
                "node {} applied {idx} but state machine has {}",
                n.id,
                n.sm.len()
            ));
        }
        let data = encode_sm(&n.sm);
        raw.store_mut()
            .create_snapshot(meta, data)
            .map_err(|e| format!("node {} create_snapshot({idx}): {e}", n.id))?;
        let to = (idx - keep).max(raw.log_start().index);
        raw.store_mut()
            .compact(to)
            .map_err(|e| format!("node {} compact({to}): {e}", n.id))?;
        raw.on_compacted(to)
            .map_err(|e| format!("node {} on_compacted({to}): {e}", n.id))?;
        self.stats.snapshots += 1;
        let id = n.id;
        self.trace(|| format!("node {id} snapshot at {idx}, compacted to {to}"));
        Ok(())
    }

    fn client_ops(&mut self) -> SimResult<()> {
        if self.rng.chance(250) {
            let leaders = self.leader_nodes();
            if let Some(l) = self.pick(&leaders) {
                let k = self.rng.range(1, 4);
                for _ in 0..k {
                    self.propose(l);
                }
            }
        }
        if self.rng.chance(500) {
            // Clients mostly ask a node that believes it leads (possibly stale).
            let targets = if self.rng.chance(500) {
                self.leader_nodes()
            } else {
                self.live()
            };
            if let Some(i) = self.pick(&targets) {
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                let must = self.max_acked_index;
                let n = &mut self.nodes[i];
                if let Some(raw) = n.raw.as_mut()
                    && raw.read_index(ctx).is_ok()
                {
                    n.reads.insert(ctx, must);
                }
            }
        }
        Ok(())
    }

    fn propose(&mut self, i: usize) -> bool {
        let id = self.next_prop;
        self.next_prop += 1;
        let data = Bytes::copy_from_slice(&id.to_le_bytes());
        let Some(raw) = self.nodes[i].raw.as_mut() else {
            return false;
        };
        let ok = raw.propose(data).is_ok();
        if ok {
            self.stats.proposals += 1;
        }
        ok
    }

    // ----------------------------------------------------------------- network

    fn send(&mut self, m: Message) {
        if self.faults && self.rng.chance(self.drop_permille) {
            return;
        }
        let copies = if self.faults && self.rng.chance(self.dup_permille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.rng.range(1, self.max_delay_ms);
            if self.faults && self.rng.chance(20) {
                delay += self.rng.range(0, 5 * self.max_delay_ms);
            }
            self.net_seq += 1;
            self.net.push(InFlight {
                at_ms: self.now_ms + delay,
                seq: self.net_seq,
                msg: m.clone(),
            });
        }
    }

    fn deliver_due(&mut self) -> SimResult<()> {
        let now = self.now_ms;
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.net.len() {
            if self.net[k].at_ms <= now {
                due.push(self.net.swap_remove(k));
            } else {
                k += 1;
            }
        }
        due.sort_by_key(|f| (f.at_ms, f.seq));
        for f in due {
            let (from, to) = (f.msg.from as usize, f.msg.to as usize);
            if from >= 6 || to >= 6 || self.blocked[from][to] {
                continue;
            }
            let Some(n) = self.nodes.iter_mut().find(|n| n.id == f.msg.to) else {
                continue;
            };
            if let Some(raw) = n.raw.as_mut() {
                if self.opts.trace && std::env::var_os("SIM_TRACE_MSGS").is_some() {
                    eprintln!(
                        "[{:>4} {:>6}ms]   deliver {}",
                        self.step,
                        now,
                        msg_summary(&f.msg)
                    );
                }
                raw.step(f.msg);
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- readies

    fn drain_readies(&mut self) -> SimResult<()> {
        for i in 0..self.nodes.len() {
            for _ in 0..3 {
                let Some(raw) = self.nodes[i].raw.as_mut() else {
                    break;
                };
                if !raw.has_ready() {
                    break;
                }
                let rd = raw.ready();
                self.handle_ready(i, rd)?;
            }
        }
        Ok(())
    }

    fn handle_ready(&mut self, i: usize, mut rd: Ready) -> SimResult<()> {
        for m in std::mem::take(&mut rd.messages) {
            self.send(m);
        }
        let must: Vec<(u64, Option<u64>, Result<u64, dongting_raft::ReadError>)> = rd
            .read_states
            .iter()
            .map(|rs| (rs.ctx, self.nodes[i].reads.remove(&rs.ctx), rs.result))
            .collect();
        for (ctx, must, result) in must {
            if let (Some(must), Ok(index)) = (must, result) {
                if index < must {
                    return Err(format!(
                        "stale read on node {}: ctx {ctx} read index {index} but a write at \
                         index {must} was acknowledged before the read was invoked",
                        self.nodes[i].id
                    ));
                }
                self.stats.reads_ok += 1;
            }
        }
        let lat = self.rng.range(0, self.nodes[i].disk_max_ms);
        let n = &mut self.nodes[i];
        let done = n.disk.back().map_or(0, |(t, _)| *t).max(self.now_ms + lat);
        n.disk.push_back((done, rd));
        Ok(())
    }

    fn complete_disk(&mut self) -> SimResult<()> {
        for i in 0..self.nodes.len() {
            while self.nodes[i]
                .disk
                .front()
                .is_some_and(|(t, _)| *t <= self.now_ms)
            {
                let Some((_, rd)) = self.nodes[i].disk.pop_front() else {
                    break;
                };
                self.persist(i, rd)?;
            }
        }
        Ok(())
    }

    fn persist(&mut self, i: usize, mut rd: Ready) -> SimResult<()> {
        let id = self.nodes[i].id;
        // Log matching: the same (index, term) always holds the same entry after
        // the same previous term.
        if let Some(first) = rd.entries.first() {
            let raw = self.nodes[i]
                .raw
                .as_ref()
                .ok_or("persist on a crashed node")?;
            let mut prev = match &rd.snapshot {
                Some(s) if s.meta.index + 1 == first.index => Some(s.meta.term),
                _ => raw.store().term(first.index - 1).ok(),
            };
            for e in &rd.entries {
                let a = applied_of(e);
                let v = (a.hash, a.kind, prev);
                match self.log_map.get(&(e.index, e.term)) {
                    Some(old) => {
                        if old.0 != v.0
                            || old.1 != v.1
                            || (old.2.is_some() && v.2.is_some() && old.2 != v.2)
                        {
                            return Err(format!(
                                "log matching: node {id} persists entry ({}, {}) = {v:?} but \
                                 another log holds {old:?}",
                                e.index, e.term
                            ));
                        }
                    }
                    None => {
                        self.log_map.insert((e.index, e.term), v);
                    }
                }
                prev = Some(e.term);
            }
        }
        if let Some(s) = &rd.snapshot {
            let sm = decode_sm(&s.data).ok_or("undecodable snapshot from leader")?;
            if sm.len() as u64 != s.meta.index {
                return Err(format!(
                    "snapshot at {} holds {} entries",
                    s.meta.index,
                    sm.len()
                ));
            }
            for (k, a) in sm.iter().enumerate() {
                if let Some(h) = self.history.get(k)
                    && h.a != *a
                {
                    return Err(format!(
                        "snapshot installed on node {id} disagrees with history at index {}",
                        k + 1
                    ));
                }
            }
            self.stats.installs += 1;
            self.nodes[i].sm = sm;
            self.trace(|| format!("node {id} installed snapshot at {}", s.meta.index));
        }
        {
            let raw = self.nodes[i]
                .raw
                .as_mut()
                .ok_or("persist on a crashed node")?;
            raw.store_mut()
                .persist_ready(&rd)
                .map_err(|e| format!("node {id} cannot persist ready: {e}"))?;
        }
        for m in std::mem::take(&mut rd.persisted_messages) {
            self.send(m);
        }
        let term_now = self.nodes[i].raw.as_ref().map_or(0, |r| r.term());
        for e in &rd.committed_entries {
            let a = applied_of(e);
            let n = &mut self.nodes[i];
            let expect = n.sm.len() as u64 + 1;
            if e.index != expect {
                return Err(format!(
                    "node {id} applies index {} but expected {expect}",
                    e.index
                ));
            }
            n.sm.push(a);
            let k = (e.index - 1) as usize;
            match self.history.get_mut(k) {
                Some(h) => {
                    if h.a != a {
                        return Err(format!(
                            "applied history diverges at index {}: node {id} applies {a:?}, \
                             history holds {:?}",
                            e.index, h.a
                        ));
                    }
                    h.commit_bound = h.commit_bound.min(term_now);
                }
                None => {
                    if k != self.history.len() {
                        return Err(format!("history gap at index {}", e.index));
                    }
                    self.history.push(Hist {
                        a,
                        commit_bound: term_now,
                    });
                }
            }
            if e.kind == EntryKind::Normal && e.data.len() == 8 {
                let mut b = [0u8; 8];
                b.copy_from_slice(&e.data);
                let pid = u64::from_le_bytes(b);
                if let std::collections::hash_map::Entry::Vacant(v) = self.acked.entry(pid) {
                    v.insert(e.index);
                    self.max_acked_index = self.max_acked_index.max(e.index);
                }
            }
        }
        if let Some(raw) = self.nodes[i].raw.as_mut() {
            raw.advance(&rd);
        }
        Ok(())
    }

    // -------------------------------------------------------------- invariants

    fn check(&mut self) -> SimResult<()> {
        for i in 0..self.nodes.len() {
            let Some(raw) = self.nodes[i].raw.as_ref() else {
                continue;
            };
            let n = &self.nodes[i];
            let (term, commit) = (raw.term(), raw.commit_index());
            if term < n.last_term {
                return Err(format!(
                    "node {} term went back from {} to {term}",
                    n.id, n.last_term
                ));
            }
            if commit < n.last_commit {
                return Err(format!(
                    "node {} commit went back from {} to {commit}",
                    n.id, n.last_commit
                ));
            }
            if raw.role() == Role::Leader {
                match self.leaders.get(&term) {
                    Some(&l) if l != n.id => {
                        return Err(format!("two leaders in term {term}: {l} and {}", n.id));
                    }
                    Some(_) => {}
                    None => {
                        self.leaders.insert(term, n.id);
                        self.stats.leaders += 1;
                        self.stats.max_term = self.stats.max_term.max(term);
                        self.trace(|| format!("node {} leader of term {term}", n.id));
                        // Leader completeness: every entry committed in an earlier
                        // term is in the new leader's log.
                        let start = raw.log_start().index;
                        for (k, h) in self.history.iter().enumerate() {
                            let index = k as u64 + 1;
                            if h.commit_bound >= term || index <= start {
                                continue;
                            }
                            let t = raw.entry_term(index);
                            if t != Ok(h.a.term) {
                                return Err(format!(
                                    "leader completeness: leader {} of term {term} has {t:?} at \
                                     index {index}, committed term {}",
                                    n.id, h.a.term
                                ));
                            }
                        }
                    }
                }
            }
            let n = &mut self.nodes[i];
            n.last_term = term;
            n.last_commit = commit;
        }
        Ok(())
    }

    // --------------------------------------------------------------- liveness

    fn liveness(&mut self) -> SimResult<()> {
        self.faults = false;
        self.blocked = [[false; 6]; 6];
        self.drop_permille = 0;
        self.dup_permille = 0;
        self.max_delay_ms = 10;
        for n in &mut self.nodes {
            n.restart_at_ms = n.restart_at_ms.min(self.now_ms);
            n.disk_max_ms = 12;
        }
        self.trace(|| "liveness phase: network healed, every node restarting".into());
        let healed_ms = self.now_ms;
        let deadline = healed_ms + LIVENESS_BOUND_MS;
        // Three logical proposals, each with the ids of its attempts (a client
        // retries against the current leader until one attempt is applied).
        let mut markers: Vec<Vec<u64>> = Vec::new();
        let mut last_propose_ms = 0;
        while self.now_ms < deadline {
            self.now_ms += 10;
            self.advance_world()?;
            self.step += 1;
            let leaders = self.leader_nodes();
            let Some(&l) = leaders
                .iter()
                .max_by_key(|&&l| self.nodes[l].raw.as_ref().map_or(0, |r| r.term()))
            else {
                continue;
            };
            if markers.len() < 3 || self.now_ms >= last_propose_ms + 2 * ELECT_TIMEOUT_MS {
                while markers.len() < 3 {
                    markers.push(Vec::new());
                }
                #[allow(clippy::needless_range_loop)] // `propose` borrows self mutably
                for k in 0..markers.len() {
                    if markers[k].iter().any(|m| self.acked.contains_key(m)) {
                        continue;
                    }
                    let pid = self.next_prop;
                    if self.propose(l) {
                        markers[k].push(pid);
                    }
                }
                last_propose_ms = self.now_ms;
            }
            // Done when one marker of every round is applied by every node in
            // the leader's configuration.
            let Some(raw) = self.nodes[l].raw.as_ref() else {
                continue;
            };
            let want: Vec<NodeId> = raw.membership().all_nodes();
            let applied_markers: Vec<u64> = markers
                .iter()
                .filter_map(|ids| ids.iter().filter_map(|m| self.acked.get(m).copied()).min())
                .collect();
            if applied_markers.len() < 3 {
                continue;
            }
            let need = applied_markers.iter().copied().max().unwrap_or(0);
            let all = want.iter().all(|id| {
                self.nodes
                    .iter()
                    .any(|n| n.id == *id && n.raw.is_some() && n.sm.len() as u64 >= need)
            });
            if all {
                self.stats.liveness_ms = self.now_ms - healed_ms;
                return self.stable(l);
            }
        }
        let summary: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.raw {
                Some(r) => format!(
                    "{}:{:?} t{} c{} a{} last{} m{:?}",
                    n.id,
                    r.role(),
                    r.term(),
                    r.commit_index(),
                    r.applied_index(),
                    r.last_index(),
                    r.membership()
                ),
                None => format!("{}:down", n.id),
            })
            .collect();
        Err(format!(
            "liveness: no leader committed fresh proposals on every node within {LIVENESS_BOUND_MS}ms \
             of healing: {summary:?}"
        ))
    }
}

impl Sim {
    /// After liveness: with a healthy network the leader keeps its term for
    /// several election timeouts, and nodes outside its configuration (removed)
    /// do not raise terms.
    fn stable(&mut self, l: usize) -> SimResult<()> {
        let term = self.nodes[l].raw.as_ref().map_or(0, |r| r.term());
        let id = self.nodes[l].id;
        let until = self.now_ms + 5 * ELECT_TIMEOUT_MS;
        while self.now_ms < until {
            self.now_ms += 10;
            self.advance_world()?;
            self.step += 1;
            for n in &self.nodes {
                let Some(r) = n.raw.as_ref() else {
                    continue;
                };
                if r.term() > term {
                    return Err(format!(
                        "stability: node {} reached term {} after leader {id} of term {term} \
                         committed on every node of a healthy cluster",
                        n.id,
                        r.term()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Run one seed.
pub fn run_seed(opts: SimOptions) -> Result<SimStats, Violation> {
    let seed = opts.seed;
    match Sim::new(opts) {
        Ok(sim) => sim.run(),
        Err(what) => Err(Violation {
            seed,
            step: 0,
            now_ms: 0,
            what,
        }),
    }
}

/// Run seeds `[first, first + count)` on `threads` threads; returns the
/// violations found (at most one per seed), sorted by seed, and the summed stats.
pub fn run_seeds(
    first: u64,
    count: u64,
    steps: usize,
    mutation: Mutation,
    threads: usize,
    stop_at_first: bool,
) -> (Vec<Violation>, SimStats) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let next = AtomicU64::new(first);
    let stop = AtomicBool::new(false);
    let out = Mutex::new((Vec::new(), SimStats::default()));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        break;
                    }
                    let mut o = SimOptions::new(seed);
                    o.steps = steps;
                    o.mutation = mutation;
                    let r = run_seed(o);
                    let mut g = match out.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    match r {
                        Ok(st) => add_stats(&mut g.1, &st),
                        Err(v) => {
                            g.0.push(v);
                            if stop_at_first {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
    });
    let (mut v, st) = match out.into_inner() {
        Ok(x) => x,
        Err(p) => p.into_inner(),
    };
    v.sort_by_key(|x| x.seed);
    (v, st)
}

fn add_stats(a: &mut SimStats, b: &SimStats) {
    a.leaders += b.leaders;
    a.max_term = a.max_term.max(b.max_term);
    a.committed += b.committed;
    a.proposals += b.proposals;
    a.reads_ok += b.reads_ok;
    a.crashes += b.crashes;
    a.config_ops += b.config_ops;
    a.transfers += b.transfers;
    a.snapshots += b.snapshots;
    a.installs += b.installs;
    a.liveness_ms = a.liveness_ms.max(b.liveness_ms);
}
