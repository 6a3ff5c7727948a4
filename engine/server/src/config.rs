//! Node configuration: one TOML file per node, overridable by `key=value` pairs.
//!
//! The file names every server of the cluster, this node's id and ports, its data
//! directory and the raft groups it hosts. [`NodeConfig::load`] reads the file,
//! applies overrides, and refuses anything invalid with a [`ConfigError`] that names
//! the offending field. `docs/configuration.md` lists every setting with its default,
//! unit and the Java original's name.
//!
//! ```
//! use dongting_server::config::NodeConfig;
//!
//! let text = r#"
//! node_id = 1
//! data_dir = "/tmp/dt1"
//! service_port = 5001
//! servers = [
//!   { id = 1, address = "127.0.0.1:4001" },
//!   { id = 2, address = "127.0.0.1:4002" },
//!   { id = 3, address = "127.0.0.1:4003" },
//! ]
//! [[groups]]
//! id = 0
//! members = [1, 2, 3]
//! "#;
//! let cfg = NodeConfig::from_toml_str(text, &[("elect_timeout_ms".into(), "6000".into())])?;
//! assert_eq!(cfg.elect_timeout_ms, 6000);
//! assert!(cfg.group_settings(0).expect("group 0").sync_force);
//! # Ok::<(), dongting_server::config::ConfigError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration that cannot be used, with the field at fault.
///
/// `field` is the dotted path of the setting (`servers[2].address`,
/// `groups[0].members`, `limits.max_value_bytes`), or `file` when the file itself
/// could not be read or parsed as TOML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending setting.
    pub field: String,
    /// What is wrong with it, in plain words.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One server of the cluster: its node id and the `host:replicatePort` that peers
/// and admin tools connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// Node id, unique in the cluster, greater than 0.
    pub id: u32,
    /// `host:replicatePort`, for example `10.0.0.1:4000`; the host may be a name.
    pub address: String,
}

/// Settings every raft group takes unless the group overrides them
/// (`[group_defaults]` in the file; each may also be set in a `[[groups]]` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSettings {
    /// fsync the log before acknowledging (original `syncForce`). Default true.
    pub sync_force: bool,
    /// Seconds between automatic snapshots; 0 disables them
    /// (original `saveSnapshotSeconds`). Default 3600.
    pub save_snapshot_seconds: u64,
    /// Snapshots kept on disk, at least 1 (original `maxKeepSnapshots`). Default 2.
    pub max_keep_snapshots: u32,
    /// Save a snapshot during graceful shutdown (original `saveSnapshotWhenClose`).
    /// Default true.
    pub save_snapshot_when_close: bool,
    /// Seconds to wait after a snapshot before deleting the log it covers
    /// (original `autoDeleteLogDelaySeconds`). Default 60.
    pub auto_delete_log_delay_seconds: u64,
    /// Delete log files covered by a snapshot (original
    /// `deleteLogsAfterTakeSnapshot`). Default true.
    pub delete_logs_after_take_snapshot: bool,
    /// Most entries in flight to one follower (original `maxReplicateItems`).
    /// Default 50000.
    pub max_replicate_items: u32,
    /// Most bytes in flight to one follower (original `maxReplicateBytes`).
    /// Default 16 MiB.
    pub max_replicate_bytes: u64,
    /// Memory budget of the log's cache of recent entries, in bytes of
    /// payload: replication to a follower that keeps up reads from it instead
    /// of the disk. 0 keeps only the newest entry. Default 64 MiB.
    pub log_cache_bytes: u64,
    /// Directory the group's leader writes scheduled backup files into
    /// (`dongting backup` format); absent: no scheduled backups. A relative
    /// path is taken relative to the config file's directory. Default absent.
    pub backup_dir: Option<PathBuf>,
    /// Seconds between scheduled backups, at least 1. Default 3600.
    pub backup_interval_seconds: u64,
    /// Scheduled backups of the group kept in `backup_dir`, at least 1; the
    /// oldest beyond it are deleted after each backup. Default 7.
    pub backup_keep: u32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            sync_force: true,
            save_snapshot_seconds: 3600,
            max_keep_snapshots: 2,
            save_snapshot_when_close: true,
            auto_delete_log_delay_seconds: 60,
            delete_logs_after_take_snapshot: true,
            max_replicate_items: 50_000,
            max_replicate_bytes: 16 * 1024 * 1024,
            log_cache_bytes: 64 * 1024 * 1024,
            backup_dir: None,
            backup_interval_seconds: 3600,
            backup_keep: 7,
        }
    }
}

