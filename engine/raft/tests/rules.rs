//! One test per Raft rule, on an in-memory network that can drop, isolate and
//! heal. Each node persists and applies every ready synchronously unless the
//! test holds its disk.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use bytes::Bytes;
use dongting_raft::{
    AdminError, AdminOutcome, Config, EntryKind, MemStorage, Membership, Message, MessageBody,
    NodeId, ProposeError, Proposed, RawNode, ReadError, Ready, Role, Storage,
};

const ET: u64 = 1000;

fn cfg(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.elect_timeout_ms = ET;
    c.heartbeat_interval_ms = 100;
    c.lease_drift_margin_ms = 100;
    c
}

struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    now: u64,
    queue: Vec<Message>,
    cut: HashSet<(NodeId, NodeId)>,
    /// Nodes whose readies are taken but not persisted (disk stalled).
    stalled: HashSet<NodeId>,
    held: Vec<(NodeId, Ready)>,
    applied: Vec<Vec<(u64, EntryKind, Bytes)>>,
    read_states: Vec<(NodeId, dongting_raft::ReadState)>,
    held_results: Vec<dongting_raft::HeldProposal>,
}

impl Cluster {
    fn new(members: &[NodeId], observers: &[NodeId]) -> Cluster {
        Cluster::with(members, observers, cfg)
    }

    fn with(members: &[NodeId], observers: &[NodeId], f: impl Fn(NodeId) -> Config) -> Cluster {
        let m = Membership::new(members, observers);
        let ids: Vec<NodeId> = m.all_nodes();
        let nodes = ids
            .iter()
            .map(|id| RawNode::new(f(*id), MemStorage::new(m.clone()), 0).unwrap())
            .collect();
        Cluster {
            nodes,
            now: 0,
            queue: Vec::new(),
            cut: HashSet::new(),
            stalled: HashSet::new(),
            held: Vec::new(),
            applied: vec![Vec::new(); ids.len()],
            read_states: Vec::new(),
            held_results: Vec::new(),
        }
    }

    fn idx(&self, id: NodeId) -> usize {
        self.nodes.iter().position(|n| n.id() == id).unwrap()
    }

    fn node(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        let i = self.idx(id);
        &mut self.nodes[i]
    }

    fn isolate(&mut self, id: NodeId) {
        for n in &self.nodes {
            if n.id() != id {
                self.cut.insert((id, n.id()));
                self.cut.insert((n.id(), id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn finish(&mut self, i: usize, rd: Ready) {
        let n = &mut self.nodes[i];
        n.store_mut().persist_ready(&rd).unwrap();
        self.queue.extend(rd.persisted_messages.iter().cloned());
        for e in &rd.committed_entries {
            self.applied[i].push((e.index, e.kind, e.data.clone()));
        }
        n.advance(&rd);
    }

    /// Run readies and deliver messages until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            if !self.round() {
                return;
            }
        }
        panic!("cluster did not settle");
    }

    /// One pass: every node's ready, then every queued message. Returns whether
    /// anything moved.
    fn round(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].has_ready() {
                continue;
            }
            moved = true;
            let rd = self.nodes[i].ready();
            self.queue.extend(rd.messages.iter().cloned());
            let id = self.nodes[i].id();
            self.read_states
                .extend(rd.read_states.iter().map(|r| (id, *r)));
            self.held_results.extend(rd.held_proposals.iter().cloned());
            if self.stalled.contains(&id) {
                self.held.push((id, rd));
            } else {
                self.finish(i, rd);
            }
        }
        let msgs = std::mem::take(&mut self.queue);
        for m in msgs {
            moved = true;
            if self.cut.contains(&(m.from, m.to)) {
                continue;
            }
            if let Some(i) = self.nodes.iter().position(|n| n.id() == m.to) {
                self.nodes[i].step(m);
            }
        }
        moved
    }

    fn unstall(&mut self, id: NodeId) {
        self.stalled.remove(&id);
        let held: Vec<(NodeId, Ready)> = std::mem::take(&mut self.held);
        for (nid, rd) in held {
            if nid == id {
                let i = self.idx(id);
                self.finish(i, rd);
            } else {
                self.held.push((nid, rd));
            }
        }
        self.settle();
    }

