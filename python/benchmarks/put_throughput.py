"""Put throughput: Python asyncio (many calls in flight) against the Rust
client, on the same 1-node embedded cluster in one run.

    python benchmarks/put_throughput.py [COUNT] [IN_FLIGHT] [RUST_BENCH_BINARY] [C_ABI_BENCH_BINARY]

The Rust figure comes from `cargo build -p dongting-sdk --example put_bench`,
the C ABI figures from ffi/bench/bench_abi.c.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import dongting


async def asyncio_puts(kv: dongting.AsyncKvClient, count: int, in_flight: int) -> float:
    await kv.mkdir("pybench")
    value = b"v" * 64
    sem = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with sem:
            await kv.put(f"pybench.k{i % 10000}", value)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - t0


def blocking_puts(kv: dongting.KvClient, count: int) -> float:
    kv.mkdir("pyblock")
    t0 = time.perf_counter()
    for i in range(count):
        kv.put(f"pyblock.k{i}", b"v" * 64)
    return time.perf_counter() - t0


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    in_flight = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rust = sys.argv[3] if len(sys.argv) > 3 else None
    with dongting.start_local_cluster(nodes=1) as cluster:
        async def run() -> float:
            async with cluster.async_client(timeout=60.0) as kv:
                await asyncio_puts(kv, 2000, in_flight)  # warm-up
                return await asyncio_puts(kv, count, in_flight)

        secs = asyncio.run(run())
        print(f"python-asyncio puts={count} in_flight={in_flight} seconds={secs:.3f} puts_per_s={count / secs:.0f}")
        with cluster.client() as kv:
            n = min(count, 2000)
            secs = blocking_puts(kv, n)
            print(f"python-blocking puts={n} in_flight=1 seconds={secs:.3f} puts_per_s={n / secs:.0f} "
                  f"latency_us={secs / n * 1e6:.0f}")
        if rust:
            out = subprocess.run([rust, cluster.addresses, str(count), str(in_flight)],
                                 capture_output=True, text=True, timeout=600)
            print(out.stdout.strip() or out.stderr.strip())
        if len(sys.argv) > 4:
            out = subprocess.run([sys.argv[4], cluster.addresses], capture_output=True, text=True, timeout=600)
            print(out.stdout.strip() or out.stderr.strip())


if __name__ == "__main__":
    main()