/// One raft group hosted by the cluster, as written in a `[[groups]]` entry.
///
/// `members` and `observers` seed a group that has no state on disk yet; once the
/// group has a log, the membership recorded in it (changed through the admin API)
/// is what the node uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group id (original `groupId`).
    pub id: u32,
    /// Voting members' node ids (original `nodeIdOfMembers`).
    pub members: Vec<u32>,
    /// Observers' node ids: they receive the log but never vote
    /// (original `nodeIdOfObservers`).
    #[serde(default)]
    pub observers: Vec<u32>,
    /// Overrides `group_defaults.sync_force`.
    #[serde(default)]
    pub sync_force: Option<bool>,
    /// Overrides `group_defaults.save_snapshot_seconds`.
    #[serde(default)]
    pub save_snapshot_seconds: Option<u64>,
    /// Overrides `group_defaults.max_keep_snapshots`.
    #[serde(default)]
    pub max_keep_snapshots: Option<u32>,
    /// Overrides `group_defaults.save_snapshot_when_close`.
    #[serde(default)]
    pub save_snapshot_when_close: Option<bool>,
    /// Overrides `group_defaults.auto_delete_log_delay_seconds`.
    #[serde(default)]
    pub auto_delete_log_delay_seconds: Option<u64>,
    /// Overrides `group_defaults.delete_logs_after_take_snapshot`.
    #[serde(default)]
    pub delete_logs_after_take_snapshot: Option<bool>,
    /// Overrides `group_defaults.max_replicate_items`.
    #[serde(default)]
    pub max_replicate_items: Option<u32>,
    /// Overrides `group_defaults.max_replicate_bytes`.
    #[serde(default)]
    pub max_replicate_bytes: Option<u64>,
    /// Overrides `group_defaults.log_cache_bytes`.
    #[serde(default)]
    pub log_cache_bytes: Option<u64>,
    /// Overrides `group_defaults.backup_dir`.
    #[serde(default)]
    pub backup_dir: Option<PathBuf>,
    /// Overrides `group_defaults.backup_interval_seconds`.
    #[serde(default)]
    pub backup_interval_seconds: Option<u64>,
    /// Overrides `group_defaults.backup_keep`.
    #[serde(default)]
    pub backup_keep: Option<u32>,
}

impl GroupConfig {
    /// A group entry with the given membership and no overrides.
    pub fn new(id: u32, members: Vec<u32>, observers: Vec<u32>) -> Self {
        GroupConfig {
            id,
            members,
            observers,
            sync_force: None,
            save_snapshot_seconds: None,
            max_keep_snapshots: None,
            save_snapshot_when_close: None,
            auto_delete_log_delay_seconds: None,
            delete_logs_after_take_snapshot: None,
            max_replicate_items: None,
            max_replicate_bytes: None,
            log_cache_bytes: None,
            backup_dir: None,
            backup_interval_seconds: None,
            backup_keep: None,
        }
    }

    /// The settings this group runs with: its overrides over `defaults`.
    pub fn effective(&self, defaults: &GroupSettings) -> GroupSettings {
        GroupSettings {
            sync_force: self.sync_force.unwrap_or(defaults.sync_force),
            save_snapshot_seconds: self
                .save_snapshot_seconds
                .unwrap_or(defaults.save_snapshot_seconds),
            max_keep_snapshots: self
                .max_keep_snapshots
                .unwrap_or(defaults.max_keep_snapshots),
            save_snapshot_when_close: self
                .save_snapshot_when_close
                .unwrap_or(defaults.save_snapshot_when_close),
            auto_delete_log_delay_seconds: self
                .auto_delete_log_delay_seconds
                .unwrap_or(defaults.auto_delete_log_delay_seconds),
            delete_logs_after_take_snapshot: self
                .delete_logs_after_take_snapshot
                .unwrap_or(defaults.delete_logs_after_take_snapshot),
            max_replicate_items: self
                .max_replicate_items
                .unwrap_or(defaults.max_replicate_items),
            max_replicate_bytes: self
                .max_replicate_bytes
                .unwrap_or(defaults.max_replicate_bytes),
            log_cache_bytes: self.log_cache_bytes.unwrap_or(defaults.log_cache_bytes),
            backup_dir: self
                .backup_dir
                .clone()
                .or_else(|| defaults.backup_dir.clone()),
            backup_interval_seconds: self
                .backup_interval_seconds
                .unwrap_or(defaults.backup_interval_seconds),
            backup_keep: self.backup_keep.unwrap_or(defaults.backup_keep),
        }
    }
}

