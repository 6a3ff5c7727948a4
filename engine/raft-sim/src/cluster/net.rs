//! The network model: messages in flight with random delay, loss and
//! duplication, delivered in time order unless a partition blocks them.

use dongting_raft::Message;

use super::{Sim, SimResult};

pub(super) struct InFlight {
    at_ms: u64,
    seq: u64,
    msg: Message,
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

impl Sim {
    pub(super) fn send(&mut self, m: Message) {
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

    pub(super) fn deliver_due(&mut self) -> SimResult<()> {
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
}
