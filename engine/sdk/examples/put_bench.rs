//! Put throughput of the Rust client (`dongting-client` on tokio, the path
//! every binding ends in), for comparison with the bindings.
//!
//! `cargo run --release -p dongting-sdk --example put_bench -- SERVERS COUNT IN_FLIGHT`
//! prints one line: `rust puts=N in_flight=M seconds=S puts_per_s=R`.

use std::sync::Arc;
use std::time::Instant;

use dongting_client::{KvClient, KvClientConfig};
use dongting_sdk::parse_servers;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let servers = parse_servers(args.get(1).map(String::as_str).unwrap_or("127.0.0.1:5001"))?;
    let count: usize = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let in_flight: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = KvClient::new(KvClientConfig::new(servers));
        client.mkdir(0, "rbench").await?;
        let value = vec![b'v'; 64];
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let c = client.clone();
            let next = next.clone();
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<(), dongting_client::ClientError>(());
                    }
                    c.put(0, &format!("rbench.k{}", i % 10_000), &value).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "rust puts={count} in_flight={in_flight} seconds={secs:.3} puts_per_s={:.0}",
            count as f64 / secs
        );
        client.close().await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
