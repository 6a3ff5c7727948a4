//! The config check between peers ("raft ping").
//!
//! On every (re)connection to a peer a node sends a [`PingInfo`]: who it is, which
//! process, the servers it knows and the membership of each group it hosts. The
//! peer answers with its own. Each side compares with [`differences`]; any
//! difference refuses the link, and each difference is logged in plain words.

use std::collections::BTreeMap;

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::generated::peer_generated::dongting::server::fb;
use dongting_proto::codec::{BodyError, u32_list};

/// One group's membership as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingGroup {
    /// Group id.
    pub group_id: u32,
    /// Voting members.
    pub members: Vec<u32>,
    /// Observers.
    pub observers: Vec<u32>,
    /// Log index of the configuration entry that set this membership; 0 when it
    /// comes from the configuration file.
    pub membership_index: u64,
}

/// What a node states about itself in a raft ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingInfo {
    /// Sender's node id.
    pub node_id: u32,
    /// Node id the sender expects to reach (0 in an answer).
    pub target_node_id: u32,
    /// Operating-system process id of the sender.
    pub process_id: u64,
    /// Sender's start time (ms since the epoch); with `process_id` tells a
    /// restarted process apart.
    pub start_ms: u64,
    /// Sender's service port, so peers can give clients a leader hint.
    pub service_port: u16,
    /// `(id, host:replicatePort)` of every server the sender knows.
    pub servers: Vec<(u32, String)>,
    /// Membership of every group the sender hosts.
    pub groups: Vec<PingGroup>,
}

