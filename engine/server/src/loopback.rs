//! Configurations for a cluster of nodes on loopback, for development and
//! tests (`dongting dev`, `dongting bench`, the SDK's local clusters).

use std::fmt::Write as _;
use std::path::PathBuf;

/// What to generate.
#[derive(Debug, Clone)]
pub struct LoopbackSpec {
    /// Nodes, numbered 1 to `nodes`, every one a member of every group.
    pub nodes: u32,
    /// Groups every node hosts.
    pub groups: Vec<u32>,
    /// Node `i` keeps its data in `data_dir/node<i>` (relative paths are
    /// resolved as the node resolves its `data_dir`).
    pub data_dir: PathBuf,
    /// `elect_timeout_ms` of every node.
    pub elect_timeout_ms: u64,
    /// `heartbeat_interval_ms` of every node.
    pub heartbeat_interval_ms: u64,
    /// `sync_force` of every group.
    pub sync_force: bool,
}

/// One generated node.
#[derive(Debug, Clone)]
pub struct LoopbackNode {
    /// Its node id.
    pub node_id: u32,
    /// Its replicate port on 127.0.0.1.
    pub replicate_port: u16,
    /// Its service port on 127.0.0.1.
    pub service_port: u16,
    /// Its TOML configuration.
    pub toml: String,
}

/// Picks `n` distinct free ports on 127.0.0.1. They are free when this
/// returns; another process may still take one before a node binds it.
///
/// They come from below the kernel's ephemeral range (where outgoing
/// connections take their local ports, so a port found free there can be
/// taken by any connection made before the node binds it), at a random
/// place, so that tests picking ports at the same time rarely meet.
pub fn free_loopback_ports(n: usize) -> std::io::Result<Vec<u16>> {
    use std::hash::{BuildHasher, Hasher};
    let (lo, hi) = ephemeral_range();
    // Below the ephemeral range when there is room, else above it.
    let (first, last) = if lo > 11_024 {
        (10_000, lo - 1)
    } else {
        (hi.saturating_add(1), 65_535)
    };
    let span = u32::from(last - first) + 1;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let start = (h.finish() % u64::from(span)) as u32;
    // Held open together, so they differ.
    let mut listeners = Vec::with_capacity(n);
    for i in 0..span {
        if listeners.len() == n {
            break;
        }
        let port = first + ((start + i) % span) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
        }
    }
    if listeners.len() < n {
        // Nothing free outside the ephemeral range: let the kernel choose.
        while listeners.len() < n {
            listeners.push(std::net::TcpListener::bind("127.0.0.1:0")?);
        }
    }
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// The kernel's ephemeral port range (`ip_local_port_range`), or Linux's
/// default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or((32_768, 60_999))
}

/// The configuration of every node of `spec`, with free ports picked now.
pub fn loopback_configs(spec: &LoopbackSpec) -> std::io::Result<Vec<LoopbackNode>> {
    let ports = free_loopback_ports(spec.nodes as usize * 2)?;
    let mut servers = String::new();
    for i in 0..spec.nodes as usize {
        let _ = writeln!(
            servers,
            "  {{ id = {}, address = \"127.0.0.1:{}\" }},",
            i + 1,
            ports[2 * i]
        );
    }
    let members: Vec<String> = (1..=spec.nodes).map(|i| i.to_string()).collect();
    let mut out = Vec::with_capacity(spec.nodes as usize);
    for i in 0..spec.nodes as usize {
        let node_id = i as u32 + 1;
        let data_dir = spec.data_dir.join(format!("node{node_id}"));
        let mut toml = format!(
            "node_id = {node_id}\ndata_dir = {}\nservice_port = {}\nelect_timeout_ms = {}\n\
             heartbeat_interval_ms = {}\nservers = [\n{servers}]\n\n[group_defaults]\nsync_force = {}\n",
            toml_string(&data_dir.to_string_lossy()),
            ports[2 * i + 1],
            spec.elect_timeout_ms,
            spec.heartbeat_interval_ms,
            spec.sync_force
        );
        for g in &spec.groups {
            let _ = write!(
                toml,
                "\n[[groups]]\nid = {g}\nmembers = [{}]\n",
                members.join(", ")
            );
        }
        out.push(LoopbackNode {
            node_id,
            replicate_port: ports[2 * i],
            service_port: ports[2 * i + 1],
            toml,
        });
    }
    Ok(out)
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    #[test]
    fn every_generated_config_is_valid_and_consistent() {
        let spec = LoopbackSpec {
            nodes: 3,
            groups: vec![0, 7],
            data_dir: PathBuf::from("/tmp/a \"quoted\" dir"),
            elect_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            sync_force: false,
        };
        let nodes = loopback_configs(&spec).expect("configs");
        assert_eq!(nodes.len(), 3);
        for n in &nodes {
            let c = NodeConfig::from_toml_str(&n.toml, &[]).expect("valid config");
            assert_eq!(c.node_id, n.node_id);
            assert_eq!(c.service_port, n.service_port);
            assert_eq!(c.elect_timeout_ms, 1000);
            assert_eq!(c.servers.len(), 3);
            assert_eq!(c.groups.len(), 2);
            assert!(c.data_dir.ends_with(format!("node{}", n.node_id)));
        }
        let mut ports: Vec<u16> = nodes
            .iter()
            .flat_map(|n| [n.replicate_port, n.service_port])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6, "ports must differ");
    }
}
