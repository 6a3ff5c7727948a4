//! `dongting bench --op watch`: many watchers on a set of keys under a steady
//! update rate. Reports the delivery latency (from the start of the put to
//! the event's arrival at a watcher) and the server memory per watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dongting_client::{KvClient, KvClientConfig, WatchItem};

use crate::bench::BenchOptions;
use crate::cluster::{ChildNode, ClusterSpec, spawn_node, write_configs};
use crate::echo::group_digits;
use crate::histogram::Histogram;

/// Resident set size of process `pid` in KiB (`VmRSS`), or `None`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Latency histograms shared by the watcher tasks.
const HISTOGRAM_SHARDS: usize = 64;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the watch benchmark: `o.watchers` watches spread over `o.keys` keys
/// (watcher i watches key i mod keys) and `o.clients` client connections,
/// `o.rate` puts per second on random keys.
pub async fn bench(o: BenchOptions) -> Result<(), String> {
    if o.servers.is_some() {
        return Err(
            "--op watch starts its own cluster (it measures the servers' memory); drop --servers"
                .into(),
        );
    }
    let watchers = o.watchers.max(1);
    let keys = o.keys.clamp(1, 1_000_000) as usize;
    let d = tempfile::Builder::new()
        .prefix("dongting-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let spec = ClusterSpec {
        nodes: o.nodes.max(1),
        groups: vec![o.group],
        elect_timeout_ms: 1000,
        heartbeat_interval_ms: 100,
        sync_force: o.sync_force,
    };
    let mut children: Vec<ChildNode> = Vec::new();
    for (path, _) in write_configs(d.path(), &spec)? {
        let threads = (o.server_threads > 0).then_some(o.server_threads);
        children.push(spawn_node(&path, threads)?);
    }
    let servers: Vec<_> = children.iter().map(|c| c.service).collect();
    println!(
        "started {} server process(es), syncForce={}",
        children.len(),
        o.sync_force
    );
    let client = |servers: Vec<std::net::SocketAddr>| {
        let mut cfg = KvClientConfig::new(servers);
        cfg.timeout = Duration::from_secs(30);
        KvClient::new(cfg)
    };
    let writer = client(servers.clone());
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        match writer.mkdir(o.group, "bench").await {
            Ok(_) => break,
            Err(e) if Instant::now() > ready_by => return Err(format!("cluster not ready: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let key_names: Arc<Vec<String>> = Arc::new((0..keys).map(|i| format!("bench.k{i}")).collect());
    let clients: Vec<KvClient> = (0..o.clients.max(1))
        .map(|_| client(servers.clone()))
        .collect();
    // Every client connects to every server first: connection buffers are
    // not part of the memory per watch.
    for c in &clients {
        for a in &servers {
            c.server_status(*a)
                .await
                .map_err(|e| format!("server {a} not reachable: {e}"))?;
        }
    }
    // Settle, then the servers' memory before any watch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before: Vec<u64> = children
        .iter()
        .map(|c| rss_kib(c.child.id()).unwrap_or(0))
        .collect();
    let registered = Instant::now();
    let mut streams = Vec::with_capacity(watchers);
    let mut pending = Vec::new();
    for i in 0..watchers {
        let c = clients[i % clients.len()].clone();
        let key = key_names[i % keys].clone();
        let group = o.group;
        pending.push(tokio::spawn(async move {
            c.watch(group, &[key.as_bytes()], 0).await
        }));
        if pending.len() >= 1000 {
            for p in pending.drain(..) {
                streams.push(
                    p.await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?,
                );
            }
        }
    }
    for p in pending.drain(..) {
        streams.push(
            p.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    println!(
        "{} watches on {} keys over {} client(s) registered in {:?}",
        group_digits(watchers as u64),
        group_digits(keys as u64),
        clients.len(),
        registered.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_after: Vec<u64> = children
        .iter()
        .map(|c| rss_kib(c.child.id()).unwrap_or(0))
        .collect();
    let grown: u64 = rss_after
        .iter()
        .zip(&rss_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .sum();
    println!(
        "server RSS before {:?} KiB, after {:?} KiB: {:.0} bytes per watch (all nodes)",
        rss_before,
        rss_after,
        grown as f64 * 1024.0 / watchers as f64
    );

    // Watchers: latency from the put's start (in the value) to arrival.
    let epoch = Instant::now();
    // Shared by many watchers each: a histogram per watcher would cost more
    // memory than the watches themselves.
    let shards: Arc<Vec<std::sync::Mutex<Histogram>>> = Arc::new(
        (0..HISTOGRAM_SHARDS)
            .map(|_| std::sync::Mutex::new(Histogram::default()))
            .collect(),
    );
    let delivered = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        let (shards, delivered, measuring, mut stop_rx) = (
            shards.clone(),
            delivered.clone(),
            measuring.clone(),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let hist = &shards[i % HISTOGRAM_SHARDS];
            loop {
                let item = tokio::select! {
                    r = s.next() => match r {
                        Ok(i) => i,
                        Err(_) => break,
                    },
                    _ = stop_rx.changed() => break,
                };
                if let WatchItem::Event(e) = item
                    && let Some(sent_us) = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                    && measuring.load(Ordering::Relaxed)
                {
                    let now_us = epoch.elapsed().as_micros() as u64;
                    lock(hist).record(Duration::from_micros(now_us.saturating_sub(sent_us)));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            s.close().await;
        }));
    }
    let rate = o.rate.max(1);
    let writes = Arc::new(AtomicU64::new(0));
    let write_hist = Arc::new(std::sync::Mutex::new(Histogram::default()));
    let writer_task = {
        let (w, stop, key_names, writes, write_hist, measuring) = (
            writer.clone(),
            stop.clone(),
            key_names.clone(),
            writes.clone(),
            write_hist.clone(),
            measuring.clone(),
        );
        let group = o.group;
        tokio::spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let mut next = Instant::now();
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = key_names[(x % key_names.len() as u64) as usize].clone();
                let (w, writes, write_hist, measuring) = (
                    w.clone(),
                    writes.clone(),
                    write_hist.clone(),
                    measuring.clone(),
                );
                inflight.spawn(async move {
                    let t = Instant::now();
                    let value = epoch.elapsed().as_micros().to_string();
                    if w.put(group, &key, value.as_bytes()).await.is_ok()
                        && measuring.load(Ordering::Relaxed)
                    {
                        lock(&write_hist).record(t.elapsed());
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        })
    };
    println!(
        "{rate} puts/s on random keys; warm-up {:?}, measuring {:?}",
        o.warmup, o.duration
    );
    tokio::time::sleep(o.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(o.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    let _ = writer_task.await;
    for t in tasks {
        let _ = t.await;
    }
    let mut h = Histogram::default();
    for shard in shards.iter() {
        h.merge(&lock(shard));
    }
    let wh = lock(&write_hist).clone();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = writes.load(Ordering::Relaxed);
    println!(
        "summary: {} puts/s, {} events/s delivered ({:.1} per put); delivery latency p50 {:.3} ms p99 {:.3} ms max {:.3} ms; put latency p50 {:.3} ms p99 {:.3} ms",
        group_digits((n as f64 / elapsed.as_secs_f64()) as u64),
        group_digits((delivered.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()) as u64),
        delivered.load(Ordering::Relaxed) as f64 / n.max(1) as f64,
        ms(h.quantile(0.5)),
        ms(h.quantile(0.99)),
        ms(h.max()),
        ms(wh.quantile(0.5)),
        ms(wh.quantile(0.99)),
    );
    for c in &clients {
        c.close().await;
    }
    writer.close().await;
    drop(children);
    Ok(())
}
