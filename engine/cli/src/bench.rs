//! `dongting bench`: DtKV put/get throughput and latency against an external
//! cluster or a 1- or 3-node cluster of child processes it starts itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_client::{ClientError, KvClient, KvClientConfig};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::cluster::{ChildNode, ClusterSpec, spawn_node, write_configs};
use crate::echo::group_digits;
use crate::histogram::Histogram;
use crate::proc::{cpu_seconds, peak_rss_kib};

/// Options of one benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub op: String,
    pub servers: Option<String>,
    pub nodes: u32,
    pub group: u32,
    pub value_size: usize,
    pub keys: u64,
    pub max_pending: usize,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub sync_calls: bool,
    pub sync_force: bool,
    /// Runtime workers of each started server; 0: one per core.
    pub server_threads: usize,
    /// Driver tasks per client for async puts and gets.
    pub drivers: usize,
    /// `--op watch`: watches to register.
    pub watchers: usize,
    /// `--op watch`: puts per second.
    pub rate: u64,
}

/// Latency histograms, one per thread that ran workers. Thousands of
/// per-worker histograms would not fit in cache and cost a miss per record.
static THREAD_HISTOGRAMS: std::sync::Mutex<Vec<Arc<std::sync::Mutex<Histogram>>>> =
    std::sync::Mutex::new(Vec::new());

