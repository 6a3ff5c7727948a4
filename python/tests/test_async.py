"""AsyncKvClient: awaitables bridged from the Rust futures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import dongting


def test_every_async_operation(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        async with cluster.async_client() as kv:
            assert (await kv.mkdir(f"{ns}.d")).created
            assert (await kv.put(f"{ns}.d.a", b"1")).created
            n = await kv.get(f"{ns}.d.a")
            assert n is not None and n.value == b"1"
            assert await kv.get(f"{ns}.d.none") is None
            assert [x.name for x in await kv.list(f"{ns}.d")] == [f"{ns}.d.a"]
            p = await kv.list_page(f"{ns}.d", limit=1)
            assert [x.name for x in p.nodes] == [f"{ns}.d.a"] and not p.more
            assert [x.name async for x in kv.iter_list(f"{ns}.d", limit=1)] == [f"{ns}.d.a"]
            assert (await kv.batch_put({f"{ns}.d.b": b"2", f"{ns}.d.c": b"3"})).codes == [0, 0]
            got = await kv.batch_get([f"{ns}.d.b", f"{ns}.d.x"])
            assert got[0] is not None and got[0].value == b"2" and got[1] is None
            assert (await kv.batch_remove([f"{ns}.d.b", f"{ns}.d.c"])).codes == [0, 0]
            await kv.compare_and_set(f"{ns}.d.a", b"1", b"2")
            with pytest.raises(dongting.CasMismatchError):
                await kv.compare_and_set(f"{ns}.d.a", b"1", b"3")
            assert (await kv.put_temp(f"{ns}.d.t", b"v", 60)).deadline_ms > 0
            assert (await kv.update_ttl(f"{ns}.d.t", 60)).deadline_ms > 0
            assert (await kv.make_temp_dir(f"{ns}.td", 60)).deadline_ms > 0
            await kv.remove(f"{ns}.d.a")
            with pytest.raises(dongting.NotFoundError):
                await kv.remove(f"{ns}.d.a")

    asyncio.run(main())


def test_thousand_concurrent_puts(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        async with cluster.async_client(timeout=30.0) as kv:
            ticks = 0

            async def heartbeat() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            hb = asyncio.ensure_future(heartbeat())
            t0 = time.monotonic()
            results = await asyncio.gather(*(kv.put(f"{ns}.k{i}", b"v%d" % i) for i in range(1000)))
            elapsed = time.monotonic() - t0
            hb.cancel()
            assert len(results) == 1000 and all(r.created for r in results)
            assert len({r.index for r in results}) == 1000
            assert len(await kv.list(ns)) == 1000
            # The loop kept running while the puts were in flight.
            assert ticks >= 1 or elapsed < 0.01

    asyncio.run(main())


def test_cancelled_awaitable_does_not_break_the_loop(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        kv = dongting.AsyncKvClient("127.0.0.1:1", timeout=5.0)
        fut = kv.get("a")
        await asyncio.sleep(0.01)
        fut.cancel()  # type: ignore[attr-defined]
        with pytest.raises(asyncio.CancelledError):
            await fut
        async with cluster.async_client() as good:
            await good.put(f"{ns}.after", b"v")
        await kv.aclose()

    asyncio.run(main())


def test_errors_are_raised_in_the_awaiting_task(cluster: dongting.LocalCluster) -> None:
    async def main() -> None:
        async with cluster.async_client() as kv:
            with pytest.raises(dongting.GroupNotFoundError):
                await kv.get("a", group=42)
            with pytest.raises(dongting.InvalidKeyError):
                await kv.put("bad..key", b"v")

    asyncio.run(main())


class _LoopWithoutReaders(asyncio.SelectorEventLoop):
    """A loop that cannot watch file descriptors (like the proactor loop)."""

    def add_reader(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_loop_that_cannot_watch_sockets_still_gets_results(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        async with cluster.async_client() as kv:
            results = await asyncio.gather(*(kv.put(f"{ns}.k{i}", b"v") for i in range(200)))
            assert all(r.created for r in results)
            with pytest.raises(dongting.NotFoundError):
                await kv.remove(f"{ns}.none")

    loop = _LoopWithoutReaders()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_one_client_on_loops_in_several_threads(cluster: dongting.LocalCluster, ns: str) -> None:
    kv = cluster.async_client()
    errors: list = []

    def run(t: int) -> None:
        async def main() -> None:
            for r in range(20):
                got = await asyncio.gather(*(kv.put(f"{ns}.t{t}k{i}", b"%d" % r) for i in range(25)))
                assert all(w.index > 0 for w in got)

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    kv.close()
    assert not errors, errors
    with cluster.client() as check:
        assert len(check.list(ns)) == 100


def test_cancelling_many_calls_then_running_more(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        async with cluster.async_client() as kv:
            futs = [kv.put(f"{ns}.c{i}", b"v") for i in range(300)]
            for f in futs[::2]:
                f.cancel()  # type: ignore[attr-defined]
            done = await asyncio.gather(*futs, return_exceptions=True)
            assert all(isinstance(d, asyncio.CancelledError) for d in done[::2])
            assert all(isinstance(d, dongting.WriteResult) for d in done[1::2])
            assert (await kv.put(f"{ns}.after", b"v")).created

    asyncio.run(main())
