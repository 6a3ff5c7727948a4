//! Node I/O: each node's `Ready` handled, writes persisted after a simulated
//! disk latency, committed entries and snapshots applied.

use dongting_raft::{EntryKind, Ready, Storage};

use super::{Hist, Sim, SimResult, applied_of, decode_sm};

impl Sim {
    pub(super) fn drain_readies(&mut self) -> SimResult<()> {
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

    pub(super) fn complete_disk(&mut self) -> SimResult<()> {
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
}