    fn tick(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            for n in &mut self.nodes {
                n.tick(self.now);
            }
            self.settle();
        }
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.role() == Role::Leader)
            .map(|n| n.id())
            .collect()
    }

    /// Make `id` the leader: wait for an election, then transfer if needed.
    fn elect(&mut self, id: NodeId) {
        for _ in 0..100 {
            if self.leaders().len() == 1 {
                break;
            }
            self.tick(100);
        }
        let l = self.leaders()[0];
        if l != id {
            self.node(l).transfer_leader(id, ET).unwrap();
            self.settle();
            self.tick(100);
        }
        assert_eq!(self.node(id).role(), Role::Leader, "node {id} did not win");
        // Let the noop commit everywhere.
        self.tick(200);
    }

    fn propose(&mut self, id: NodeId, data: &'static [u8]) -> Proposed {
        let p = self.node(id).propose(Bytes::from_static(data)).unwrap();
        self.settle();
        p
    }
}

#[test]
fn election_elects_exactly_one_leader_after_timeout() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.tick(ET - 10);
    assert!(
        c.leaders().is_empty(),
        "no election before the minimum timeout"
    );
    c.tick(3 * ET);
    assert_eq!(c.leaders().len(), 1);
    let l = c.leaders()[0];
    // Pre-vote does not burn terms: one round, term 1.
    assert_eq!(c.node(l).term(), 1);
    for n in &c.nodes {
        assert_eq!(n.leader(), l);
    }
}

#[test]
fn vote_and_term_are_emitted_before_vote_requests_are_sent() {
    let mut c = cfg(1);
    c.pre_vote = false;
    let m = Membership::new(&[1, 2, 3], &[]);
    let mut n = RawNode::new(c, MemStorage::new(m), 0).unwrap();
    n.campaign_now();
    let rd = n.ready();
    let hs = rd.hard_state.expect("term and vote must be persisted");
    assert_eq!((hs.term, hs.vote), (1, 1));
    assert!(rd.messages.is_empty());
    assert_eq!(rd.persisted_messages.len(), 2);
    assert!(rd.persisted_messages.iter().all(|m| matches!(
        m.body,
        MessageBody::RequestVote {
            pre_vote: false,
            ..
        }
    )));
}

#[test]
fn vote_refused_to_candidate_with_stale_log() {
    // Without pre-vote and check-quorum, node 3's vote requests reach the others.
    let mut c = Cluster::with(&[1, 2, 3], &[], |id| {
        let mut c = cfg(id);
        c.pre_vote = false;
        c.check_quorum = false;
        c
    });
    c.elect(1);
    c.isolate(3);
    c.propose(1, b"x");
    c.heal();
    let term_before = c.node(1).term();
    c.node(3).campaign_now();
    c.settle();
    assert_eq!(c.node(3).term(), term_before + 1);
    assert_ne!(
        c.node(3).role(),
        Role::Leader,
        "a stale log must not win votes"
    );
    assert_eq!(
        c.node(2).term(),
        term_before + 1,
        "the higher term is still adopted"
    );
    c.tick(4 * ET);
    let l = c.leaders();
    assert_eq!(l.len(), 1);
    assert_ne!(l[0], 3);
}

#[test]
fn pre_vote_keeps_partitioned_node_from_raising_terms() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    let term = c.node(1).term();
    c.isolate(3);
    c.tick(10 * ET);
    assert_eq!(c.node(3).term(), term, "pre-vote must not bump the term");
    c.heal();
    c.tick(ET);
    assert_eq!(
        c.leaders(),
        vec![1],
        "the rejoining node must not disrupt the leader"
    );
    assert_eq!(c.node(1).term(), term);
}

#[test]
fn check_quorum_steps_down_isolated_leader() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.isolate(1);
    c.tick(3 * ET);
    assert_ne!(c.node(1).role(), Role::Leader);
    let l = c.leaders();
    assert_eq!(l.len(), 1);
    assert_ne!(l[0], 1);
}