/// Limits on what clients may send (`[limits]` in the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest key in bytes. Default 8192 (8 KiB).
    pub max_key_bytes: u32,
    /// Longest value in bytes. Default 1048576 (1 MiB).
    pub max_value_bytes: u32,
    /// Most client writes a group accepts but has not yet answered; past it new
    /// writes are refused with a retryable "busy" error (original
    /// `maxPendingRaftTasks`). Default 50000.
    pub max_pending_writes: u32,
    /// Most bytes of client writes a group holds unanswered (original
    /// `maxPendingTaskBytes`). Default 256 MiB.
    pub max_pending_write_bytes: u64,
    /// Largest frame the node accepts on either port. Default 5 MiB.
    pub max_frame_bytes: u32,
    /// Connections the service port keeps open at once (handshaken or not);
    /// more are closed on accept. They never count against the replicate
    /// port. Default 10000.
    pub max_client_connections: u32,
    /// Connections the replicate port (peers and admin tools) keeps open at
    /// once; at least the number of servers. Default 1000.
    pub max_peer_connections: u32,
    /// Bytes the node holds at most of incomplete request frames larger than
    /// 64 KiB, over both ports: such a frame reserves its whole length before
    /// its body is read, and a connection that finds no room stops reading
    /// until some is given back. The service port may fill three quarters;
    /// the last quarter is kept for the replicate port. At least four frames
    /// of `max_frame_bytes`. Default 256 MiB.
    pub max_buffered_request_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 8 * 1024,
            max_value_bytes: 1024 * 1024,
            max_pending_writes: 50_000,
            max_pending_write_bytes: 256 * 1024 * 1024,
            max_frame_bytes: 5 * 1024 * 1024,
            max_client_connections: 10_000,
            max_peer_connections: 1_000,
            max_buffered_request_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The whole configuration of one node. Read it with [`NodeConfig::load`] or
/// [`NodeConfig::from_toml_str`]; both validate. A value built in code should be
/// checked with [`NodeConfig::validate`] before use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id; must appear in `servers` (original `nodeId`).
    pub node_id: u32,
    /// Directory holding every group's log, snapshots and hard state.
    pub data_dir: PathBuf,
    /// Port clients connect to (original `servicePort`). The replicate port is the
    /// port of this node's entry in `servers` (original `replicatePort`).
    pub service_port: u16,
    /// Host both ports bind to; defaults to the host of this node's `servers` entry.
    #[serde(default)]
    pub bind_host: Option<String>,
    /// Port of the HTTP endpoints (`/metrics`, `/livez`, `/readyz`, `/status`)
    /// on the same host; off when absent.
    #[serde(default)]
    pub http_port: Option<u16>,
    /// Milliseconds a client of the HTTP port has to send a whole request
    /// head, counted from the connection's start or from the end of the
    /// previous answer on it; the connection is closed past it, so a client
    /// that trickles its head or says nothing holds no connection longer.
    /// Default 10000.
    #[serde(default = "default_http_request_timeout_ms")]
    pub http_request_timeout_ms: u64,
    /// Every server of the cluster (original `servers`, written there as
    /// `"1,host:port;2,host:port"`).
    pub servers: Vec<ServerEntry>,
    /// Groups this node hosts at start (it must be a member or observer of each).
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// Election timeout in milliseconds (original `electTimeout`). Default 15000.
    #[serde(default = "default_elect_timeout_ms")]
    pub elect_timeout_ms: u64,
    /// Timeout of one RPC between peers in milliseconds (original `rpcTimeout`).
    /// Default 5000.
    #[serde(default = "default_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// Timeout of one TCP connect to a peer in milliseconds (original
    /// `connectTimeout`). Default 2000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Interval between leader heartbeats in milliseconds (original
    /// `heartbeatInterval`). Default 2000.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// Exchange and compare configuration with every peer on each (re)connection
    /// ("raft ping"); a mismatch refuses the link. Default true (the original's
    /// `checkSelf`-style ping defaults to off).
    #[serde(default = "default_true")]
    pub check_config_on_connect: bool,
    /// Interval in milliseconds after which an idle watch stream gets a
    /// heartbeat push carrying its progress index (original
    /// `watchHeartbeatMillis`). Clients treat a stream silent for twice this
    /// long as dead and re-register it. Default 60000.
    #[serde(default = "default_watch_heartbeat_ms")]
    pub watch_heartbeat_ms: u64,
    /// A client connection on the service port that sent nothing for this
    /// many milliseconds is closed, unless it has requests in flight, a watch
    /// registered or a lock wait pending. Clients learn it in the handshake
    /// and ping before it. 0 never closes them. Default 600000 (10 minutes).
    #[serde(default = "default_client_idle_timeout_ms")]
    pub client_idle_timeout_ms: u64,
    /// An fsync of a group's log at least this slow (milliseconds) is logged
    /// at WARN (`slow fsync`). Default 1000.
    #[serde(default = "default_slow_fsync_warn_ms")]
    pub slow_fsync_warn_ms: u64,
    /// A group with at least this many committed entries not yet applied
    /// here, and growing, logs `apply lag growing` at WARN (at most every
    /// 10 s). Default 10000.
    #[serde(default = "default_apply_lag_warn_entries")]
    pub apply_lag_warn_entries: u64,
    /// On shutdown, how long each group this node leads may take to hand
    /// leadership to another voter before it stops anyway, in milliseconds.
    /// 0 turns the hand-over off (followers then wait out an election
    /// timeout). Must be below `elect_timeout_ms`: an election is no slower.
    /// Default (absent): 2000, or half of `elect_timeout_ms` when that is less.
    #[serde(default)]
    pub shutdown_transfer_timeout_ms: Option<u64>,
    /// Settings every group takes unless it overrides them.
    #[serde(default)]
    pub group_defaults: GroupSettings,
    /// Client request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Node-local dial overrides (`[dial]`, server id as key): the `host:port`
    /// this node connects to in order to reach that server, instead of the
    /// server's `servers` address (a port forward, sidecar or proxy in
    /// between). Not part of the configuration peers compare. Default empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dial: BTreeMap<String, String>,
}

