//! `robust`: runs real `dongting server` processes under injected faults and
//! checks what the clients saw. See `docs/reliability.md`.
//!
//! ```text
//! robust --nodes 3 --duration 60s --seed 42 --history-out runs/
//! robust --ci
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dongting_robustness::cluster::default_binary;
use dongting_robustness::run::{RunOptions, run};

#[derive(Parser, Debug)]
#[command(
    name = "robust",
    about = "Fault runner: a DtKV cluster under kills, pauses, partitions and torn logs, checked for linearizability"
)]
struct Args {
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Time under faults: `90s`, `10m` or seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the fault schedule and of the clients (random when absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Of the clients, how many only read (at most all but one).
    #[arg(long, default_value_t = 1)]
    readers: usize,
    /// Keys the clients share.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// Watchers of the keys: 0, 1 (their directory) or 2 (also the keys by name).
    #[arg(long, default_value_t = 2)]
    watchers: usize,
    /// Clients contending on one lock (0: none).
    #[arg(long, default_value_t = 3)]
    lockers: usize,
    /// Clients of temporary keys with short TTLs, each on its own keys
    /// (0: none).
    #[arg(long, default_value_t = 1)]
    ttl_clients: usize,
    /// The `dongting` binary (default: $DONGTING_BIN, else next to this program).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Directory for the history (`history.jsonl`) and, on failure, the
    /// cluster's files. Without it they are kept only on failure, in a
    /// temporary directory.
    #[arg(long)]
    history_out: Option<PathBuf>,
    /// Election timeout of the nodes in milliseconds.
    #[arg(long, default_value_t = 1000)]
    elect_timeout_ms: u64,
    /// Seconds the cluster has to accept writes again once faults stop.
    #[arg(long, default_value_t = 30)]
    recovery_secs: u64,
    /// Planted bugs to switch on in the servers (needs a binary built with
    /// `--features failpoints`), e.g. `ack_before_commit`.
    #[arg(long)]
    failpoint: Option<String>,
    /// Planted bugs to switch on in the client library, e.g.
    /// `retryable_unknown` (a write that may have run fails with a
    /// `retryable` error, as it once did).
    #[arg(long)]
    client_failpoint: Option<String>,
    /// Deadline of each call of the workload's clients, in milliseconds
    /// (shorter than an election, most writes cut by a leader's death end
    /// without an answer).
    #[arg(long, default_value_t = 3000)]
    client_timeout_ms: u64,
    /// Take a failed write's `retryable` flag at its word, as the client
    /// documents: such a write did not happen (it is left out of the
    /// history) instead of counting as one whose outcome is unknown.
    #[arg(long)]
    trust_retryable: bool,
    /// Draw the faults only from these kinds (comma-separated names as in
    /// the report, e.g. `kill-leader`); all kinds when absent.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Bounded CI mode: a 3-node and a 5-node run (seeds `--seed` and
    /// `--seed + 1`), 40 s of faults each.
    #[arg(long)]
    ci: bool,
    /// Print every fault as it is injected.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let v: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 90s, 10m, 500ms)"))?;
    Ok(Duration::from_millis(v * mult))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.nodes < 3 {
        eprintln!("--nodes {}: at least 3 nodes are needed", args.nodes);
        return ExitCode::from(2);
    }
    if args.watchers > 2 {
        eprintln!("--watchers must be 0, 1 or 2, not {}", args.watchers);
        return ExitCode::from(2);
    }
    if args.clients == 0 || args.keys < 2 {
        eprintln!("--clients must be at least 1 and --keys at least 2");
        return ExitCode::from(2);
    }
    if args.client_timeout_ms == 0 {
        eprintln!("--client-timeout-ms must be at least 1");
        return ExitCode::from(2);
    }
    if let Err(e) = dongting_robustness::faults::kinds_named(&args.faults) {
        eprintln!("--faults: {e}");
        return ExitCode::from(2);
    }
    let binary = args.binary.clone().unwrap_or_else(default_binary);
    if !binary.exists() {
        eprintln!(
            "the dongting binary {} does not exist: build it with `cargo build -p dongting-cli` \
             or pass --binary",
            binary.display()
        );
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(rand::random::<u64>);
    let base = RunOptions {
        nodes: args.nodes,
        duration: args.duration,
        seed,
        clients: args.clients,
        keys: args.keys,
        readers: args.readers,
        watchers: args.watchers,
        lockers: args.lockers,
        ttl_clients: args.ttl_clients,
        binary,
        out_dir: args.history_out.clone(),
        elect_timeout_ms: args.elect_timeout_ms,
        recovery_bound: Duration::from_secs(args.recovery_secs),
        failpoint: args.failpoint.clone(),
        client_failpoint: args.client_failpoint.clone(),
        client_timeout: Duration::from_millis(args.client_timeout_ms),
        trust_retryable: args.trust_retryable,
        fault_kinds: args.faults.clone(),
        verbose: args.verbose,
    };
    let runs = if args.ci {
        vec![
            RunOptions {
                nodes: 3,
                duration: Duration::from_secs(40),
                ..base.clone()
            },
            RunOptions {
                nodes: 5,
                duration: Duration::from_secs(40),
                seed: seed.wrapping_add(1),
                ..base
            },
        ]
    } else {
        vec![base]
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for opts in runs {
        eprintln!(
            "robust: {} nodes, {:?} of faults, seed {}",
            opts.nodes, opts.duration, opts.seed
        );
        let report = rt.block_on(run(opts));
        if !report.passed() {
            failed = true;
            eprintln!("{}", report.failure_text());
        } else if args.verbose {
            for c in &report.checks {
                eprintln!("  {}: {}", c.name, c.summary);
            }
            eprintln!("  faults: {:?}", report.faults);
        }
        println!("{}", report.verdict_line());
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
