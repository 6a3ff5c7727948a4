use super::*;

const BASE: &str = r#"
node_id = 1
data_dir = "/var/lib/dongting"
service_port = 5001
servers = [
  { id = 1, address = "127.0.0.1:4001" },
  { id = 2, address = "127.0.0.1:4002" },
  { id = 3, address = "127.0.0.1:4003" },
]

[[groups]]
id = 0
members = [1, 2, 3]
"#;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml_str(text, &[])
}

fn err_field(text: &str) -> (String, String) {
    let e = parse(text).expect_err("configuration should be refused");
    (e.field, e.message)
}

fn ov(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn base_config_takes_documented_defaults() {
    let c = parse(BASE).expect("valid");
    assert_eq!(c.node_id, 1);
    assert_eq!(c.elect_timeout_ms, 15_000);
    assert_eq!(c.rpc_timeout_ms, 5_000);
    assert_eq!(c.connect_timeout_ms, 2_000);
    assert_eq!(c.heartbeat_interval_ms, 2_000);
    assert!(c.check_config_on_connect);
    assert_eq!(c.group_defaults, GroupSettings::default());
    assert_eq!(c.limits.max_key_bytes, 8192);
    assert_eq!(c.limits.max_value_bytes, 1 << 20);
    assert_eq!(c.limits.max_client_connections, 10_000);
    assert_eq!(c.limits.max_peer_connections, 1_000);
    assert_eq!(c.limits.max_buffered_request_bytes, 256 << 20);
    assert_eq!(c.service_buffered_bytes(), 192 << 20);
    assert_eq!(c.client_idle_timeout_ms, 600_000);
    assert_eq!(c.slow_fsync_warn_ms, 1_000);
    assert_eq!(c.apply_lag_warn_entries, 10_000);
    assert_eq!(c.http_request_timeout_ms, 10_000);
    let g = c.group_settings(0).expect("group 0");
    assert!(g.sync_force);
    assert_eq!(g.save_snapshot_seconds, 3600);
    assert_eq!(g.max_keep_snapshots, 2);
    assert!(g.save_snapshot_when_close);
    assert_eq!(g.auto_delete_log_delay_seconds, 60);
    assert_eq!(g.log_cache_bytes, 64 << 20);
    assert_eq!(
        c.replicate_bind().expect("bind"),
        ("127.0.0.1".to_string(), 4001)
    );
    assert_eq!(
        c.service_bind().expect("bind"),
        ("127.0.0.1".to_string(), 5001)
    );
    assert!(c.group_settings(7).is_none());
}

#[test]
fn per_group_overrides_win_over_defaults() {
    let text = format!(
        "{BASE}sync_force = false\nmax_keep_snapshots = 5\n\n[group_defaults]\nsave_snapshot_seconds = 10\nmax_keep_snapshots = 3\n"
    );
    let c = parse(&text).expect("valid");
    let g = c.group_settings(0).expect("group 0");
    assert!(!g.sync_force);
    assert_eq!(g.max_keep_snapshots, 5);
    assert_eq!(g.save_snapshot_seconds, 10);
    assert_eq!(c.group_defaults.max_keep_snapshots, 3);
    let text =
        format!("{BASE}log_cache_bytes = 0\n\n[group_defaults]\nlog_cache_bytes = 1048576\n");
    let c = parse(&text).expect("valid");
    assert_eq!(c.group_settings(0).expect("group 0").log_cache_bytes, 0);
    assert_eq!(c.group_defaults.log_cache_bytes, 1 << 20);
}

#[test]
fn overrides_replace_file_values_and_are_validated() {
    let c = NodeConfig::from_toml_str(
        BASE,
        &ov(&[
            ("elect_timeout_ms", "3000"),
            ("heartbeat_interval_ms", "500"),
            ("data_dir", "/tmp/other dir"),
            ("group_defaults.sync_force", "false"),
            ("limits.max_value_bytes", "4096"),
            ("bind_host", "0.0.0.0"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.elect_timeout_ms, 3000);
    assert_eq!(c.heartbeat_interval_ms, 500);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/other dir"));
    assert!(!c.group_defaults.sync_force);
    assert_eq!(c.limits.max_value_bytes, 4096);
    assert_eq!(c.service_bind().expect("bind").0, "0.0.0.0");

    let e = NodeConfig::from_toml_str(BASE, &ov(&[("node_id", "9")])).expect_err("not in servers");
    assert_eq!(e.field, "node_id");
    let e = NodeConfig::from_toml_str(BASE, &ov(&[("service_port", "abc")])).expect_err("bad");
    assert_eq!(e.field, "service_port");
    let e = NodeConfig::from_toml_str(BASE, &ov(&[("no_such", "1")])).expect_err("unknown");
    assert_eq!(e.field, "no_such");
    let e = NodeConfig::from_toml_str(BASE, &ov(&[("servers", "[]")])).expect_err("not scalar");
    assert_eq!(e.field, "servers");
}

#[test]
fn node_id_missing_from_servers_is_refused() {
    let (f, m) = err_field(&BASE.replace("node_id = 1", "node_id = 4"));
    assert_eq!(f, "node_id");
    assert!(m.contains("not in servers"), "{m}");
}

#[test]
fn member_missing_from_servers_is_refused() {
    let (f, m) = err_field(&BASE.replace("members = [1, 2, 3]", "members = [1, 2, 9]"));
    assert_eq!(f, "groups[0].members");
    assert!(m.contains("node id 9"), "{m}");
    let (f, _) = err_field(&format!("{BASE}observers = [8]\n"));
    assert_eq!(f, "groups[0].observers");
}

#[test]
fn empty_members_and_observer_member_overlap_are_refused() {
    let (f, _) = err_field(&BASE.replace("members = [1, 2, 3]", "members = []"));
    assert_eq!(f, "groups[0].members");
    let (f, m) = err_field(&format!("{BASE}observers = [3]\n"));
    assert_eq!(f, "groups[0].observers");
    assert!(m.contains("both a member and an observer"), "{m}");
    let (f, m) = err_field(&BASE.replace("members = [1, 2, 3]", "members = [1, 2, 2]"));
    assert_eq!(f, "groups[0].members");
    assert!(m.contains("twice"), "{m}");
}

#[test]
fn group_not_hosting_this_node_is_refused() {
    let (f, m) = err_field(&BASE.replace("members = [1, 2, 3]", "members = [2, 3]"));
    assert_eq!(f, "groups[0].members");
    assert!(m.contains("neither a member nor an observer"), "{m}");
    // As an observer it is fine.
    parse(&format!(
        "{}observers = [1]\n",
        BASE.replace("members = [1, 2, 3]", "members = [2, 3]")
    ))
    .expect("observer hosts the group");
}

#[test]
fn duplicate_ports_are_refused() {
    let (f, m) = err_field(&BASE.replace("127.0.0.1:4003", "127.0.0.1:4002"));
    assert_eq!(f, "servers[2].address");
    assert!(m.contains("duplicate port"), "{m}");
    let (f, m) = err_field(&BASE.replace("service_port = 5001", "service_port = 4001"));
    assert_eq!(f, "service_port");
    assert!(m.contains("duplicate port"), "{m}");
    let (f, _) = err_field(&BASE.replace("service_port = 5001", "service_port = 4002"));
    assert_eq!(f, "service_port");
    // The same port on another host is fine.
    parse(&BASE.replace("127.0.0.1:4003", "127.0.0.2:4002")).expect("other host");
    // The HTTP port may not take the service port, a replicate port, or 0.
    let http = |p: &str| {
        BASE.replace(
            "service_port = 5001",
            &format!("service_port = 5001\nhttp_port = {p}"),
        )
    };
    for (port, says) in [
        ("5001", "service_port"),
        ("4001", "replicate port"),
        ("4003", "servers[2]"),
        ("0", "port 0"),
    ] {
        let (f, m) = err_field(&http(port));
        assert_eq!(f, "http_port", "{port}: {m}");
        assert!(
            m.contains(says) && m.contains("duplicate port"),
            "{port}: {m}"
        );
    }
    assert_eq!(
        parse(&http("8080")).expect("a free port").http_port,
        Some(8080)
    );
    assert_eq!(parse(BASE).expect("off").http_port, None);
}

#[test]
fn duplicate_ids_are_refused() {
    let (f, _) = err_field(&BASE.replace("{ id = 3,", "{ id = 2,"));
    assert_eq!(f, "servers[2].id");
    let (f, _) = err_field(&format!("{BASE}\n[[groups]]\nid = 0\nmembers = [1]\n"));
    assert_eq!(f, "groups[1].id");
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let (f, m) = err_field(&format!("elect_timeout = 5\n{BASE}"));
    assert_eq!(f, "elect_timeout");
    assert!(m.contains("unknown field"), "{m}");
    let (f, _) = err_field(&BASE.replace("{ id = 2,", "{ port = 1, id = 2,"));
    assert_eq!(f, "servers[1].port");
    let (f, _) = err_field(&format!("{BASE}\n[limits]\nmax_keys = 3\n"));
    assert_eq!(f, "limits.max_keys");
    let (f, _) = err_field(&format!("{BASE}snapshot_seconds = 3\n"));
    assert_eq!(f, "groups[0].snapshot_seconds");
}

#[test]
fn missing_required_keys_are_named() {
    let (f, _) = err_field(&BASE.replace("service_port = 5001", ""));
    assert_eq!(f, "service_port");
    let (f, _) = err_field(&BASE.replace("node_id = 1", ""));
    assert_eq!(f, "node_id");
    let (f, _) = err_field(&BASE.replace("members = [1, 2, 3]", ""));
    assert!(f.contains("members"), "{f}");
}

#[test]
fn bad_values_are_refused() {
    let (f, _) = err_field(&BASE.replace("service_port = 5001", "service_port = 70000"));
    assert_eq!(f, "service_port");
    let (f, _) = err_field(&BASE.replace("service_port = 5001", "service_port = 0"));
    assert_eq!(f, "service_port");
    let (f, _) = err_field(&BASE.replace("node_id = 1", "node_id = -1"));
    assert_eq!(f, "node_id");
    let (f, _) = err_field(&BASE.replace("127.0.0.1:4002", "127.0.0.1"));
    assert_eq!(f, "servers[1].address");
    let (f, _) = err_field(&BASE.replace("127.0.0.1:4002", "127.0.0.1:0"));
    assert_eq!(f, "servers[1].address");
    let (f, _) = err_field(&BASE.replace("127.0.0.1:4002", ":4002"));
    assert_eq!(f, "servers[1].address");
    let (f, _) = err_field(&format!("elect_timeout_ms = 0\n{BASE}"));
    assert_eq!(f, "elect_timeout_ms");
    let (f, _) = err_field(&format!("rpc_timeout_ms = \"5s\"\n{BASE}"));
    assert_eq!(f, "rpc_timeout_ms");
    let (f, m) = err_field(&format!(
        "elect_timeout_ms = 1000\nheartbeat_interval_ms = 800\n{BASE}"
    ));
    assert_eq!(f, "heartbeat_interval_ms");
    assert!(m.contains("half"), "{m}");
    let (f, _) = err_field(&format!("{BASE}max_keep_snapshots = 0\n"));
    assert_eq!(f, "groups[0].max_keep_snapshots");
    let (f, _) = err_field(&format!(
        "{BASE}\n[group_defaults]\nmax_keep_snapshots = 0\n"
    ));
    assert_eq!(f, "group_defaults.max_keep_snapshots");
    let (f, m) = err_field(&format!(
        "{BASE}\n[group_defaults]\nlog_cache_bytes = 100000000000\n"
    ));
    assert_eq!(f, "group_defaults.log_cache_bytes");
    assert!(m.contains("too large"), "{m}");
    let (f, _) = err_field(&format!("{BASE}log_cache_bytes = -1\n"));
    assert_eq!(f, "groups[0].log_cache_bytes");
    let (f, _) = err_field(&format!("{BASE}\n[limits]\nmax_key_bytes = 0\n"));
    assert_eq!(f, "limits.max_key_bytes");
    let (f, _) = err_field(&format!("{BASE}\n[limits]\nmax_value_bytes = 10000000\n"));
    assert_eq!(f, "limits.max_value_bytes");
    let (f, _) = err_field(&format!("{BASE}sync_force = \"yes\"\n"));
    assert_eq!(f, "groups[0].sync_force");
    let (f, _) = err_field(&BASE.replace("node_id = 1", "node_id = 0"));
    assert_eq!(f, "node_id");
    let (f, _) = err_field(&format!("bind_host = \" \"\n{BASE}"));
    assert_eq!(f, "bind_host");
}

#[test]
fn syntax_errors_name_the_line() {
    let (f, m) = err_field("node_id = 1\nservice_port = = 3\n");
    assert_eq!(f, "file");
    assert!(m.contains("line 2"), "{m}");
}

#[test]
fn no_servers_is_refused() {
    let (f, _) = err_field("node_id = 1\ndata_dir = \"d\"\nservice_port = 5001\nservers = []\n");
    assert_eq!(f, "servers");
}

#[test]
fn ipv6_and_host_names_are_accepted() {
    let c = parse(
        &BASE
            .replace("127.0.0.1:4002", "[::1]:4002")
            .replace("127.0.0.1:4003", "node3.example:4003"),
    )
    .expect("valid");
    assert_eq!(
        parse_address("[::1]:4002").expect("v6"),
        ("::1".to_string(), 4002)
    );
    assert_eq!(c.servers[2].address, "node3.example:4003");
}

#[test]
fn round_trips_through_toml() {
    let c = parse(&format!("{BASE}sync_force = false\nobservers = []\n")).expect("valid");
    let text = c.to_toml_string().expect("render");
    assert_eq!(parse(&text).expect("reparse"), c);
}

#[test]
fn load_resolves_relative_data_dir_against_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, BASE.replace("/var/lib/dongting", "data/n1")).expect("write");
    let c = NodeConfig::load(&path, &[]).expect("valid");
    assert_eq!(c.data_dir, dir.path().join("data/n1"));
    let e = NodeConfig::load(&dir.path().join("missing.toml"), &[]).expect_err("missing");
    assert_eq!(e.field, "file");
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn every_overridable_key_is_accepted_by_the_parser() {
    for key in OVERRIDABLE_KEYS {
        let value = match *key {
            "data_dir" | "bind_host" | "group_defaults.backup_dir" => "somewhere",
            "check_config_on_connect"
            | "group_defaults.sync_force"
            | "group_defaults.save_snapshot_when_close"
            | "group_defaults.delete_logs_after_take_snapshot" => "true",
            "node_id" => "1",
            "service_port" => "5009",
            "elect_timeout_ms" => "20000",
            "limits.max_key_bytes" => "100",
            "limits.max_pending_write_bytes" => "999999999",
            "limits.max_frame_bytes" => "6000000",
            "limits.max_buffered_request_bytes" => "100000000",
            _ => "5000",
        };
        NodeConfig::from_toml_str(BASE, &ov(&[(key, value)]))
            .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    }
}

#[test]
fn dial_overrides_the_address_this_node_connects_to() {
    let c = parse(&format!("{BASE}[dial]\n2 = \"127.0.0.1:7002\"\n")).expect("valid");
    assert_eq!(c.dial_address(2), Some("127.0.0.1:7002"));
    assert_eq!(c.dial_address(3), Some("127.0.0.1:4003"));
    assert_eq!(c.dial_address(9), None);
    // Written back and read again, the override survives.
    let again = parse(&c.to_toml_string().expect("toml")).expect("valid");
    assert_eq!(again, c);
}

#[test]
fn dial_refuses_unknown_ids_self_and_bad_addresses() {
    let (field, msg) = err_field(&format!("{BASE}[dial]\n9 = \"127.0.0.1:7009\"\n"));
    assert_eq!(field, "dial.9");
    assert!(msg.contains("node id 9 is not in servers"), "{msg}");
    let (field, msg) = err_field(&format!("{BASE}[dial]\nx = \"127.0.0.1:7009\"\n"));
    assert_eq!(field, "dial.x");
    assert!(msg.contains("not a server id"), "{msg}");
    let (field, msg) = err_field(&format!("{BASE}[dial]\n1 = \"127.0.0.1:7001\"\n"));
    assert_eq!(field, "dial.1");
    assert!(msg.contains("this node"), "{msg}");
    let (field, _) = err_field(&format!("{BASE}[dial]\n2 = \"127.0.0.1\"\n"));
    assert_eq!(field, "dial.2");
}

#[test]
fn connection_limits_and_the_idle_timeout_are_refused_with_their_field() {
    let limits = |line: &str| err_field(&format!("{BASE}\n[limits]\n{line}\n"));
    let (f, m) = limits("max_client_connections = 0");
    assert_eq!(f, "limits.max_client_connections");
    assert!(m.contains("at least 1"), "{m}");
    let (f, m) = limits("max_peer_connections = 2");
    assert_eq!(f, "limits.max_peer_connections");
    assert!(m.contains("number of servers (3)"), "{m}");
    let (f, m) = limits("max_buffered_request_bytes = 20000000");
    assert_eq!(f, "limits.max_buffered_request_bytes");
    assert!(m.contains("four frames"), "{m}");
    let (f, _) = limits("max_client_connections = -1");
    assert_eq!(f, "limits.max_client_connections");
    let (f, m) = err_field(&format!("client_idle_timeout_ms = 50\n{BASE}"));
    assert_eq!(f, "client_idle_timeout_ms");
    assert!(m.contains("0 (never)"), "{m}");
    let (f, _) = err_field(&format!("client_idle_timeout_ms = 100000000\n{BASE}"));
    assert_eq!(f, "client_idle_timeout_ms");
    for bad in ["slow_fsync_warn_ms = 0", "slow_fsync_warn_ms = 100000000"] {
        let (f, m) = err_field(&format!("{bad}\n{BASE}"));
        assert_eq!(f, "slow_fsync_warn_ms", "{bad}");
        assert!(m.contains("out of range"), "{m}");
    }
    let (f, m) = err_field(&format!("apply_lag_warn_entries = 0\n{BASE}"));
    assert_eq!(f, "apply_lag_warn_entries");
    assert!(m.contains("at least 1"), "{m}");
    for bad in ["0", "100000000"] {
        let (f, m) = err_field(&format!("http_request_timeout_ms = {bad}\n{BASE}"));
        assert_eq!(f, "http_request_timeout_ms", "{bad}: {m}");
        assert!(m.contains("out of range"), "{m}");
    }
    let c = parse(&format!("http_request_timeout_ms = 500\n{BASE}")).expect("500 ms");
    assert_eq!(c.http_request_timeout_ms, 500);

    let c = parse(&format!(
        "client_idle_timeout_ms = 0\n{BASE}\n[limits]\nmax_peer_connections = 3\n\
         max_buffered_request_bytes = 20971520\n"
    ))
    .expect("0 never closes; the smallest budget and peer cap are fine");
    assert_eq!(c.client_idle_timeout_ms, 0);
    assert_eq!(c.service_buffered_bytes(), 15_728_640);
}

#[test]
fn shutdown_transfer_timeout_defaults_below_the_election_timeout() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.shutdown_transfer_timeout(), Duration::from_millis(2000));
    let c = parse(&format!(
        "elect_timeout_ms = 1000\nheartbeat_interval_ms = 100\n{BASE}"
    ))
    .unwrap();
    assert_eq!(c.shutdown_transfer_timeout(), Duration::from_millis(500));
    let c = parse(&format!("shutdown_transfer_timeout_ms = 0\n{BASE}")).unwrap();
    assert!(c.shutdown_transfer_timeout().is_zero(), "0 turns it off");
    let c =
        NodeConfig::from_toml_str(BASE, &ov(&[("shutdown_transfer_timeout_ms", "750")])).unwrap();
    assert_eq!(c.shutdown_transfer_timeout(), Duration::from_millis(750));
    let (f, m) = err_field(&format!(
        "elect_timeout_ms = 1000\nheartbeat_interval_ms = 100\nshutdown_transfer_timeout_ms = 1000\n{BASE}"
    ));
    assert_eq!(f, "shutdown_transfer_timeout_ms");
    assert!(m.contains("elect_timeout_ms"), "{m}");
}

#[test]
fn backup_settings_default_off_override_per_group_and_are_validated() {
    let c = parse(&format!(
        "{BASE}[group_defaults]\nbackup_dir = \"/b\"\nbackup_keep = 3\n"
    ))
    .expect("valid");
    let s = c.group_defaults.clone();
    assert_eq!(s.backup_dir.as_deref(), Some(Path::new("/b")));
    assert_eq!((s.backup_interval_seconds, s.backup_keep), (3600, 3));
    assert_eq!(GroupSettings::default().backup_dir, None);
    assert_eq!(GroupSettings::default().backup_keep, 7);
    for (key, value) in [
        ("backup_interval_seconds", "0"),
        ("backup_keep", "0"),
        ("backup_dir", "\"\""),
    ] {
        let e = parse(&format!("{BASE}[group_defaults]\n{key} = {value}\n")).expect_err(key);
        assert_eq!(e.field, format!("group_defaults.{key}"), "{e}");
    }
}