#[test]
fn observer_receives_log_but_never_campaigns_or_counts() {
    let mut c = Cluster::new(&[1, 2, 3], &[4]);
    assert_eq!(c.node(4).role(), Role::Observer);
    c.elect(1);
    c.propose(1, b"a");
    assert_eq!(c.node(4).commit_index(), c.node(1).commit_index());
    // With both other voters gone, the observer's ack cannot commit.
    c.isolate(2);
    c.isolate(3);
    let before = c.node(1).commit_index();
    c.propose(1, b"b");
    assert_eq!(c.node(1).commit_index(), before);
    assert_eq!(c.node(4).last_index(), c.node(1).last_index());
    c.node(4).campaign_now();
    c.settle();
    assert_eq!(c.node(4).role(), Role::Observer);
}

#[test]
fn leader_counts_itself_only_once_persisted() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.isolate(3);
    c.stalled.insert(1);
    c.propose(1, b"x");
    let last = c.node(1).last_index();
    assert_eq!(
        c.node(2).last_index(),
        last,
        "replicated in parallel with the leader's write"
    );
    assert!(
        c.node(1).commit_index() < last,
        "one persisted replica is not a quorum"
    );
    c.unstall(1);
    assert_eq!(c.node(1).commit_index(), last);
}

#[test]
fn leader_does_not_commit_previous_term_entries_by_counting() {
    // Node 1 leads term 1 and appends "x" only locally; node 2 then leads a
    // later term. Entries of term 1 that node 2 receives are committed only
    // together with node 2's own noop.
    let mut c = Cluster::with(&[1, 2, 3], &[], |id| {
        let mut c = cfg(id);
        c.max_append_entries = 1;
        c
    });
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    c.node(1).propose(Bytes::from_static(b"x")).unwrap();
    c.settle();
    let x_index = c.node(1).last_index();
    assert!(c.node(1).commit_index() < x_index);
    // Node 1 steps down; node 2 leads with node 3 and never saw "x".
    c.heal();
    c.isolate(1);
    c.tick(4 * ET);
    let l = c.leaders();
    assert_eq!(l.len(), 1);
    assert_ne!(l[0], 1);
    let l2 = l[0];
    let entry = c.node(l2).entry_term(x_index).unwrap();
    assert_ne!(
        entry, 1,
        "new leader overwrote the uncommitted index with its own term"
    );
    c.heal();
    c.tick(ET);
    // Node 1's "x" was replaced: every node applies the new leader's entry.
    for n in &c.nodes {
        assert_eq!(n.entry_term(x_index).unwrap(), entry);
    }
}

#[test]
fn fast_conflict_resolution_needs_few_round_trips() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    // Node 1 appends 50 entries nobody else sees.
    c.isolate(1);
    for _ in 0..50 {
        c.node(1).propose(Bytes::from_static(b"lost")).unwrap();
    }
    c.settle();
    c.tick(4 * ET);
    let l = c.leaders().into_iter().find(|l| *l != 1).unwrap();
    c.propose(l, b"kept");
    c.heal();
    // Count rejections node 1 sends while converging.
    let mut rejects = 0;
    for _ in 0..50 {
        c.now += 10;
        for n in &mut c.nodes {
            n.tick(c.now);
        }
        for _ in 0..50 {
            for i in 0..c.nodes.len() {
                if c.nodes[i].has_ready() {
                    let rd = c.nodes[i].ready();
                    c.queue.extend(rd.messages.iter().cloned());
                    c.finish(i, rd);
                }
            }
            let msgs = std::mem::take(&mut c.queue);
            for m in msgs {
                if m.from == 1 && matches!(m.body, MessageBody::AppendResponse { reject: true, .. })
                {
                    rejects += 1;
                }
                let i = c.idx(m.to);
                c.nodes[i].step(m);
            }
        }
    }
    assert_eq!(c.node(1).last_index(), c.node(l).last_index());
    assert!(rejects <= 3, "{rejects} rejections for one diverging term");
}

