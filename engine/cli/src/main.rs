//! The `dongting` command-line tool.
//!
//! - `dongting demo`: starts an RPC server on loopback and shows a client using it.
//! - `dongting echo-server`: runs the RPC echo server until SIGTERM or Ctrl-C.
//! - `dongting echo-bench`: the RPC layer's benchmark (see BENCHMARKS.md).
//! - `dongting server`: runs one node from its configuration file.
//! - `dongting dev`: a 3-node cluster on loopback for trying things out.
//! - `dongting kv ...`, `dongting admin ...`: DtKV operations and node administration.
//! - `dongting backup save|inspect|restore`: group backups and their restore.
//! - `dongting bench`: DtKV put/get benchmark.

mod backupcmd;
mod bench;
mod cluster;
mod echo;
mod histogram;
mod kvcmd;
mod lockcmd;
mod proc;
mod watchbench;
mod watchcmd;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use dongting_net::command::{CMD_ECHO, CMD_PING, FIRST_APPLICATION_COMMAND};
use dongting_net::{ClientConfig, Push, RpcClient, Status, proto};

#[derive(Parser, Debug)]
#[command(
    name = "dongting",
    version,
    about = "Dongting: raft groups, DtKV and the RPC layer"
)]
struct Cli {
    /// Runtime worker threads (default: one per core; one for `bench`, whose
    /// client keeps all its requests on one connection per server).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// More log lines on stderr: -v warnings, -vv info, -vvv debug. Without
    /// it client commands (kv, admin, bench, ...) print only their answer or
    /// one error line, `dev` its warnings and `server` its events (info).
    /// RUST_LOG, when set, decides instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object a line).
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one node from its configuration file until SIGTERM or Ctrl-C.
    Server {
        /// The node's TOML configuration (see docs/configuration.md).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Overrides `node_id`.
        #[arg(long)]
        node_id: Option<u32>,
        /// Overrides `data_dir`.
        #[arg(long)]
        data_dir: Option<String>,
        /// Overrides `service_port`.
        #[arg(long)]
        service_port: Option<u16>,
        /// Overrides `elect_timeout_ms`.
        #[arg(long)]
        elect_timeout_ms: Option<u64>,
        /// Overrides any scalar setting: `--set group_defaults.sync_force=false`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Start a 3-node cluster on loopback (free ports) and print how to connect.
    Dev {
        /// Data directory (default: a temporary one, deleted on exit).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Groups to host (default 0).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<u32>,
    },
    /// DtKV operations against a cluster's service ports.
    Kv {
        /// Service addresses, comma-separated.
        #[arg(long, global = true, default_value = "127.0.0.1:5001")]
        servers: String,
        /// Raft group.
        #[arg(long, global = true, default_value_t = 0)]
        group: u32,
        /// Time the call may take, retries included.
        #[arg(long, global = true, default_value_t = 5000)]
        timeout_ms: u64,
        #[command(subcommand)]
        op: kvcmd::KvOp,
    },
    /// Node administration against replicate ports.
    Admin {
        /// Replicate addresses (the `servers` entries), comma-separated.
        #[arg(long, global = true, default_value = "127.0.0.1:4001")]
        servers: String,
        /// Raft group.
        #[arg(long, global = true, default_value_t = 0)]
        group: u32,
        /// Time each call may take.
        #[arg(long, global = true, default_value_t = 5000)]
        timeout_ms: u64,
        #[command(subcommand)]
        op: kvcmd::AdminOp,
    },
    /// Backups: save a group's snapshot off a node, verify a backup file,
    /// restore one into a node's data directory.
    Backup {
        #[command(subcommand)]
        op: backupcmd::BackupOp,
    },
    /// DtKV benchmark: put or get throughput and latency.
    Bench {
        /// put, get, lock (acquire and release; one key per worker, so `--keys 1 --clients N --max-pending N` contends), list (a directory of --keys children listed whole, page by page) or watch (watchers on --keys keys under --rate puts/s).
        #[arg(long, default_value = "put")]
        op: String,
        /// Service addresses of an external cluster; without it a cluster of
        /// --nodes child processes is started.
        #[arg(long)]
        servers: Option<String>,
        /// Nodes of the cluster started when --servers is absent (1 or 3).
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        /// Raft group.
        #[arg(long, default_value_t = 0)]
        group: u32,
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        /// Requests in flight in all.
        #[arg(long, default_value_t = 2000)]
        max_pending: usize,
        /// KvClient instances the requests are spread over.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Unmeasured seconds first.
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Blocking calls from threads instead of async calls.
        #[arg(long)]
        sync_calls: bool,
        /// syncForce of the started cluster.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        sync_force: bool,
        /// Runtime worker threads of each started server process; 0 means
        /// one per core. The default, 1, suits servers that share the
        /// machine's cores with the benchmark client: a group's connection
        /// tasks and its group task stay on one core (BENCHMARKS.md, "DtKV").
        #[arg(long, default_value_t = 1)]
        server_threads: usize,
        /// Tasks per client that drive async puts and gets, each keeping its
        /// share of --max-pending in flight.
        #[arg(long, default_value_t = 4)]
        drivers: usize,
        /// --op watch: watches to register.
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
        /// --op watch: puts per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
    },
    /// Start an RPC server on loopback and show a client using it.
    Demo,
    /// Run the RPC echo server until SIGTERM or Ctrl-C.
    EchoServer {
        /// Address of the service port (answers ECHO and PING).
        #[arg(long, default_value = "127.0.0.1:9333")]
        service: SocketAddr,
        /// Address of the replicate port (answers PING only).
        #[arg(long, default_value = "127.0.0.1:9332")]
        replicate: SocketAddr,
    },
    /// Benchmark echo requests over loopback.
    EchoBench {
        /// Server to call; by default one is started in this process.
        #[arg(long, conflicts_with = "server_process")]
        connect: Option<SocketAddr>,
        /// Start the server as a child process of this command.
        #[arg(long)]
        server_process: bool,
        /// Worker threads of the child server process (with --server-process).
        #[arg(long, default_value_t = 2)]
        server_threads: usize,
        /// Requests kept in flight in all.
        #[arg(long, default_value_t = 1000)]
        in_flight: usize,
        /// Connections the requests are spread over.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Echo payload in bytes.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Unmeasured seconds before measuring.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
    },
}

/// Sets up log lines on stderr: servers at info, client commands silent
/// unless `-v`; RUST_LOG, when set, decides instead.
fn init_logging(cli: &Cli) -> Result<(), String> {
    use std::io::IsTerminal;
    // Servers log their events; the local dev cluster only its warnings
    // (it prints its own summary); client commands nothing but their answer.
    let base = match cli.command {
        Cmd::Server { .. } | Cmd::EchoServer { .. } => 2,
        Cmd::Dev { .. } => 1,
        _ => 0,
    };
    let level = match base.max(cli.verbose) {
        0 => "off",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format.as_str() {
        "text" => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        "json" => builder.json().with_ansi(false).init(),
        other => return Err(format!("--log-format must be text or json, not {other:?}")),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("dongting: {e}");
        return ExitCode::FAILURE;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // The benchmark client runs on one worker by default, like the original's
    // benchmark client on its one I/O thread: a second worker on the same
    // connections costs more in shared counters and locks than it adds
    // (BENCHMARKS.md, "DtKV").
    let threads = match (&cli.command, cli.threads) {
        (_, Some(t)) => Some(t),
        (Cmd::Bench { .. }, None) => Some(1),
        _ => None,
    };
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dongting: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Cmd::Server {
                config,
                node_id,
                data_dir,
                service_port,
                elect_timeout_ms,
                set,
            } => {
                let mut overrides = Vec::new();
                for kv in &set {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("--set {kv}: expected KEY=VALUE"))?;
                    overrides.push((k.to_string(), v.to_string()));
                }
                if let Some(v) = node_id {
                    overrides.push(("node_id".into(), v.to_string()));
                }
                if let Some(v) = data_dir {
                    overrides.push(("data_dir".into(), v));
                }
                if let Some(v) = service_port {
                    overrides.push(("service_port".into(), v.to_string()));
                }
                if let Some(v) = elect_timeout_ms {
                    overrides.push(("elect_timeout_ms".into(), v.to_string()));
                }
                cluster::server(&config, &overrides).await
            }
            Cmd::Dev { dir, groups } => cluster::dev(dir, groups).await,
            Cmd::Kv {
                servers,
                group,
                timeout_ms,
                op,
            } => kvcmd::kv(&servers, group, timeout_ms, op).await,
            Cmd::Admin {
                servers,
                group,
                timeout_ms,
                op,
            } => kvcmd::admin(&servers, group, timeout_ms, op).await,
            Cmd::Backup { op } => backupcmd::backup(op).await,
            Cmd::Bench {
                op,
                servers,
                nodes,
                group,
                value_size,
                keys,
                max_pending,
                clients,
                duration,
                warmup,
                sync_calls,
                sync_force,
                server_threads,
                drivers,
                watchers,
                rate,
            } => {
                bench::bench(bench::BenchOptions {
                    op,
                    servers,
                    nodes,
                    group,
                    value_size,
                    keys,
                    max_pending,
                    clients,
                    duration: Duration::from_secs(duration),
                    warmup: Duration::from_secs(warmup),
                    sync_calls,
                    sync_force,
                    server_threads,
                    drivers,
                    watchers,
                    rate,
                })
                .await
            }
            Cmd::Demo => demo().await,
            Cmd::EchoServer { service, replicate } => echo_server(service, replicate).await,
            Cmd::EchoBench {
                connect,
                server_process,
                server_threads,
                in_flight,
                connections,
                payload,
                duration,
                warmup,
            } => {
                let mut child = None;
                let connect = if server_process {
                    let (c, addr) = spawn_echo_server(server_threads)?;
                    child = Some(ChildGuard(c));
                    Some(addr)
                } else {
                    connect
                };
                echo::bench(echo::BenchOptions {
                    connect,
                    in_flight,
                    connections,
                    payload_bytes: payload,
                    duration: Duration::from_secs(duration),
                    warmup: Duration::from_secs(warmup),
                    server_pid: child.as_ref().map(|c| c.0.id()),
                })
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dongting: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn echo_server(service: SocketAddr, replicate: SocketAddr) -> Result<(), String> {
    let server = echo::start_echo_server(service, replicate)
        .await
        .map_err(|e| format!("cannot bind {service} and {replicate}: {e}"))?;
    // One line a port, flushed at once: `--server-process` reads the first.
    for (name, addr) in server.local_addrs() {
        println!("{name} {addr}");
    }
    wait_for_shutdown_signal().await;
    eprintln!("dongting: shutting down");
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

pub(crate) async fn wait_for_shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("dongting: cannot watch SIGTERM: {e}");
            None
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Kills the child server when the benchmark ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_echo_server(threads: usize) -> Result<(Child, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut child = Command::new(exe)
        .args(["--threads", &threads.to_string(), "echo-server"])
        .args(["--service", "127.0.0.1:0", "--replicate", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the server process: {e}"))?;
    let stdout = child.stdout.take().ok_or("server stdout missing")?;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the server's address: {e}"))?;
    // Keep draining its output so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line
        .trim()
        .strip_prefix("service ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
    Ok((child, addr))
}

const CMD_DEMO_NOTICE: u16 = FIRST_APPLICATION_COMMAND;

async fn demo() -> Result<(), String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = echo::start_echo_server(any, any)
        .await
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let service = server.local_addr("service").ok_or("service port missing")?;
    let replicate = server
        .local_addr("replicate")
        .ok_or("replicate port missing")?;
    println!("server: service port {service} (ECHO, PING), replicate port {replicate} (PING)");

    let pushes: Arc<Mutex<Vec<Push>>> = Arc::default();
    let sink = pushes.clone();
    let client = RpcClient::with_push_listener(
        ClientConfig {
            client_id: "dongting-demo".into(),
            ..ClientConfig::default()
        },
        Arc::new(move |p| sink.lock().unwrap_or_else(|e| e.into_inner()).push(p)),
    );
    let timeout = Duration::from_secs(3);

    let reply = client
        .call(
            service,
            CMD_ECHO,
            &proto::encode_echo(b"hello, dongting"),
            timeout,
        )
        .await
        .map_err(|e| format!("echo failed: {e}"))?;
    let text = proto::decode_echo(&reply.body).map_err(|e| e.to_string())?;
    println!("client: echo -> {:?}", String::from_utf8_lossy(text));

    let started = Instant::now();
    client
        .call(service, CMD_PING, &[], timeout)
        .await
        .map_err(|e| format!("ping failed: {e}"))?;
    println!("client: ping answered in {:?}", started.elapsed());

    match client
        .call(replicate, CMD_ECHO, &proto::encode_echo(b"x"), timeout)
        .await
    {
        Err(e) if e.status() == Status::COMMAND_NOT_SUPPORTED => {
            println!("client: echo on the replicate port -> {} ({e})", e.status());
        }
        other => {
            return Err(format!(
                "echo on the replicate port should be refused, got {other:?}"
            ));
        }
    }

    for conn in server.connections() {
        if conn.port_name() == "service" {
            conn.push(CMD_DEMO_NOTICE, b"config changed")
                .map_err(|e| format!("push failed: {e}"))?;
        }
    }
    let deadline = Instant::now() + timeout;
    while pushes.lock().unwrap_or_else(|e| e.into_inner()).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for p in pushes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!(
            "client: push from {} command {} -> {:?}",
            p.addr,
            p.command,
            String::from_utf8_lossy(&p.body)
        );
    }

    let calls = 20_000;
    let body = proto::encode_echo(&[7u8; 64]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let (client, body) = (client.clone(), body.clone());
            tokio::spawn(async move { client.call(service, CMD_ECHO, &body, timeout).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if matches!(t.await, Ok(Ok(_))) {
            ok += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "client: {ok}/{calls} concurrent echoes of 64 bytes on one connection in {:?} ({} req/s)",
        elapsed,
        echo::group_digits((f64::from(ok) / elapsed.as_secs_f64()) as u64)
    );

    client.close(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
    let stats = server.stats();
    println!(
        "server: {} connections accepted, {} malformed frames, {} unknown commands; shut down cleanly",
        stats.connections_accepted,
        stats.bad_magic + stats.bad_version + stats.bad_length + stats.bad_body,
        stats.unknown_command
    );
    if ok != calls {
        return Err(format!("{} echoes failed", calls - ok));
    }
    Ok(())
}