/// `shutdown_transfer_timeout_ms` when absent, unless half of
/// `elect_timeout_ms` is less.
const DEFAULT_SHUTDOWN_TRANSFER_TIMEOUT_MS: u64 = 2_000;

fn default_elect_timeout_ms() -> u64 {
    15_000
}
fn default_rpc_timeout_ms() -> u64 {
    5_000
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_heartbeat_interval_ms() -> u64 {
    2_000
}
fn default_watch_heartbeat_ms() -> u64 {
    60_000
}
fn default_client_idle_timeout_ms() -> u64 {
    600_000
}
fn default_slow_fsync_warn_ms() -> u64 {
    1_000
}
fn default_apply_lag_warn_entries() -> u64 {
    10_000
}
fn default_http_request_timeout_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}

/// Largest timeout any `_ms` setting accepts: one day.
const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// Shortest `client_idle_timeout_ms` other than 0: clients ping four times as
/// often as it.
const MIN_CLIENT_IDLE_TIMEOUT_MS: u64 = 100;

/// The dotted keys `--set key=value` overrides may name: every scalar setting.
pub const OVERRIDABLE_KEYS: &[&str] = &[
    "node_id",
    "data_dir",
    "service_port",
    "bind_host",
    "http_port",
    "http_request_timeout_ms",
    "elect_timeout_ms",
    "rpc_timeout_ms",
    "connect_timeout_ms",
    "heartbeat_interval_ms",
    "check_config_on_connect",
    "watch_heartbeat_ms",
    "client_idle_timeout_ms",
    "slow_fsync_warn_ms",
    "apply_lag_warn_entries",
    "shutdown_transfer_timeout_ms",
    "group_defaults.sync_force",
    "group_defaults.save_snapshot_seconds",
    "group_defaults.max_keep_snapshots",
    "group_defaults.save_snapshot_when_close",
    "group_defaults.auto_delete_log_delay_seconds",
    "group_defaults.delete_logs_after_take_snapshot",
    "group_defaults.max_replicate_items",
    "group_defaults.max_replicate_bytes",
    "group_defaults.log_cache_bytes",
    "group_defaults.backup_dir",
    "group_defaults.backup_interval_seconds",
    "group_defaults.backup_keep",
    "limits.max_key_bytes",
    "limits.max_value_bytes",
    "limits.max_pending_writes",
    "limits.max_pending_write_bytes",
    "limits.max_frame_bytes",
    "limits.max_client_connections",
    "limits.max_peer_connections",
    "limits.max_buffered_request_bytes",
];