#[test]
fn the_leader_knows_how_far_each_peer_trails() {
    let mut c = Cluster::new(&[1, 2, 3], &[4]);
    c.elect(1);
    for _ in 0..5 {
        c.propose(1, b"x");
    }
    c.tick(100);
    let lag = c
        .node(1)
        .peer_lag(4)
        .expect("the leader replicates to its observer");
    assert_eq!(lag.behind, 0);
    assert!(lag.silent_ms.is_some_and(|ms| ms <= ET), "{lag:?}");
    assert_eq!(c.node(1).peer_lag(9), None, "not in the group");
    assert_eq!(c.node(2).peer_lag(4), None, "only the leader knows");
    // A silent observer falls behind and its silence grows.
    c.isolate(4);
    for _ in 0..7 {
        c.propose(1, b"y");
    }
    c.tick(ET);
    let lag = c.node(1).peer_lag(4).expect("still replicated to");
    assert_eq!(lag.behind, 7);
    assert!(lag.silent_ms.is_some_and(|ms| ms >= ET), "{lag:?}");
    c.heal();
    c.tick(ET);
    assert_eq!(c.node(1).peer_lag(4).map(|l| l.behind), Some(0));
}

#[test]
fn membership_change_is_joint_idempotent_and_waits_for_apply() {
    let mut c = Cluster::new(&[1, 2, 3], &[4, 5]);
    c.elect(1);
    // Promote 4, demote 3 to observer, remove 5.
    let p = c.node(1).prepare_membership(&[1, 2, 4], &[3]).unwrap();
    let AdminOutcome::Appended(pid) = p else {
        panic!("{p:?}")
    };
    assert_eq!(
        c.node(1).prepare_membership(&[1, 2, 4], &[3]).unwrap(),
        AdminOutcome::AlreadyPending(pid.index)
    );
    assert!(
        c.node(1).membership().is_joint(),
        "a prepare takes effect when appended"
    );
    c.settle();
    assert_eq!(
        c.node(1).prepare_membership(&[1, 2, 4], &[3]).unwrap(),
        AdminOutcome::AlreadyDone(pid.index)
    );
    c.tick(300);
    let r = c.node(1).commit_membership(pid.index).unwrap();
    let AdminOutcome::Appended(cid) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        c.node(1).commit_membership(pid.index).unwrap(),
        AdminOutcome::AlreadyPending(cid.index)
    );
    c.tick(300);
    assert_eq!(
        c.node(1).commit_membership(pid.index).unwrap(),
        AdminOutcome::AlreadyDone(cid.index)
    );
    assert_eq!(
        c.node(1).abort_membership().unwrap(),
        AdminOutcome::AlreadyDone(cid.index)
    );
    for id in [1, 2, 3, 4] {
        assert_eq!(c.node(id).membership().members, vec![1, 2, 4], "node {id}");
    }
    assert_eq!(c.node(3).role(), Role::Observer);
    assert_eq!(c.node(4).role(), Role::Follower);
    assert_eq!(c.node(5).role(), Role::Removed);
    // Removed node 5 no longer receives the log.
    let before = c.node(5).last_index();
    c.propose(1, b"after");
    assert_eq!(c.node(5).last_index(), before);
    assert_eq!(c.node(4).last_index(), c.node(1).last_index());
}

#[test]
fn membership_commit_refused_until_new_quorum_applied() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    // New members 1, 4, 5: 4 and 5 are new and will be cut off.
    let m = Membership::new(&[1, 2, 3], &[]);
    for id in [4, 5] {
        c.nodes
            .push(RawNode::new(cfg(id), MemStorage::new(m.clone()), c.now).unwrap());
        c.applied.push(Vec::new());
        c.isolate(id);
    }
    let AdminOutcome::Appended(p) = c.node(1).prepare_membership(&[1, 4, 5], &[]).unwrap() else {
        panic!()
    };
    c.settle();
    // While joint, the old quorum alone commits nothing, not even the prepare.
    assert_eq!(
        c.node(1).commit_membership(p.index),
        Err(AdminError::ChangeInProgress)
    );
    let before = c.node(1).commit_index();
    c.propose(1, b"y");
    assert_eq!(c.node(1).commit_index(), before);
    c.heal();
    c.tick(100);
    // Step until the leader sees the prepare committed: the new members have
    // not yet reported applying it.
    while c.node(1).commit_index() < p.index {
        c.round();
    }
    assert_eq!(
        c.node(1).commit_membership(p.index),
        Err(AdminError::NotApplied {
            prepare_index: p.index
        })
    );
    c.tick(500);
    assert!(matches!(
        c.node(1).commit_membership(p.index),
        Ok(AdminOutcome::Appended(_))
    ));
    c.tick(500);
    assert_eq!(c.node(1).membership().members, vec![1, 4, 5]);
    assert_eq!(c.node(2).role(), Role::Removed);
}