impl PingInfo {
    /// FNV-1a digest of the servers list and group membership (order-insensitive),
    /// shown in logs so operators can compare nodes at a glance.
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        let servers: BTreeMap<u32, &str> = self
            .servers
            .iter()
            .map(|(id, a)| (*id, a.as_str()))
            .collect();
        for (id, addr) in servers {
            feed(&id.to_le_bytes());
            feed(addr.as_bytes());
            feed(b";");
        }
        let groups: BTreeMap<u32, &PingGroup> =
            self.groups.iter().map(|g| (g.group_id, g)).collect();
        for (id, g) in groups {
            feed(&id.to_le_bytes());
            for m in sorted(&g.members) {
                feed(&m.to_le_bytes());
            }
            feed(b"/");
            for o in sorted(&g.observers) {
                feed(&o.to_le_bytes());
            }
            feed(&g.membership_index.to_le_bytes());
        }
        h
    }

    /// Encodes the ping body. Cost: one builder allocation and one copy.
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(256);
        let servers: Vec<_> = self
            .servers
            .iter()
            .map(|(id, addr)| {
                let address = fbb.create_string(addr);
                fb::PingServer::create(
                    &mut fbb,
                    &fb::PingServerArgs {
                        id: *id,
                        address: Some(address),
                    },
                )
            })
            .collect();
        let servers = fbb.create_vector(&servers);
        let groups: Vec<_> = self
            .groups
            .iter()
            .map(|g| {
                let members = fbb.create_vector(&g.members);
                let observers = fbb.create_vector(&g.observers);
                fb::PingGroup::create(
                    &mut fbb,
                    &fb::PingGroupArgs {
                        group_id: g.group_id,
                        members: Some(members),
                        observers: Some(observers),
                        membership_index: g.membership_index,
                    },
                )
            })
            .collect();
        let groups = fbb.create_vector(&groups);
        let root = fb::RaftPing::create(
            &mut fbb,
            &fb::RaftPingArgs {
                node_id: self.node_id,
                target_node_id: self.target_node_id,
                process_id: self.process_id,
                start_ms: self.start_ms,
                service_port: self.service_port,
                servers: Some(servers),
                groups: Some(groups),
                digest: self.digest(),
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes a ping body.
    pub fn decode(body: &[u8]) -> Result<PingInfo, BodyError> {
        let t =
            flatbuffers::root::<fb::RaftPing<'_>>(body).map_err(|e| BodyError::new("ping", e))?;
        let servers = t
            .servers()
            .map(|v| {
                v.iter()
                    .map(|s| (s.id(), s.address().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let groups = t
            .groups()
            .map(|v| {
                v.iter()
                    .map(|g| PingGroup {
                        group_id: g.group_id(),
                        members: u32_list(g.members()),
                        observers: u32_list(g.observers()),
                        membership_index: g.membership_index(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(PingInfo {
            node_id: t.node_id(),
            target_node_id: t.target_node_id(),
            process_id: t.process_id(),
            start_ms: t.start_ms(),
            service_port: t.service_port(),
            servers,
            groups,
        })
    }
}

fn sorted(ids: &[u32]) -> Vec<u32> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

fn fmt_ids(ids: &[u32]) -> String {
    let v: Vec<String> = sorted(ids).iter().map(u32::to_string).collect();
    format!("[{}]", v.join(", "))
}

/// Compares our view (`local`) with a peer's (`remote`). `expected_peer` is the
/// node id we believe the peer to be (0 when the peer connected to us and we
/// only learn its id from the ping). Returns every difference in plain words;
/// empty means the link may be used.
pub fn differences(local: &PingInfo, remote: &PingInfo, expected_peer: u32) -> Vec<String> {
    let mut out = Vec::new();
    let peer = remote.node_id;
    if expected_peer != 0 && peer != expected_peer {
        out.push(format!(
            "we expected node {expected_peer} at this address, but node {peer} answered"
        ));
    }
    if remote.target_node_id != 0 && remote.target_node_id != local.node_id {
        out.push(format!(
            "peer {peer} expected node {} at our address, but we are node {}",
            remote.target_node_id, local.node_id
        ));
    }
    if peer == local.node_id {
        out.push(format!("peer uses our own node id {peer}"));
    }
    let ours: BTreeMap<u32, &str> = local
        .servers
        .iter()
        .map(|(i, a)| (*i, a.as_str()))
        .collect();
    let theirs: BTreeMap<u32, &str> = remote
        .servers
        .iter()
        .map(|(i, a)| (*i, a.as_str()))
        .collect();
    if !theirs.contains_key(&local.node_id) {
        out.push(format!(
            "peer {peer} does not list us (node {}) in its servers",
            local.node_id
        ));
    }
    if !ours.contains_key(&peer) {
        out.push(format!("node {peer} is not in our servers"));
    }
    for (id, a) in &ours {
        if let Some(b) = theirs.get(id)
            && a != b
        {
            out.push(format!("peer {peer} has node {id} at {b}, we have {a}"));
        }
    }
    let their_groups: BTreeMap<u32, &PingGroup> =
        remote.groups.iter().map(|g| (g.group_id, g)).collect();
    for g in &local.groups {
        let Some(r) = their_groups.get(&g.group_id) else {
            continue;
        };
        if g.membership_index != r.membership_index {
            // One side is behind; it catches up through the log.
            continue;
        }
        let same = sorted(&g.members) == sorted(&r.members)
            && sorted(&g.observers) == sorted(&r.observers);
        if !same {
            let at = if g.membership_index == 0 {
                "both from the configuration file".to_string()
            } else {
                format!("both at membership index {}", g.membership_index)
            };
            out.push(format!(
                "group {}: peer {peer} has members {} observers {}, we have members {} \
                 observers {} ({at})",
                g.group_id,
                fmt_ids(&r.members),
                fmt_ids(&r.observers),
                fmt_ids(&g.members),
                fmt_ids(&g.observers),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: u32) -> PingInfo {
        PingInfo {
            node_id: node,
            target_node_id: 0,
            process_id: 100 + u64::from(node),
            start_ms: 1,
            service_port: 5000 + node as u16,
            servers: vec![
                (1, "127.0.0.1:4001".into()),
                (2, "127.0.0.1:4002".into()),
                (3, "127.0.0.1:4003".into()),
            ],
            groups: vec![PingGroup {
                group_id: 0,
                members: vec![1, 2, 3],
                observers: vec![],
                membership_index: 0,
            }],
        }
    }

    #[test]
    fn equal_views_have_no_difference() {
        let a = info(1);
        let mut b = info(2);
        b.target_node_id = 1;
        b.servers.reverse();
        b.groups[0].members = vec![3, 1, 2];
        assert!(differences(&a, &b, 2).is_empty());
        assert!(differences(&b, &a, 1).is_empty());
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn address_mismatch_is_named() {
        let a = info(1);
        let mut b = info(2);
        b.servers[2].1 = "127.0.0.1:4013".into();
        let d = differences(&a, &b, 2);
        assert_eq!(
            d,
            vec!["peer 2 has node 3 at 127.0.0.1:4013, we have 127.0.0.1:4003"]
        );
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn wrong_identity_is_named() {
        let a = info(1);
        let b = info(3);
        let d = differences(&a, &b, 2);
        assert!(d[0].contains("we expected node 2"), "{d:?}");
        let mut c = info(2);
        c.target_node_id = 3;
        let d = differences(&a, &c, 2);
        assert!(d[0].contains("expected node 3 at our address"), "{d:?}");
        let mut e = info(2);
        e.servers.retain(|(i, _)| *i != 1);
        let d = differences(&a, &e, 2);
        assert!(d[0].contains("does not list us"), "{d:?}");
        let mut f = info(4);
        f.servers.push((4, "127.0.0.1:4004".into()));
        let d = differences(&a, &f, 0);
        assert!(
            d.iter().any(|m| m.contains("node 4 is not in our servers")),
            "{d:?}"
        );
    }

    #[test]
    fn membership_mismatch_only_at_same_index() {
        let a = info(1);
        let mut b = info(2);
        b.groups[0].members = vec![1, 2];
        b.groups[0].observers = vec![3];
        let d = differences(&a, &b, 2);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].contains("group 0: peer 2 has members [1, 2] observers [3]"),
            "{d:?}"
        );
        assert!(d[0].contains("configuration file"), "{d:?}");
        b.groups[0].membership_index = 7;
        assert!(
            differences(&a, &b, 2).is_empty(),
            "behind is not a mismatch"
        );
        // A group only one side hosts is not compared.
        b.groups[0].group_id = 9;
        b.groups[0].membership_index = 0;
        assert!(differences(&a, &b, 2).is_empty());
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut a = info(1);
        a.target_node_id = 2;
        a.groups[0].membership_index = 42;
        a.groups[0].observers = vec![4];
        let decoded = PingInfo::decode(&a.encode()).expect("decode");
        assert_eq!(decoded, a);
        assert!(PingInfo::decode(&[1, 2, 3, 4, 5]).is_err());
        assert!(PingInfo::decode(&[]).is_err());
    }
}
