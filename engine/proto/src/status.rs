//! Status and readiness of groups and nodes, as published by the group tasks and
//! returned by the status command.
//!
//! A group task publishes an immutable [`GroupStatus`] copy after every change;
//! readers (admin, service handlers, the node status) never touch the group's
//! state itself.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::codec::{BodyError, u32_list};
use crate::generated::admin_generated::dongting::server::fb;

/// A node's role in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Campaigning for leadership.
    Candidate,
    /// The group's leader.
    Leader,
    /// Receives the log, never votes.
    Observer,
    /// The group is stopped on this node (removed, shutting down or failed).
    Stopped,
}

impl Role {
    /// Lower-case name used in logs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Observer => "observer",
            Role::Stopped => "stopped",
        }
    }

    fn to_fb(self) -> fb::Role {
        match self {
            Role::Follower => fb::Role::Follower,
            Role::Candidate => fb::Role::Candidate,
            Role::Leader => fb::Role::Leader,
            Role::Observer => fb::Role::Observer,
            Role::Stopped => fb::Role::Stopped,
        }
    }

    fn from_fb(r: fb::Role) -> Role {
        match r {
            fb::Role::Candidate => Role::Candidate,
            fb::Role::Leader => Role::Leader,
            fb::Role::Observer => Role::Observer,
            fb::Role::Stopped => Role::Stopped,
            _ => Role::Follower,
        }
    }
}

/// A pending joint configuration (between prepare and commit/abort).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JointStatus {
    /// Log index of the prepare entry; commit and abort name it.
    pub prepare_index: u64,
    /// Members of the target configuration.
    pub members: Vec<u32>,
    /// Observers of the target configuration.
    pub observers: Vec<u32>,
}

/// One group's status on one node. Cheap to clone (a few small vectors).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStatus {
    /// Group id.
    pub group_id: u32,
    /// Node reporting.
    pub node_id: u32,
    /// Role of the reporting node.
    pub role: Option<Role>,
    /// Current term.
    pub term: u64,
    /// Leader's node id, 0 when unknown.
    pub leader_id: u32,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied to the state machine.
    pub applied_index: u64,
    /// Last index in the local log.
    pub last_log_index: u64,
    /// `commit_index - applied_index`.
    pub apply_lag: u64,
    /// Voting members.
    pub members: Vec<u32>,
    /// Observers.
    pub observers: Vec<u32>,
    /// Pending joint configuration, if any.
    pub joint: Option<JointStatus>,
    /// Log index of the configuration entry in force (0: from the file).
    pub membership_index: u64,
    /// The last error the group hit (a storage failure stops the group), empty if none.
    pub last_error: String,
    /// Leader known and the first entry of its term applied on this node.
    pub ready: bool,
    /// Index of the latest local snapshot, 0 when none.
    pub snapshot_index: u64,
    /// Service endpoint of the leader (`host`, `port`), when known.
    pub leader_service: Option<(String, u16)>,
    /// Times this node saw the group's leader change to a new one since it
    /// started the group.
    pub leader_changes: u64,
    /// Elections (vote rounds, not pre-votes) this node started.
    pub elections: u64,
    /// DtKV nodes (values, directories, locks) in the group's state here.
    pub keys: u64,
    /// Client sessions kept for deduplication.
    pub sessions: u64,
    /// Watches registered on this node.
    pub watches: u64,
    /// Index of the last good scheduled backup this node knows (written
    /// here, or found in its backup directory at start), 0 when none.
    pub backup_index: u64,
    /// When that backup was written, ms since the Unix epoch (0: none).
    pub backup_ms: u64,
}

/// What a node knows about one peer link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerStatus {
    /// Peer's node id.
    pub node_id: u32,
    /// Peer's `host:replicatePort`.
    pub address: String,
    /// A connection is established.
    pub connected: bool,
    /// The config check passed on the current connection.
    pub config_checked: bool,
    /// Why the link is down or refused, empty when fine.
    pub message: String,
    /// Peer's service port, learned from the config check (0 until then).
    pub service_port: u16,
}

/// A node's status: its peers and every group it hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// This node's id.
    pub node_id: u32,
    /// Operating-system process id.
    pub process_id: u64,
    /// Every peer reachable and config-checked.
    pub ready: bool,
    /// Every peer of the servers list.
    pub peers: Vec<PeerStatus>,
    /// Every hosted group (or the one asked for).
    pub groups: Vec<GroupStatus>,
    /// This node's service port.
    pub service_port: u16,
}

fn build_group<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    g: &GroupStatus,
) -> WIPOffset<fb::GroupStatus<'a>> {
    let members = fbb.create_vector(&g.members);
    let observers = fbb.create_vector(&g.observers);
    let joint = g.joint.as_ref().map(|j| {
        let m = fbb.create_vector(&j.members);
        let o = fbb.create_vector(&j.observers);
        fb::JointStatus::create(
            fbb,
            &fb::JointStatusArgs {
                prepare_index: j.prepare_index,
                members: Some(m),
                observers: Some(o),
            },
        )
    });
    let last_error = fbb.create_string(&g.last_error);
    let leader_host = g.leader_service.as_ref().map(|(h, _)| fbb.create_string(h));
    fb::GroupStatus::create(
        fbb,
        &fb::GroupStatusArgs {
            group_id: g.group_id,
            node_id: g.node_id,
            role: g.role.unwrap_or(Role::Stopped).to_fb(),
            term: g.term,
            leader_id: g.leader_id,
            commit_index: g.commit_index,
            applied_index: g.applied_index,
            last_log_index: g.last_log_index,
            apply_lag: g.apply_lag,
            members: Some(members),
            observers: Some(observers),
            joint,
            membership_index: g.membership_index,
            last_error: Some(last_error),
            ready: g.ready,
            snapshot_index: g.snapshot_index,
            leader_host,
            leader_port: g.leader_service.as_ref().map(|(_, p)| *p).unwrap_or(0),
            leader_changes: g.leader_changes,
            elections: g.elections,
            keys: g.keys,
            sessions: g.sessions,
            watches: g.watches,
            backup_index: g.backup_index,
            backup_ms: g.backup_ms,
        },
    )
}