#[test]
fn membership_abort_returns_to_old_configuration() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    let AdminOutcome::Appended(p) = c.node(1).prepare_membership(&[1, 2], &[3]).unwrap() else {
        panic!()
    };
    c.settle();
    let AdminOutcome::Appended(_) = c.node(1).abort_membership().unwrap() else {
        panic!()
    };
    c.settle();
    assert_eq!(
        c.node(1).commit_membership(p.index),
        Err(AdminError::Aborted(p.index))
    );
    assert!(matches!(
        c.node(1).abort_membership(),
        Ok(AdminOutcome::AlreadyDone(_))
    ));
    for n in &c.nodes {
        assert_eq!(n.membership().members, vec![1, 2, 3]);
        assert!(!n.membership().is_joint());
    }
}

#[test]
fn leader_transfer_hands_over_and_fails_held_proposals() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.isolate(3);
    c.node(1).transfer_leader(3, 2 * ET).unwrap();
    c.settle();
    let held = c.node(1).propose(Bytes::from_static(b"held")).unwrap();
    let Proposed::Held(hid) = held else {
        panic!("{held:?}")
    };
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "target not caught up: no TimeoutNow yet"
    );
    c.heal();
    c.tick(300);
    assert_eq!(c.leaders(), vec![3]);
    let r = c.held_results.iter().find(|h| h.id == hid).unwrap();
    assert!(matches!(r.result, Err(ProposeError::NotLeader { .. })));
}

#[test]
fn leader_transfer_timeout_keeps_old_leader_and_releases_proposals() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.isolate(3);
    c.node(1).transfer_leader(3, ET / 2).unwrap();
    let Proposed::Held(hid) = c.node(1).propose(Bytes::from_static(b"held")).unwrap() else {
        panic!()
    };
    c.tick(ET);
    assert_eq!(c.node(1).role(), Role::Leader);
    let r = c.held_results.iter().find(|h| h.id == hid).unwrap();
    let lid = r.result.clone().unwrap();
    c.tick(100);
    assert!(c.node(1).commit_index() >= lid.index);
}

#[test]
fn lease_read_answers_at_once_and_read_index_otherwise() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.tick(200);
    assert!(c.node(1).status().lease_valid);
    c.node(1).read_index(7).unwrap();
    c.settle();
    let (_, rs) = c
        .read_states
        .iter()
        .find(|(_, r)| r.ctx == 7)
        .copied()
        .unwrap();
    assert_eq!(rs.result, Ok(c.node(1).commit_index()));
    // Follower read through ReadIndex.
    c.node(2).read_index(8).unwrap();
    c.settle();
    let (id, rs) = c
        .read_states
        .iter()
        .find(|(_, r)| r.ctx == 8)
        .copied()
        .unwrap();
    assert_eq!(id, 2);
    assert_eq!(rs.result, Ok(c.node(1).commit_index()));
    // An isolated leader loses its lease and cannot confirm a read.
    c.isolate(1);
    c.tick(ET);
    assert!(!c.node(1).status().lease_valid);
    if c.node(1).role() == Role::Leader {
        c.node(1).read_index(9).unwrap();
        c.tick(2 * ET);
        let (_, rs) = c
            .read_states
            .iter()
            .find(|(_, r)| r.ctx == 9)
            .copied()
            .unwrap();
        assert!(matches!(
            rs.result,
            Err(ReadError::NotLeader) | Err(ReadError::Timeout)
        ));
    }
}

