//! Throughput of the consensus core alone: three nodes in memory, no I/O, one
//! thread. Each iteration proposes a batch on the leader and pumps readies and
//! messages until the batch is committed on the leader; the figure is entries
//! committed per second.
//!
//! `cargo bench -p dongting-raft --bench throughput`

use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dongting_raft::{Config, MemStorage, Membership, Message, RawNode, Role};

/// Payload of every proposal (a small command, shared: no copy per entry).
static PAYLOAD: [u8; 64] = [7; 64];

/// Compact every node's storage after this many committed entries, so memory
/// stays bounded however long criterion runs.
const COMPACT_EVERY_ENTRIES: u64 = 1 << 16;

struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    queue: Vec<Message>,
    inbox: Vec<Message>,
    now_ms: u64,
    compacted_at: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let m = Membership::new(&[1, 2, 3], &[]);
        let nodes = (1..=3)
            .map(|id| {
                let mut c = Config::new(id);
                c.max_inflight_msgs = 256;
                c.max_append_entries = 8192;
                c.max_append_bytes = 8 << 20;
                c.max_apply_entries = 1 << 16;
                match RawNode::new(c, MemStorage::new(m.clone()), 0) {
                    Ok(n) => n,
                    Err(e) => panic!("cannot start node {id}: {e}"),
                }
            })
            .collect();
        let mut c = Cluster {
            nodes,
            queue: Vec::new(),
            inbox: Vec::new(),
            now_ms: 0,
            compacted_at: 0,
        };
        c.nodes[0].campaign_now();
        while c.nodes[0].role() != Role::Leader || c.nodes[0].commit_index() < 1 {
            c.now_ms += 10;
            for n in &mut c.nodes {
                n.tick(c.now_ms);
            }
            c.nodes[0].campaign_now();
            c.pump();
        }
        c
    }

    /// Run readies and deliver messages until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for n in &mut self.nodes {
                if !n.has_ready() {
                    continue;
                }
                moved = true;
                let rd = n.ready();
                self.queue.extend(rd.messages.iter().cloned());
                if let Err(e) = n.store_mut().persist_ready(&rd) {
                    panic!("persist: {e}");
                }
                self.queue.extend(rd.persisted_messages.iter().cloned());
                n.advance(&rd);
            }
            std::mem::swap(&mut self.queue, &mut self.inbox);
            for m in self.inbox.drain(..) {
                moved = true;
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m);
            }
            if !moved {
                return;
            }
        }
    }

    fn round(&mut self, batch: usize) {
        let leader = &mut self.nodes[0];
        for _ in 0..batch {
            if let Err(e) = leader.propose(Bytes::from_static(&PAYLOAD)) {
                panic!("propose: {e}");
            }
        }
        let target = leader.last_index();
        self.pump();
        assert!(
            self.nodes[0].commit_index() >= target,
            "batch not committed"
        );
        if target - self.compacted_at >= COMPACT_EVERY_ENTRIES {
            self.compact();
        }
    }

    fn compact(&mut self) {
        for n in &mut self.nodes {
            let idx = n.applied_index();
            let meta = match n.snapshot_meta(idx) {
                Ok(m) => m,
                Err(e) => panic!("snapshot meta: {e}"),
            };
            let r = n
                .store_mut()
                .create_snapshot(meta, Bytes::new())
                .and_then(|()| n.store_mut().compact(idx))
                .and_then(|()| n.on_compacted(idx));
            if let Err(e) = r {
                panic!("compact: {e}");
            }
        }
        self.compacted_at = self.nodes[0].applied_index();
    }
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("raft_core_3_nodes");
    g.measurement_time(Duration::from_secs(5));
    for batch in [64usize, 1024, 4096] {
        let mut cl = Cluster::new();
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(
            BenchmarkId::new("commit_entries", batch),
            &batch,
            |b, &batch| {
                b.iter(|| cl.round(batch));
            },
        );
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