thread_local! {
    static HISTOGRAM: Arc<std::sync::Mutex<Histogram>> = {
        let h = Arc::new(std::sync::Mutex::new(Histogram::default()));
        lock(&THREAD_HISTOGRAMS).push(h.clone());
        h
    };
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records one latency in this thread's histogram (uncontended lock).
fn record(latency: Duration) {
    HISTOGRAM.with(|h| lock(h).record(latency));
}

/// One worker's count on its own cache line, so workers never contend.
#[repr(align(64))]
#[derive(Default)]
struct Slot(AtomicU64);

struct Counters {
    ok: Vec<Slot>,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    measuring: AtomicBool,
    stop: AtomicBool,
}

impl Counters {
    fn ok_total(&self) -> u64 {
        self.ok.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// One acquisition and release of the lock at `key`, waiting for it when
/// another client holds it: one tryLock and one unlock (plus one lease
/// confirmation when the lock was handed over by push).
async fn lock_cycle(c: &KvClient, group: u32, key: &Bytes) -> Result<(), ClientError> {
    let key = std::str::from_utf8(key).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
    let l = c.create_lock(group, key)?;
    match l.try_lock(LOCK_BENCH_LEASE_MS, LOCK_BENCH_WAIT_MS).await? {
        Some(_) => l.unlock().await,
        None => Err(ClientError::InvalidArgument(format!(
            "lock {key} not acquired within {LOCK_BENCH_WAIT_MS} ms"
        ))),
    }
}

/// Lease of the benchmark's locks.
const LOCK_BENCH_LEASE_MS: u64 = 10_000;
/// How long a benchmark worker waits for a contended lock.
const LOCK_BENCH_WAIT_MS: u64 = 10_000;

pub async fn bench(o: BenchOptions) -> Result<(), String> {
    if o.op == "watch" {
        return crate::watchbench::bench(o).await;
    }
    if !["put", "get", "lock", "list"].contains(&o.op.as_str()) {
        return Err(format!(
            "--op must be put, get, lock, list or watch, not {}",
            o.op
        ));
    }
    let mut _dir = None;
    let mut children: Vec<ChildNode> = Vec::new();
    let servers = match &o.servers {
        Some(s) => crate::kvcmd::parse_servers(s)?,
        None => {
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
            for (path, _) in write_configs(d.path(), &spec)? {
                let threads = (o.server_threads > 0).then_some(o.server_threads);
                children.push(spawn_node(&path, threads)?);
            }
            let workers = match o.server_threads {
                0 => "one per core".to_string(),
                n => n.to_string(),
            };
            println!(
                "started {} server process(es), syncForce={}, runtime workers each: {workers}, data in {}",
                children.len(),
                o.sync_force,
                d.path().display()
            );
            _dir = Some(d);
            children.iter().map(|c| c.service).collect()
        }
    };
    let mut clients = Vec::new();
    for _ in 0..o.clients.max(1) {
        let mut cfg = KvClientConfig::new(servers.clone());
        cfg.timeout = Duration::from_secs(10);
        cfg.max_in_flight = o.max_pending.max(1);
        clients.push(KvClient::new(cfg));
    }
    // Wait for a leader, create the directory, and fill the keys for gets.
    let c0 = clients[0].clone();
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        match c0.mkdir(o.group, "bench").await {
            Ok(_) => break,
            Err(e) if Instant::now() > ready_by => return Err(format!("cluster not ready: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let value = Bytes::from(vec![b'v'; o.value_size]);
    if o.op == "list" {
        let r = list_bench(&c0, &o, &value).await;
        for c in &clients {
            c.close().await;
        }
        drop(children);
        return r;
    }
    // Static keys (leaked once; the process ends with the benchmark): cloning
    // one per request then touches no shared reference count, so the
    // measurement does not include contention of the harness's own.
    let keys: Arc<Vec<Bytes>> = Arc::new(
        (0..o.keys.max(1))
            .map(|i| {
                let k: &'static [u8] =
                    Box::leak(format!("bench.k{i}").into_bytes().into_boxed_slice());
                Bytes::from_static(k)
            })
            .collect(),
    );
    if o.op == "get" {
        let fill = Instant::now();
        let mut tasks = Vec::new();
        for chunk in keys.chunks(100) {
            let (c, group) = (c0.clone(), o.group);
            let entries: Vec<(Bytes, Bytes)> =
                chunk.iter().map(|k| (k.clone(), value.clone())).collect();
            tasks.push(tokio::spawn(async move {
                let refs: Vec<(String, Vec<u8>)> = entries
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
                    .collect();
                let r: Vec<(&str, &[u8])> = refs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                c.batch_put(group, &r).await.map(|_| ())
            }));
        }
        for t in tasks {
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("filling keys failed: {e}"))?;
        }
        println!("filled {} keys in {:?}", keys.len(), fill.elapsed());
    }
    let per_client = (o.max_pending / clients.len()).max(1);
    // Async puts and gets run from a few driver tasks per client, each keeping
    // its share of the requests in flight: a request's completion wakes its
    // driver, not a task of its own, so the harness costs the scheduler little
    // and no run queue overflows. Locks and blocking calls run one worker per
    // request in flight.
    let drivers_per_client = if o.sync_calls || o.op == "lock" {
        per_client
    } else {
        o.drivers.clamp(1, per_client)
    };
    let counters = Arc::new(Counters {
        ok: (0..drivers_per_client * clients.len())
            .map(|_| Slot::default())
            .collect(),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let client_cpu0 = cpu_seconds(std::process::id());
    let mut workers = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        for w in 0..drivers_per_client {
            let (c, keys, value, counters, op, group) = (
                c.clone(),
                keys.clone(),
                value.clone(),
                counters.clone(),
                o.op.clone(),
                o.group,
            );
            let slot = ci * drivers_per_client + w;
            // This driver's share of the client's requests in flight.
            let share =
                per_client / drivers_per_client + usize::from(w < per_client % drivers_per_client);
            let seed = slot as u64;
            // A value of its own: a shared one would make every driver bump
            // the same reference count.
            let value = Bytes::copy_from_slice(&value);
            let run = move || async move {
                let mine = &counters.ok[slot].0;
                let is_put = op == "put";
                let is_lock = op == "lock";
                // Each lock worker its own key while there are enough.
                let lock_key = keys[slot % keys.len()].clone();
                let (c, value, lock_key, keys, counters) =
                    (&c, &value, &lock_key, &keys, &counters);
                // One loop per request in flight, each issuing its next
                // request when the last one ends: the loops live as long as
                // the run, so no request allocates or moves a future of its
                // own.
                let one_loop = move |n: u64| async move {
                    let mut x = (seed * 1_000_003 + n).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    // A request starts when the one before it ended: one
                    // clock read per request.
                    let mut t = Instant::now();
                    while !counters.stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let k = keys[(x % keys.len() as u64) as usize].clone();
                        let r = if is_lock {
                            // Boxed: a lock cycle's future is large, and would
                            // make every put's and get's loop as large.
                            Box::pin(lock_cycle(c, group, lock_key)).await
                        } else if is_put {
                            c.put_bytes(group, k, value.clone()).await.map(|_| ())
                        } else {
                            c.get_with(group, k, dongting_client::Consistency::Linearizable)
                                .await
                                .map(|_| ())
                        };
                        let end = Instant::now();
                        let took = end - t;
                        t = end;
                        let ok = r.is_ok();
                        if let Err(e) = r {
                            let mut first = lock(&counters.first_error);
                            if first.is_none() {
                                *first = Some(e.to_string());
                            }
                        }
                        if counters.measuring.load(Ordering::Relaxed) {
                            if ok {
                                record(took);
                                mine.fetch_add(1, Ordering::Relaxed);
                            } else {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if ok {
                            mine.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                };
                let mut loops: FuturesUnordered<_> = (0..share as u64).map(one_loop).collect();
                while loops.next().await.is_some() {}
            };
            if o.sync_calls {
                let handle = tokio::runtime::Handle::current();
                workers.push(tokio::task::spawn_blocking(move || handle.block_on(run())));
            } else {
                workers.push(tokio::spawn(run()));
            }
        }
    }
    let mode = if o.sync_calls {
        "blocking calls"
    } else {
        "async calls"
    };
    println!(
        "{} {} B values, {} keys, {} in flight over {} client(s) and {} driver task(s), {mode}; warm-up {:?}, measuring {:?}",
        o.op,
        o.value_size,
        keys.len(),
        per_client * clients.len(),
        clients.len(),
        drivers_per_client * clients.len(),
        o.warmup,
        o.duration
    );
    let server_cpu = |children: &[ChildNode]| -> Vec<f64> {
        children
            .iter()
            .map(|c| cpu_seconds(c.child.id()).unwrap_or(0.0))
            .collect()
    };
    let total = o.warmup + o.duration;
    let start = Instant::now();
    let mut last = 0;
    // Measuring starts when the warm-up ends: a baseline of the counts then.
    let mut base = 0;
    let mut measure_start = None;
    let mut cpu_at_measure = (Vec::new(), None);
    if o.warmup.is_zero() {
        counters.measuring.store(true, Ordering::Relaxed);
        measure_start = Some(start);
        cpu_at_measure = (server_cpu(&children), client_cpu0);
    }
    for sec in 1..=total.as_secs().max(1) {
        tokio::time::sleep_until((start + Duration::from_secs(sec)).into()).await;
        let now_ok = counters.ok_total();
        let phase = if measure_start.is_none() {
            "warm-up"
        } else {
            "measure"
        };
        println!("[{sec:>3}s {phase}] {} ops/s", group_digits(now_ok - last));
        last = now_ok;
        if measure_start.is_none() && Duration::from_secs(sec) >= o.warmup {
            base = now_ok;
            counters.measuring.store(true, Ordering::Relaxed);
            measure_start = Some(Instant::now());
            cpu_at_measure = (server_cpu(&children), cpu_seconds(std::process::id()));
        }
    }
    counters.stop.store(true, Ordering::Relaxed);
    let elapsed = measure_start.map(|m| m.elapsed()).unwrap_or(o.duration);
    let ok = counters.ok_total() - base;
    let errors = counters.errors.load(Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let mut h = Histogram::default();
    for t in lock(&THREAD_HISTOGRAMS).iter() {
        h.merge(&lock(t));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "summary: {} {} ops/s over {:.1} s, {} errors; latency avg {:.3} ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} ms",
        o.op,
        group_digits((ok as f64 / elapsed.as_secs_f64()) as u64),
        elapsed.as_secs_f64(),
        errors,
        ms(h.mean()),
        ms(h.quantile(0.5)),
        ms(h.quantile(0.99)),
        ms(h.quantile(0.999)),
        ms(h.max())
    );
    if let Some(e) = counters
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        println!("first error: {e}");
    }
    let cpu_end = server_cpu(&children);
    for (i, c) in children.iter().enumerate() {
        let cpu = cpu_end[i] - cpu_at_measure.0.get(i).copied().unwrap_or(0.0);
        println!(
            "server process {} (pid {}): {:.2} CPU-seconds while measuring, peak RSS {} MiB",
            i + 1,
            c.child.id(),
            cpu,
            peak_rss_kib(c.child.id()).unwrap_or(0) / 1024
        );
    }
    if let (Some(a), Some(b)) = (
        cpu_at_measure.1.or(client_cpu0),
        cpu_seconds(std::process::id()),
    ) {
        println!("client process: {:.2} CPU-seconds while measuring", b - a);
    }
    for c in &clients {
        c.close().await;
    }
    drop(children);
    Ok(())
}

/// `--op list`: fills directory `bench` with `--keys` children, then lists it
/// whole (page by page) again and again for `--duration`, one listing at a
/// time, and reports the time of one complete listing.
async fn list_bench(c: &KvClient, o: &BenchOptions, value: &Bytes) -> Result<(), String> {
    let n = o.keys.max(1);
    let fill = Instant::now();
    let mut i = 0u64;
    while i < n {
        let end = (i + dongting_client::MAX_LIST_PAGE as u64).min(n);
        let keys: Vec<String> = (i..end).map(|k| format!("bench.k{k:09}")).collect();
        let entries: Vec<(&str, &[u8])> =
            keys.iter().map(|k| (k.as_str(), value.as_ref())).collect();
        c.batch_put(o.group, &entries)
            .await
            .map_err(|e| format!("filling children failed: {e}"))?;
        i = end;
    }
    println!(
        "filled {} children in {:?}",
        group_digits(n),
        fill.elapsed()
    );
    let mut times = Vec::new();
    let start = Instant::now();
    while times.is_empty() || start.elapsed() < o.duration {
        let t = Instant::now();
        let r = c
            .list(o.group, "bench")
            .await
            .map_err(|e| format!("list failed: {e}"))?;
        times.push(t.elapsed());
        if r.data.len() as u64 != n {
            return Err(format!("listed {} children of {n}", r.data.len()));
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    println!(
        "summary: list of {} children ({} pages of up to {}): median {:.1} ms, min {:.1} ms, \
         max {:.1} ms over {} listings; {} children/s",
        group_digits(n),
        n.div_ceil(dongting_client::MAX_LIST_PAGE as u64),
        dongting_client::MAX_LIST_PAGE,
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len(),
        group_digits((n as f64 / median.as_secs_f64()) as u64)
    );
    Ok(())
}
