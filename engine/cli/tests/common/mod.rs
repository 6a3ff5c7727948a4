//! Shared harness of the multi-process tests: `dongting server` processes on
//! loopback, their configs, a client, leader lookup and the admin CLI.
#![allow(dead_code, unused_imports)]

pub use std::io::{BufRead, BufReader};
pub use std::net::SocketAddr;
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, Stdio};
pub use std::sync::{Arc, Mutex};
pub use std::time::{Duration, Instant};

pub use dongting_client::{ClientError, KvClient, KvClientConfig};
pub use dongting_kv::KvError;
pub use dongting_proto::status::{NodeStatus, Role};
pub use dongting_testkit::{
    Cluster, DevAddrs, LockEvents, Proc, cluster_toml, free_ports, join, kv_code, run_admin,
    send_signal, spawn_server, start_dev,
};

/// The `dongting` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dongting");
