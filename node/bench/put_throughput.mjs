// Put throughput: Node (async, many calls in flight) beside the Rust client,
// on the same 1-node embedded cluster in one run.
//
//   node bench/put_throughput.mjs [COUNT] [IN_FLIGHT] [RUST_BENCH_BINARY] [RUNS]
//
// COUNT puts (default 20000) of 64-byte values, keys cycling over 10,000,
// IN_FLIGHT (default 1000) at a time; RUNS rounds (default 3), Node and Rust
// alternating, medians last. `cpu_us` is the CPU time per put of this process
// (the JavaScript thread, the IO threads and the embedded node). The Rust binary is engine/sdk/examples/put_bench.rs
// (`cargo build -p dongting-sdk --example put_bench`).

import { execFileSync } from 'node:child_process';
import { startLocalCluster } from '../index.mjs';

const count = Number(process.argv[2] || 20000);
const inFlight = Number(process.argv[3] || 1000);
const rust = process.argv[4] || null;
const runs = Number(process.argv[5] || 3);

async function nodePuts(kv, n) {
  const value = Buffer.alloc(64, 'v');
  let next = 0;
  const t0 = process.hrtime.bigint();
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      await kv.put(`nbench.k${i % 10000}`, value);
    }
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, worker));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const cluster = await startLocalCluster(1);
const nodeRates = [];
const rustRates = [];
try {
  const kv = cluster.client({ timeoutMs: 60_000 });
  await kv.mkdir('nbench');
  await nodePuts(kv, 2000); // warm-up
  for (let r = 0; r < runs; r++) {
    const cpu0 = process.cpuUsage();
    const secs = await nodePuts(kv, count);
    const cpu = process.cpuUsage(cpu0);
    nodeRates.push(count / secs);
    const cpuUs = (cpu.user + cpu.system) / count;
    console.log(`node puts=${count} in_flight=${inFlight} seconds=${secs.toFixed(3)} puts_per_s=${(count / secs).toFixed(0)} cpu_us=${cpuUs.toFixed(1)}`);
    if (rust) {
      const out = execFileSync(rust, [cluster.addresses, String(count), String(inFlight)], { encoding: 'utf8', timeout: 600_000 }).trim();
      console.log(out);
      const m = /puts_per_s=(\d+)/.exec(out);
      if (m) rustRates.push(Number(m[1]));
    }
  }
  await kv.close();
} finally {
  await cluster.stop();
}
const nodeMedian = median(nodeRates);
console.log(`node median puts_per_s=${nodeMedian.toFixed(0)} (runs: ${nodeRates.map((x) => x.toFixed(0)).join(', ')})`);
if (rustRates.length > 0) {
  const rustMedian = median(rustRates);
  console.log(`rust median puts_per_s=${rustMedian.toFixed(0)} (runs: ${rustRates.join(', ')})`);
  console.log(`node/rust ratio=${(nodeMedian / rustMedian).toFixed(2)}`);
}