impl NodeConfig {
    /// Reads, overrides and validates the file at `path`. A relative `data_dir`
    /// is taken relative to the file's directory. Costs one file read.
    pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("file", format!("cannot read {}: {e}", path.display()))
        })?;
        let mut cfg = Self::parse(&text, overrides)?;
        if cfg.data_dir.is_relative()
            && let Some(dir) = path.parent()
        {
            cfg.data_dir = dir.join(&cfg.data_dir);
        }
        if let Some(dir) = path.parent() {
            let fix = |p: &mut Option<PathBuf>| {
                if let Some(b) = p
                    && b.is_relative()
                {
                    *b = dir.join(&*b);
                }
            };
            fix(&mut cfg.group_defaults.backup_dir);
            for g in &mut cfg.groups {
                fix(&mut g.backup_dir);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses, overrides and validates TOML text. `data_dir` is kept as written.
    pub fn from_toml_str(text: &str, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let cfg = Self::parse(text, overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn parse(text: &str, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let rewritten;
        let text = if overrides.is_empty() {
            text
        } else {
            let mut table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::new("file", syntax_message(text, &e)))?;
            for (key, value) in overrides {
                apply_override(&mut table, key, value)?;
            }
            rewritten =
                toml::to_string(&table).map_err(|e| ConfigError::new("file", e.to_string()))?;
            rewritten.as_str()
        };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("file", syntax_message(text, &e)))?;
        serde_path_to_error::deserialize::<_, NodeConfig>(de).map_err(|e| {
            let path = e.path().to_string();
            let mut msg = toml_message(e.inner());
            if let Some(line) = e.inner().span().map(|s| line_of(text, s.start)) {
                msg = format!("{msg} (line {line})");
            }
            let named = field_of_serde_error(&msg);
            let field = match (path.as_str(), named) {
                ("." | "", Some(n)) => n,
                ("." | "", None) => "file".to_string(),
                // serde_path_to_error stops at the struct that misses the field.
                (p, Some(n)) if msg.contains("missing field") => format!("{p}.{n}"),
                (p, _) => p.to_string(),
            };
            ConfigError::new(field, msg)
        })
    }

    /// Renders the configuration as TOML that [`NodeConfig::from_toml_str`] reads back.
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::new("file", e.to_string()))
    }

    /// Checks every rule a usable configuration must meet; the error names the
    /// first field that breaks one. Costs a pass over servers and groups.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::new("node_id", "must be greater than 0"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }
        if self.service_port == 0 {
            return Err(ConfigError::new(
                "service_port",
                "must be between 1 and 65535",
            ));
        }
        if let Some(host) = &self.bind_host
            && (host.trim().is_empty() || host.contains(char::is_whitespace))
        {
            return Err(ConfigError::new(
                "bind_host",
                format!("`{host}` is not a host name or address"),
            ));
        }
        if self.servers.is_empty() {
            return Err(ConfigError::new("servers", "must list at least this node"));
        }
        let mut ids = BTreeSet::new();
        let mut endpoints: BTreeMap<(String, u16), usize> = BTreeMap::new();
        for (i, s) in self.servers.iter().enumerate() {
            let field = format!("servers[{i}]");
            if s.id == 0 {
                return Err(ConfigError::new(
                    format!("{field}.id"),
                    "must be greater than 0",
                ));
            }
            if !ids.insert(s.id) {
                return Err(ConfigError::new(
                    format!("{field}.id"),
                    format!("node id {} is listed twice", s.id),
                ));
            }
            let (host, port) = parse_address(&s.address)
                .map_err(|m| ConfigError::new(format!("{field}.address"), m))?;
            if let Some(j) = endpoints.insert((host.clone(), port), i) {
                return Err(ConfigError::new(
                    format!("{field}.address"),
                    format!(
                        "{} is also the address of servers[{j}]: duplicate port",
                        s.address
                    ),
                ));
            }
        }
        let me = self
            .servers
            .iter()
            .find(|s| s.id == self.node_id)
            .ok_or_else(|| {
                ConfigError::new(
                    "node_id",
                    format!(
                        "node id {} is not in servers (ids there: {})",
                        self.node_id,
                        join_ids(ids.iter().copied())
                    ),
                )
            })?;
        let (my_host, my_replicate_port) =
            parse_address(&me.address).map_err(|m| ConfigError::new("servers", m))?;
        if my_replicate_port == self.service_port {
            return Err(ConfigError::new(
                "service_port",
                format!(
                    "{} is also this node's replicate port ({}): duplicate port",
                    self.service_port, me.address
                ),
            ));
        }
        let bind = self.bind_host.clone().unwrap_or(my_host);
        for (i, s) in self.servers.iter().enumerate() {
            if s.id == self.node_id {
                continue;
            }
            if let Ok((host, port)) = parse_address(&s.address)
                && host == bind
                && port == self.service_port
            {
                return Err(ConfigError::new(
                    "service_port",
                    format!(
                        "{}:{} is the replicate address of servers[{i}] (node {}): duplicate port",
                        host, port, s.id
                    ),
                ));
            }
        }
        if let Some(http) = self.http_port {
            let taken = if http == 0 {
                Some("port 0 is not a port".to_string())
            } else if http == my_replicate_port {
                Some(format!(
                    "{http} is also this node's replicate port ({})",
                    me.address
                ))
            } else if http == self.service_port {
                Some(format!("{http} is also this node's service_port"))
            } else {
                self.servers.iter().enumerate().find_map(|(i, s)| {
                    let (host, port) = parse_address(&s.address).ok()?;
                    (host == bind && port == http).then(|| {
                        format!(
                            "{host}:{port} is the replicate address of servers[{i}] (node {})",
                            s.id
                        )
                    })
                })
            };
            if let Some(why) = taken {
                return Err(ConfigError::new(
                    "http_port",
                    format!("{why}: duplicate port"),
                ));
            }
        }
        self.validate_dial(&ids)?;
        self.validate_timeouts()?;
        validate_settings("group_defaults", &self.group_defaults)?;
        self.validate_limits()?;
        let mut group_ids = BTreeSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let field = format!("groups[{i}]");
            if !group_ids.insert(g.id) {
                return Err(ConfigError::new(
                    format!("{field}.id"),
                    format!("group id {} is listed twice", g.id),
                ));
            }
            validate_membership(&field, &g.members, &g.observers, &ids)?;
            if !g.members.contains(&self.node_id) && !g.observers.contains(&self.node_id) {
                return Err(ConfigError::new(
                    format!("{field}.members"),
                    format!(
                        "this node ({}) is neither a member nor an observer of group {}",
                        self.node_id, g.id
                    ),
                ));
            }
            validate_settings(&field, &g.effective(&self.group_defaults))?;
        }
        Ok(())
    }

    fn validate_dial(&self, ids: &BTreeSet<u32>) -> Result<(), ConfigError> {
        for (key, address) in &self.dial {
            let field = format!("dial.{key}");
            let id: u32 = key
                .parse()
                .map_err(|_| ConfigError::new(&field, format!("`{key}` is not a server id")))?;
            if !ids.contains(&id) {
                return Err(ConfigError::new(
                    &field,
                    format!(
                        "node id {id} is not in servers (ids there: {})",
                        join_ids(ids.iter().copied())
                    ),
                ));
            }
            if id == self.node_id {
                return Err(ConfigError::new(
                    &field,
                    format!("node id {id} is this node: it never dials itself"),
                ));
            }
            parse_address(address).map_err(|m| ConfigError::new(&field, m))?;
        }
        Ok(())
    }

    /// How long a group this node leads may take to hand leadership over on
    /// shutdown; zero when the hand-over is off.
    pub fn shutdown_transfer_timeout(&self) -> Duration {
        let ms = self
            .shutdown_transfer_timeout_ms
            .unwrap_or(DEFAULT_SHUTDOWN_TRANSFER_TIMEOUT_MS.min(self.elect_timeout_ms / 2));
        Duration::from_millis(ms)
    }

    /// The `host:port` this node dials to reach server `id`: its `[dial]`
    /// override, else its `servers` address.
    pub fn dial_address(&self, id: u32) -> Option<&str> {
        if let Some(a) = self.dial.get(&id.to_string()) {
            return Some(a.as_str());
        }
        self.servers
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.address.as_str())
    }

    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("elect_timeout_ms", self.elect_timeout_ms),
            ("rpc_timeout_ms", self.rpc_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("watch_heartbeat_ms", self.watch_heartbeat_ms),
            ("http_request_timeout_ms", self.http_request_timeout_ms),
        ] {
            if v == 0 || v > MAX_TIMEOUT_MS {
                return Err(ConfigError::new(
                    name,
                    format!("{v} is out of range: must be between 1 and {MAX_TIMEOUT_MS} ms"),
                ));
            }
        }
        let idle = self.client_idle_timeout_ms;
        if idle != 0 && !(MIN_CLIENT_IDLE_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&idle) {
            return Err(ConfigError::new(
                "client_idle_timeout_ms",
                format!(
                    "{idle} is out of range: must be 0 (never) or between \
                     {MIN_CLIENT_IDLE_TIMEOUT_MS} and {MAX_TIMEOUT_MS} ms"
                ),
            ));
        }
        if self.slow_fsync_warn_ms == 0 || self.slow_fsync_warn_ms > MAX_TIMEOUT_MS {
            return Err(ConfigError::new(
                "slow_fsync_warn_ms",
                format!(
                    "{} is out of range: must be between 1 and {MAX_TIMEOUT_MS} ms",
                    self.slow_fsync_warn_ms
                ),
            ));
        }
        if self.apply_lag_warn_entries == 0 {
            return Err(ConfigError::new(
                "apply_lag_warn_entries",
                "0 is out of range: must be at least 1 entry",
            ));
        }
        if self.elect_timeout_ms < 100 {
            return Err(ConfigError::new(
                "elect_timeout_ms",
                format!("{} ms is too short: at least 100 ms", self.elect_timeout_ms),
            ));
        }
        if let Some(t) = self.shutdown_transfer_timeout_ms
            && t >= self.elect_timeout_ms
        {
            return Err(ConfigError::new(
                "shutdown_transfer_timeout_ms",
                format!(
                    "{t} ms is not below elect_timeout_ms ({} ms): an election would hand \
                     leadership over no later; use 0 to turn the hand-over off",
                    self.elect_timeout_ms
                ),
            ));
        }
        if self.heartbeat_interval_ms.saturating_mul(2) > self.elect_timeout_ms {
            return Err(ConfigError::new(
                "heartbeat_interval_ms",
                format!(
                    "{} ms is more than half of elect_timeout_ms ({} ms): followers would start \
                     elections between heartbeats",
                    self.heartbeat_interval_ms, self.elect_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_key_bytes == 0 || l.max_key_bytes > 64 * 1024 {
            return Err(ConfigError::new(
                "limits.max_key_bytes",
                format!(
                    "{} is out of range: must be between 1 and 65536",
                    l.max_key_bytes
                ),
            ));
        }
        if l.max_value_bytes == 0 {
            return Err(ConfigError::new(
                "limits.max_value_bytes",
                "must be greater than 0",
            ));
        }
        if l.max_frame_bytes < 1024 {
            return Err(ConfigError::new(
                "limits.max_frame_bytes",
                format!("{} is too small: at least 1024", l.max_frame_bytes),
            ));
        }
        let needed = u64::from(l.max_key_bytes) + u64::from(l.max_value_bytes) + 256;
        if u64::from(l.max_frame_bytes) < needed {
            return Err(ConfigError::new(
                "limits.max_value_bytes",
                format!(
                    "a key of max_key_bytes ({}) and a value of max_value_bytes ({}) do not fit \
                     in one frame of max_frame_bytes ({})",
                    l.max_key_bytes, l.max_value_bytes, l.max_frame_bytes
                ),
            ));
        }
        if l.max_pending_writes == 0 {
            return Err(ConfigError::new(
                "limits.max_pending_writes",
                "must be greater than 0",
            ));
        }
        if l.max_pending_write_bytes < u64::from(l.max_value_bytes) {
            return Err(ConfigError::new(
                "limits.max_pending_write_bytes",
                format!(
                    "{} is less than max_value_bytes ({}): no large write could ever be accepted",
                    l.max_pending_write_bytes, l.max_value_bytes
                ),
            ));
        }
        self.validate_connection_limits()
    }

    fn validate_connection_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_client_connections == 0 {
            return Err(ConfigError::new(
                "limits.max_client_connections",
                "must be at least 1",
            ));
        }
        let servers = self.servers.len() as u64;
        if u64::from(l.max_peer_connections) < servers {
            return Err(ConfigError::new(
                "limits.max_peer_connections",
                format!(
                    "{} is less than the number of servers ({servers}): every peer needs a \
                     connection",
                    l.max_peer_connections
                ),
            ));
        }
        let four_frames = 4 * u64::from(l.max_frame_bytes);
        if l.max_buffered_request_bytes < four_frames {
            return Err(ConfigError::new(
                "limits.max_buffered_request_bytes",
                format!(
                    "{} is less than four frames of max_frame_bytes ({four_frames}): the quarter \
                     kept for the replicate port must hold a whole frame",
                    l.max_buffered_request_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The share of `limits.max_buffered_request_bytes` the service port may
    /// fill: three quarters; the rest is kept for the replicate port.
    pub fn service_buffered_bytes(&self) -> u64 {
        let all = self.limits.max_buffered_request_bytes;
        all - all / 4
    }

    /// This node's `servers` entry. Cheap; `validate` guarantees it exists.
    pub fn me(&self) -> Option<&ServerEntry> {
        self.servers.iter().find(|s| s.id == self.node_id)
    }

    /// Address the replicate port binds to (`bind_host` or this node's host, and
    /// the port of this node's `servers` entry).
    pub fn replicate_bind(&self) -> Result<(String, u16), ConfigError> {
        let me = self
            .me()
            .ok_or_else(|| ConfigError::new("node_id", "not in servers"))?;
        let (host, port) =
            parse_address(&me.address).map_err(|m| ConfigError::new("servers", m))?;
        Ok((self.bind_host.clone().unwrap_or(host), port))
    }

    /// Address the service port binds to.
    pub fn service_bind(&self) -> Result<(String, u16), ConfigError> {
        let (host, _) = self.replicate_bind()?;
        Ok((host, self.service_port))
    }

    /// Address the HTTP port binds to, when it is on.
    pub fn http_bind(&self) -> Result<Option<(String, u16)>, ConfigError> {
        let (host, _) = self.replicate_bind()?;
        Ok(self.http_port.map(|p| (host, p)))
    }

    /// The settings group `group_id` runs with, or `None` when this file does not
    /// list the group.
    pub fn group_settings(&self, group_id: u32) -> Option<GroupSettings> {
        self.groups
            .iter()
            .find(|g| g.id == group_id)
            .map(|g| g.effective(&self.group_defaults))
    }
}

/// Checks one group's membership: members not empty, every id in `servers`, no id
/// twice, no observer that is also a member. `field` prefixes the error's field.
pub fn validate_membership(
    field: &str,
    members: &[u32],
    observers: &[u32],
    server_ids: &BTreeSet<u32>,
) -> Result<(), ConfigError> {
    if members.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.members"),
            "must list at least one node id",
        ));
    }
    let mut seen = BTreeSet::new();
    for (name, list) in [("members", members), ("observers", observers)] {
        for id in list {
            if !server_ids.contains(id) {
                return Err(ConfigError::new(
                    format!("{field}.{name}"),
                    format!(
                        "node id {id} is not in servers (ids there: {})",
                        join_ids(server_ids.iter().copied())
                    ),
                ));
            }
            if !seen.insert(*id) {
                let msg = if name == "observers" && members.contains(id) {
                    format!("node {id} is both a member and an observer")
                } else {
                    format!("node id {id} is listed twice")
                };
                return Err(ConfigError::new(format!("{field}.{name}"), msg));
            }
        }
    }
    Ok(())
}

/// Largest `log_cache_bytes`: a budget past this is a typo, not a plan.
const MAX_LOG_CACHE_BYTES: u64 = 64 << 30;

fn validate_settings(field: &str, s: &GroupSettings) -> Result<(), ConfigError> {
    if s.backup_interval_seconds == 0 {
        return Err(ConfigError::new(
            format!("{field}.backup_interval_seconds"),
            "must be at least 1",
        ));
    }
    if s.backup_keep == 0 {
        return Err(ConfigError::new(
            format!("{field}.backup_keep"),
            "must be at least 1",
        ));
    }
    if s.backup_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        return Err(ConfigError::new(
            format!("{field}.backup_dir"),
            "must not be empty (leave it out to turn scheduled backups off)",
        ));
    }
    if s.max_keep_snapshots == 0 {
        return Err(ConfigError::new(
            format!("{field}.max_keep_snapshots"),
            "must be at least 1",
        ));
    }
    if s.max_replicate_items == 0 {
        return Err(ConfigError::new(
            format!("{field}.max_replicate_items"),
            "must be greater than 0",
        ));
    }
    if s.max_replicate_bytes < 4096 {
        return Err(ConfigError::new(
            format!("{field}.max_replicate_bytes"),
            format!("{} is too small: at least 4096", s.max_replicate_bytes),
        ));
    }
    if s.log_cache_bytes > MAX_LOG_CACHE_BYTES {
        return Err(ConfigError::new(
            format!("{field}.log_cache_bytes"),
            format!(
                "{} is too large: at most {MAX_LOG_CACHE_BYTES} (64 GiB)",
                s.log_cache_bytes
            ),
        ));
    }
    Ok(())
}

/// Splits `host:port` (or `[v6]:port`), refusing an empty host, a missing or zero port.
pub fn parse_address(address: &str) -> Result<(String, u16), String> {
    if let Ok(sa) = address.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("`{address}`: port must be between 1 and 65535"));
        }
        return Ok((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{address}` is not host:port"))?;
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains(':') {
        return Err(format!("`{address}` has no valid host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{address}`: `{port}` is not a port number"))?;
    if port == 0 {
        return Err(format!("`{address}`: port must be between 1 and 65535"));
    }
    Ok((host.to_string(), port))
}

fn join_ids(ids: impl Iterator<Item = u32>) -> String {
    ids.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn toml_message(e: &toml::de::Error) -> String {
    // toml's errors quote the offending line over several lines; keep the message
    // itself on one line.
    e.message().trim().to_string()
}

fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(s) => format!("{} (line {})", toml_message(e), line_of(text, s.start)),
        None => toml_message(e),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// serde reports unknown or missing fields as "unknown field `x`" / "missing field
/// `x`"; pull the name out so the error's field names it.
fn field_of_serde_error(msg: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = msg.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
        {
            return Some(name.to_string());
        }
    }
    None
}

fn apply_override(table: &mut toml::Table, key: &str, value: &str) -> Result<(), ConfigError> {
    if !OVERRIDABLE_KEYS.contains(&key) {
        return Err(ConfigError::new(
            key,
            format!(
                "cannot be overridden: unknown key (overridable: {})",
                OVERRIDABLE_KEYS.join(", ")
            ),
        ));
    }
    // A value that parses as a TOML scalar (number, boolean, quoted string) is
    // taken as such; anything else is a bare string, so paths need no quotes.
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut cur = table;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(part.to_string(), parsed);
            return Ok(());
        }
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::new(part, "is not a table in the file"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