#[test]
fn snapshot_streams_in_chunks_to_lagging_follower() {
    let mut c = Cluster::with(&[1, 2, 3], &[], |id| {
        let mut c = cfg(id);
        c.snapshot_chunk_bytes = 4;
        c
    });
    c.elect(1);
    c.isolate(3);
    for _ in 0..10 {
        c.node(1).propose(Bytes::from_static(b"v")).unwrap();
    }
    c.settle();
    let n1 = c.node(1);
    let idx = n1.applied_index();
    let meta = n1.snapshot_meta(idx).unwrap();
    n1.store_mut()
        .create_snapshot(meta, Bytes::from_static(b"0123456789abcdef"))
        .unwrap();
    n1.store_mut().compact(idx).unwrap();
    n1.on_compacted(idx).unwrap();
    c.heal();
    let mut chunks = 0;
    for _ in 0..100 {
        c.now += 10;
        for n in &mut c.nodes {
            n.tick(c.now);
        }
        for i in 0..c.nodes.len() {
            if c.nodes[i].has_ready() {
                let rd = c.nodes[i].ready();
                c.queue.extend(rd.messages.iter().cloned());
                c.finish(i, rd);
            }
        }
        for m in std::mem::take(&mut c.queue) {
            if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
                chunks += 1;
            }
            let i = c.idx(m.to);
            c.nodes[i].step(m);
        }
    }
    assert!(chunks >= 4, "16 bytes in 4-byte chunks, got {chunks}");
    let s = c.node(3).store().snapshot().unwrap();
    assert_eq!(&s.data[..], b"0123456789abcdef");
    c.propose(1, b"after");
    assert_eq!(c.node(3).last_index(), c.node(1).last_index());
    assert_eq!(c.node(3).commit_index(), c.node(1).commit_index());
}

#[test]
fn restart_keeps_term_vote_and_log() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.propose(1, b"x");
    let i = c.idx(2);
    let store = c.nodes[i].store().clone();
    let n = RawNode::new(cfg(2), store, c.now).unwrap();
    assert_eq!(n.term(), c.node(1).term());
    assert_eq!(n.last_index(), c.node(1).last_index());
    assert_eq!(n.commit_index(), c.node(1).commit_index());
}

// ---------------------------------------------------------------- testdata

fn ids(s: &str) -> Vec<NodeId> {
    if s == "-" {
        return Vec::new();
    }
    s.split(',').map(|x| x.parse().unwrap()).collect()
}

fn cmp(op: &str, a: u64, b: u64) -> bool {
    match op {
        "==" => a == b,
        ">=" => a >= b,
        "<=" => a <= b,
        "<" => a < b,
        ">" => a > b,
        _ => panic!("unknown comparison {op}"),
    }
}