fn read_group(t: fb::GroupStatus<'_>) -> GroupStatus {
    GroupStatus {
        group_id: t.group_id(),
        node_id: t.node_id(),
        role: Some(Role::from_fb(t.role())),
        term: t.term(),
        leader_id: t.leader_id(),
        commit_index: t.commit_index(),
        applied_index: t.applied_index(),
        last_log_index: t.last_log_index(),
        apply_lag: t.apply_lag(),
        members: u32_list(t.members()),
        observers: u32_list(t.observers()),
        joint: t.joint().map(|j| JointStatus {
            prepare_index: j.prepare_index(),
            members: u32_list(j.members()),
            observers: u32_list(j.observers()),
        }),
        membership_index: t.membership_index(),
        last_error: t.last_error().unwrap_or_default().to_string(),
        ready: t.ready(),
        snapshot_index: t.snapshot_index(),
        leader_service: t
            .leader_host()
            .filter(|h| !h.is_empty() && t.leader_port() != 0)
            .map(|h| (h.to_string(), t.leader_port())),
        leader_changes: t.leader_changes(),
        elections: t.elections(),
        keys: t.keys(),
        sessions: t.sessions(),
        watches: t.watches(),
        backup_index: t.backup_index(),
        backup_ms: t.backup_ms(),
    }
}

impl NodeStatus {
    /// Encodes the status body (`NodeStatus` table of `schema/admin.fbs`).
    pub fn encode(&self) -> Bytes {
        let mut fbb = FlatBufferBuilder::with_capacity(512);
        let peers: Vec<_> = self
            .peers
            .iter()
            .map(|p| {
                let address = fbb.create_string(&p.address);
                let message = fbb.create_string(&p.message);
                fb::PeerStatus::create(
                    &mut fbb,
                    &fb::PeerStatusArgs {
                        node_id: p.node_id,
                        address: Some(address),
                        connected: p.connected,
                        config_checked: p.config_checked,
                        message: Some(message),
                        service_port: p.service_port,
                    },
                )
            })
            .collect();
        let peers = fbb.create_vector(&peers);
        let groups: Vec<_> = self
            .groups
            .iter()
            .map(|g| build_group(&mut fbb, g))
            .collect();
        let groups = fbb.create_vector(&groups);
        let root = fb::NodeStatus::create(
            &mut fbb,
            &fb::NodeStatusArgs {
                node_id: self.node_id,
                process_id: self.process_id,
                ready: self.ready,
                peers: Some(peers),
                groups: Some(groups),
                service_port: self.service_port,
            },
        );
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes a status body.
    pub fn decode(body: &[u8]) -> Result<NodeStatus, BodyError> {
        let t = flatbuffers::root::<fb::NodeStatus<'_>>(body)
            .map_err(|e| BodyError::new("node status", e))?;
        Ok(NodeStatus {
            node_id: t.node_id(),
            process_id: t.process_id(),
            ready: t.ready(),
            peers: t
                .peers()
                .map(|v| {
                    v.iter()
                        .map(|p| PeerStatus {
                            node_id: p.node_id(),
                            address: p.address().unwrap_or_default().to_string(),
                            connected: p.connected(),
                            config_checked: p.config_checked(),
                            message: p.message().unwrap_or_default().to_string(),
                            service_port: p.service_port(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            groups: t
                .groups()
                .map(|v| v.iter().map(read_group).collect())
                .unwrap_or_default(),
            service_port: t.service_port(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_status_round_trip() {
        let s = NodeStatus {
            node_id: 2,
            process_id: 77,
            ready: true,
            service_port: 5002,
            peers: vec![PeerStatus {
                node_id: 1,
                address: "127.0.0.1:4001".into(),
                connected: true,
                config_checked: false,
                message: "group 0 differs".into(),
                service_port: 5001,
            }],
            groups: vec![
                GroupStatus {
                    group_id: 3,
                    node_id: 2,
                    role: Some(Role::Leader),
                    term: 5,
                    leader_id: 2,
                    commit_index: 10,
                    applied_index: 9,
                    last_log_index: 11,
                    apply_lag: 1,
                    members: vec![1, 2, 3],
                    observers: vec![4],
                    joint: Some(JointStatus {
                        prepare_index: 8,
                        members: vec![1, 2, 4],
                        observers: vec![],
                    }),
                    membership_index: 8,
                    last_error: String::new(),
                    ready: true,
                    snapshot_index: 4,
                    leader_service: Some(("127.0.0.1".into(), 5002)),
                    leader_changes: 3,
                    elections: 2,
                    keys: 10,
                    sessions: 4,
                    watches: 1,
                    backup_index: 9,
                    backup_ms: 1_700_000_000_123,
                },
                GroupStatus {
                    role: Some(Role::Observer),
                    ..GroupStatus::default()
                },
            ],
        };
        assert_eq!(NodeStatus::decode(&s.encode()).expect("decode"), s);
        assert!(NodeStatus::decode(b"garbage!").is_err());
    }
}
