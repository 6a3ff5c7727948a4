//! The RPC echo service and its benchmark: the RPC layer measured alone, with
//! client and server in one process or in two.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_net::command::{CMD_ECHO, EchoHandler};
use dongting_net::{
    ClientConfig, CommandSet, PortConfig, RpcClient, RpcServer, ServerConfig, proto,
};

use crate::histogram::Histogram;
use crate::proc::cpu_seconds;

/// Starts an RPC server whose `service` port answers ECHO and whose
/// `replicate` port answers only PING (so ECHO there is COMMAND_NOT_SUPPORTED).
pub async fn start_echo_server(
    service: SocketAddr,
    replicate: SocketAddr,
) -> std::io::Result<RpcServer> {
    let mut echo = CommandSet::new();
    echo.register(CMD_ECHO, EchoHandler);
    RpcServer::start(
        ServerConfig::default(),
        vec![
            PortConfig::new("service", service, echo),
            PortConfig::new("replicate", replicate, CommandSet::new()),
        ],
    )
    .await
}

/// What the echo benchmark does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Server to call; `None` starts one in this process.
    pub connect: Option<SocketAddr>,
    /// Requests kept in flight in all.
    pub in_flight: usize,
    /// Connections the requests are spread over (one client each).
    pub connections: usize,
    /// Echo payload bytes.
    pub payload_bytes: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Server process to report CPU time for, when there is one.
    pub server_pid: Option<u32>,
}

struct Worker {
    histogram: Histogram,
    errors: u64,
}

/// Runs the benchmark and prints a line a second and a summary.
pub async fn bench(options: BenchOptions) -> Result<(), String> {
    let server = match options.connect {
        Some(_) => None,
        None => Some(
            start_echo_server(local(), local())
                .await
                .map_err(|e| format!("cannot start the echo server: {e}"))?,
        ),
    };
    let addr = match (&server, options.connect) {
        (Some(s), _) => s.local_addr("service").ok_or("service port missing")?,
        (None, Some(addr)) => addr,
        (None, None) => unreachable!("a server is started when none is given"),
    };
    let body: Bytes = proto::encode_echo(&vec![0x5a; options.payload_bytes]);
    let clients: Vec<RpcClient> = (0..options.connections.max(1))
        .map(|_| RpcClient::new(ClientConfig::default()))
        .collect();
    for client in &clients {
        client
            .call(addr, CMD_ECHO, &body, Duration::from_secs(5))
            .await
            .map_err(|e| format!("first echo to {addr} failed: {e}"))?;
    }
    println!(
        "echo bench: {} in flight over {} connection(s) to {addr} ({}), payload {} B, warm-up {:?}, measured {:?}",
        options.in_flight,
        clients.len(),
        if server.is_some() {
            "same process"
        } else {
            "another process"
        },
        options.payload_bytes,
        options.warmup,
        options.duration,
    );

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(options.in_flight);
    for i in 0..options.in_flight.max(1) {
        let client = clients[i % clients.len()].clone();
        let (body, measuring, stop, done) =
            (body.clone(), measuring.clone(), stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut w = Worker {
                histogram: Histogram::default(),
                errors: 0,
            };
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = client
                    .call(addr, CMD_ECHO, &body, Duration::from_secs(10))
                    .await
                    .is_ok();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        w.histogram.record(start.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        w.errors += 1;
                    }
                }
            }
            w
        }));
    }

    tokio::time::sleep(options.warmup).await;
    let own_cpu_start = cpu_seconds(std::process::id());
    let server_cpu_start = options.server_pid.and_then(cpu_seconds);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut last = 0;
    let mut second = 0;
    while started.elapsed() < options.duration {
        let next = started + Duration::from_secs(second + 1);
        tokio::time::sleep_until(next.min(started + options.duration).into()).await;
        second += 1;
        let now = done.load(Ordering::Relaxed);
        println!("  {second:>3}s {:>12} req/s", group_digits(now - last));
        last = now;
    }
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let own_cpu = cpu_seconds(std::process::id())
        .zip(own_cpu_start)
        .map(|(b, a)| b - a);
    let server_cpu = options
        .server_pid
        .and_then(cpu_seconds)
        .zip(server_cpu_start)
        .map(|(b, a)| b - a);
    stop.store(true, Ordering::Relaxed);

    let mut total = Histogram::default();
    let mut errors = 0;
    for worker in workers {
        let w = worker.await.map_err(|e| format!("worker failed: {e}"))?;
        total.merge(&w.histogram);
        errors += w.errors;
    }
    for client in &clients {
        client.close(Duration::from_secs(1)).await;
    }
    if let Some(server) = server {
        server.shutdown(Duration::from_secs(1)).await;
    }

    let rate = total.count() as f64 / elapsed.as_secs_f64();
    println!(
        "summary: {} req/s ({} ok, {} errors in {:.2}s); latency avg {:?} p50 {:?} p99 {:?} p99.9 {:?} max {:?}",
        group_digits(rate as u64),
        total.count(),
        errors,
        elapsed.as_secs_f64(),
        round_us(total.mean()),
        round_us(total.quantile(0.50)),
        round_us(total.quantile(0.99)),
        round_us(total.quantile(0.999)),
        round_us(total.max()),
    );
    let per_second = |cpu: Option<f64>| match cpu {
        Some(s) => format!(
            "{:.2} CPU-s ({:.0}% of one core)",
            s,
            100.0 * s / elapsed.as_secs_f64()
        ),
        None => "n/a".to_owned(),
    };
    if options.server_pid.is_some() {
        println!(
            "cpu: client process {}, server process {}",
            per_second(own_cpu),
            per_second(server_cpu)
        );
    } else {
        println!("cpu: client and server process {}", per_second(own_cpu));
    }
    if errors > 0 {
        return Err(format!("{errors} echo calls failed"));
    }
    Ok(())
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn round_us(d: Duration) -> Duration {
    Duration::from_micros(d.as_micros().try_into().unwrap_or(u64::MAX))
}

/// 1234567 as "1,234,567".
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group_digits;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }
}