/// Runs one scenario file; see `testdata/README.md` for the commands.
fn run_script(name: &str, text: &str) {
    let mut c: Option<Cluster> = None;
    let mut last_prepare = 0;
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{name}:{}: {line}", lineno + 1);
        let (cmd, want) = match line.split_once("=>") {
            Some((a, b)) => (a.trim(), Some(b.trim())),
            None => (line, None),
        };
        let w: Vec<&str> = cmd.split_whitespace().collect();
        if w[0] == "cluster" {
            c = Some(Cluster::new(
                &ids(w[1]),
                &ids(w.get(2).copied().unwrap_or("-")),
            ));
            continue;
        }
        let c = c.as_mut().unwrap_or_else(|| panic!("{at}: no cluster yet"));
        let n = |i: usize| -> NodeId { w[i].parse().unwrap() };
        let got: String = match w[0] {
            "elect" => {
                c.elect(n(1));
                String::new()
            }
            "isolate" => {
                c.isolate(n(1));
                String::new()
            }
            "heal" => {
                c.heal();
                String::new()
            }
            "tick" => {
                c.tick(w[1].parse().unwrap());
                String::new()
            }
            "propose" => {
                let r = c
                    .node(n(1))
                    .propose(Bytes::copy_from_slice(w[2].as_bytes()));
                c.settle();
                format!("{r:?}")
            }
            "prepare" => {
                let r = c.node(n(1)).prepare_membership(&ids(w[2]), &ids(w[3]));
                if let Ok(AdminOutcome::Appended(l)) = r {
                    last_prepare = l.index;
                }
                c.settle();
                format!("{r:?}")
            }
            "commit-config" => {
                let r = c.node(n(1)).commit_membership(last_prepare);
                c.settle();
                format!("{r:?}")
            }
            "abort-config" => {
                let r = c.node(n(1)).abort_membership();
                c.settle();
                format!("{r:?}")
            }
            "transfer" => {
                let r = c.node(n(1)).transfer_leader(n(2), w[3].parse().unwrap());
                c.settle();
                format!("{r:?}")
            }
            "leaders" => format!("{:?}", c.leaders()),
            "role" => format!("{:?}", c.node(n(1)).role()),
            "members" => format!("{:?}", c.node(n(1)).membership().members),
            "joint" => format!("{}", c.node(n(1)).membership().is_joint()),
            "commit" | "term" | "last" => {
                let v = match w[0] {
                    "commit" => c.node(n(1)).commit_index(),
                    "term" => c.node(n(1)).term(),
                    _ => c.node(n(1)).last_index(),
                };
                let other = match w[3].parse::<u64>() {
                    Ok(x) => x,
                    Err(_) => {
                        // `commit 2 == commit:1`: compare with another node.
                        let (what, id) = w[3].split_once(':').unwrap();
                        let id: NodeId = id.parse().unwrap();
                        match what {
                            "commit" => c.node(id).commit_index(),
                            "term" => c.node(id).term(),
                            _ => c.node(id).last_index(),
                        }
                    }
                };
                assert!(cmp(w[2], v, other), "{at}: {} is {v}", w[0]);
                continue;
            }
            other => panic!("{at}: unknown command {other}"),
        };
        if let Some(want) = want {
            assert!(got.contains(want), "{at}: got {got}, want {want}");
        }
    }
}

#[test]
fn testdata_scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        run_script(&f.display().to_string(), &text);
    }
}

#[test]
fn transfer_candidate_is_the_most_up_to_date_live_voter() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    c.settle();
    // Both followers hold the whole log: the lower id wins the tie.
    assert_eq!(c.node(1).transfer_candidate(), Some(2));
    assert_eq!(c.node(2).transfer_candidate(), None, "followers pick none");
    // Node 2's disk stalls: node 3 stores an entry node 2 does not.
    c.stalled.insert(2);
    c.node(1).propose(Bytes::from_static(b"x")).unwrap();
    c.settle();
    assert_eq!(c.node(1).transfer_candidate(), Some(3));
    // Both hold the whole log again; then node 2 falls silent for longer
    // than an election timeout: node 3 comes first despite its higher id.
    c.unstall(2);
    c.isolate(2);
    c.tick(ET + ET / 2);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).transfer_candidate(), Some(3));
}

#[test]
fn transfer_candidate_is_none_without_another_voter() {
    let mut c = Cluster::new(&[1], &[2]);
    c.elect(1);
    c.settle();
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(
        c.node(1).transfer_candidate(),
        None,
        "an observer never leads"
    );
}

#[test]
fn a_follower_that_lost_its_log_is_replicated_to_again() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.elect(1);
    for _ in 0..5 {
        c.propose(1, b"x");
    }
    c.tick(200);
    let last = |c: &mut Cluster, id| {
        c.node(id)
            .store()
            .stored_entries()
            .last()
            .map_or(0, |e| e.index)
    };
    let before = last(&mut c, 1);
    assert_eq!(last(&mut c, 3), before);
    // Node 3 restarts with its data gone: an empty log, term 0.
    let i = c.idx(3);
    let m = Membership::new(&[1, 2, 3], &[]);
    c.nodes[i] = RawNode::new(cfg(3), MemStorage::new(m), c.now).unwrap();
    c.applied[i].clear();
    c.propose(1, b"after");
    c.tick(3 * ET);
    let leader_last = last(&mut c, 1);
    assert_eq!(leader_last, before + 1);
    assert_eq!(
        last(&mut c, 3),
        leader_last,
        "node 3 got the whole log again"
    );
    assert_eq!(c.node(1).peer_lag(3).map(|l| l.behind), Some(0));
}
