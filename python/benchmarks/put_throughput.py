"""Put throughput: Python asyncio (many calls in flight) against the Rust
client, on the same 1-node embedded cluster in one run.

    python benchmarks/put_throughput.py [COUNT] [IN_FLIGHT] [RUST_BENCH_BINARY] [C_ABI_BENCH_BINARY] [--runs N]

Each of the N rounds (default 3) runs, against the same node:

* ``python-asyncio``: IN_FLIGHT coroutines, each awaiting one put after the
  other until COUNT puts are done (the shape of the Rust bench: IN_FLIGHT
  tokio tasks, each awaiting puts in turn);
* ``python-asyncio-semaphore``: COUNT coroutines gathered at once, at most
  IN_FLIGHT inside an ``asyncio.Semaphore`` (most of its extra cost is the
  20,000 tasks and the semaphore's hand-offs, not the client);
* ``rust`` (when RUST_BENCH_BINARY is given): ``put_bench`` in a child
  process, the Rust client on tokio.

Then it prints the median rate of each over the rounds and the ratio
python/rust. ``cpu_us`` is the CPU time per put of this process (the node and
the Python client's IO threads; the event loop thread separately as
``loop_cpu_us``), and for the Rust client that of its child process.

The Rust figure comes from `cargo build --release -p dongting-sdk --example put_bench`,
the C ABI figures from ffi/bench/bench_abi.c.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from typing import Dict, List, Optional, Tuple

import dongting

try:
    import resource
except ImportError:  # not on Windows: no CPU figures there
    resource = None  # type: ignore[assignment]


def _cpu() -> Tuple[float, float]:
    """CPU seconds of this process and of its finished children."""
    if resource is None:
        return 0.0, 0.0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


async def asyncio_workers(kv: dongting.AsyncKvClient, count: int, in_flight: int, prefix: str) -> None:
    value = b"v" * 64
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:
            await kv.put(f"{prefix}.k{i % 10000}", value)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def asyncio_semaphore(kv: dongting.AsyncKvClient, count: int, in_flight: int, prefix: str) -> None:
    value = b"v" * 64
    sem = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with sem:
            await kv.put(f"{prefix}.k{i % 10000}", value)

    await asyncio.gather(*(one(i) for i in range(count)))


def blocking_puts(kv: dongting.KvClient, count: int) -> float:
    kv.mkdir("pyblock")
    t0 = time.perf_counter()
    for i in range(count):
        kv.put(f"pyblock.k{i}", b"v" * 64)
    return time.perf_counter() - t0


def report(name: str, count: int, in_flight: int, secs: float, cpu: float, loop_cpu: Optional[float] = None) -> float:
    rate = count / secs
    line = f"{name} puts={count} in_flight={in_flight} seconds={secs:.3f} puts_per_s={rate:.0f}"
    if resource is not None:
        line += f" cpu_us={cpu / count * 1e6:.1f}"
        if loop_cpu is not None:
            line += f" loop_cpu_us={loop_cpu / count * 1e6:.1f}"
    print(line, flush=True)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("count", nargs="?", type=int, default=20000)
    ap.add_argument("in_flight", nargs="?", type=int, default=1000)
    ap.add_argument("rust_bench", nargs="?", help="put_bench binary (the Rust client)")
    ap.add_argument("abi_bench", nargs="?", help="bench_abi binary (the C ABI)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; medians are printed (default 3)")
    args = ap.parse_args()
    count, in_flight = args.count, args.in_flight
    rates: Dict[str, List[float]] = {}

    with dongting.start_local_cluster(nodes=1) as cluster:

        async def python_round(n: int) -> None:
            async with cluster.async_client(timeout=60.0) as kv:
                if n == 0:
                    await kv.mkdir("pybench")
                    await asyncio_workers(kv, 2000, in_flight, "pybench")  # warm-up
                for name, shape in (("python-asyncio", asyncio_workers), ("python-asyncio-semaphore", asyncio_semaphore)):
                    c0, l0, t0 = _cpu()[0], time.thread_time(), time.perf_counter()
                    await shape(kv, count, in_flight, "pybench")
                    secs = time.perf_counter() - t0
                    loop_cpu = time.thread_time() - l0
                    rate = report(name, count, in_flight, secs, _cpu()[0] - c0 - loop_cpu, loop_cpu)
                    rates.setdefault(name, []).append(rate)

        for n in range(args.runs):
            asyncio.run(python_round(n))
            if args.rust_bench:
                (c0, k0) = _cpu()
                out = subprocess.run(
                    [args.rust_bench, cluster.addresses, str(count), str(in_flight)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                (c1, k1) = _cpu()
                line = out.stdout.strip()
                if out.returncode != 0 or "puts_per_s=" not in line:
                    raise SystemExit(f"{args.rust_bench} failed: {out.stderr.strip() or line}")
                rate = float(line.rsplit("puts_per_s=", 1)[1].split()[0])
                if resource is not None:
                    line += f" cpu_us={(k1 - k0) / count * 1e6:.1f} node_cpu_us={(c1 - c0) / count * 1e6:.1f}"
                print(line, flush=True)
                rates.setdefault("rust", []).append(rate)

        with cluster.client() as kv:
            n = min(count, 2000)
            secs = blocking_puts(kv, n)
            print(f"python-blocking puts={n} in_flight=1 seconds={secs:.3f} puts_per_s={n / secs:.0f} "
                  f"latency_us={secs / n * 1e6:.0f}")
        if args.abi_bench:
            out = subprocess.run([args.abi_bench, cluster.addresses], capture_output=True, text=True, timeout=600)
            print(out.stdout.strip() or out.stderr.strip())

    medians = {name: statistics.median(r) for name, r in rates.items()}
    print(f"median of {args.runs}: " + " ".join(f"{name}={m:.0f}/s" for name, m in medians.items()))
    if "rust" in medians:
        for name in ("python-asyncio", "python-asyncio-semaphore"):
            print(f"ratio {name}/rust = {medians[name] / medians['rust']:.2f}")


if __name__ == "__main__":
    main()
