"""Watches (blocking and asyncio) and the asyncio lock."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import List

import pytest

import dongting
from dongting import NodeKind, WatchEvent


def _take(w: dongting.Watch, n: int, timeout: float = 10.0) -> List[WatchEvent]:
    out: List[WatchEvent] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        rest = deadline - time.monotonic()
        assert rest > 0, f"only {len(out)} of {n} events arrived: {out}"
        ev = w.next(timeout=rest)
        if ev is not None:
            out.append(ev)
    return out


def test_events_come_in_order_with_the_write_indexes(kv: dongting.KvClient, ns: str) -> None:
    start = kv.put(f"{ns}.other", "x").index
    with kv.watch(f"{ns}.a", from_index=start) as w:
        assert w.keys == (f"{ns}.a",)
        i1 = kv.put(f"{ns}.a", "1").index
        kv.put(f"{ns}.other", "y")  # not watched
        i2 = kv.put(f"{ns}.a", b"2").index
        i3 = kv.remove(f"{ns}.a").index
        evs = _take(w, 3)
        assert [e.index for e in evs] == [i1, i2, i3]
        assert [(e.key, e.kind, e.value) for e in evs] == [
            (f"{ns}.a".encode(), NodeKind.VALUE, b"1"),
            (f"{ns}.a".encode(), NodeKind.VALUE, b"2"),
            (f"{ns}.a".encode(), NodeKind.ABSENT, b""),
        ]
        assert not any(e.compacted for e in evs)
        assert evs[0].name == f"{ns}.a"
        # Nothing else: a wait with a timeout returns None.
        t0 = time.monotonic()
        assert w.next(timeout=0.3) is None
        assert time.monotonic() - t0 >= 0.29
        assert w.last_index >= i3


def test_a_directory_watch_sees_its_subtree(kv: dongting.KvClient, ns: str) -> None:
    start = kv.mkdir(f"{ns}.d").index
    with kv.watch(f"{ns}.d", from_index=start) as w:
        i1 = kv.mkdir(f"{ns}.d.sub").index
        i2 = kv.put(f"{ns}.d.sub.k", "v").index
        kv.put(f"{ns}.e", "outside")
        i3 = kv.put(f"{ns}.d.k", "w").index
        evs = _take(w, 3)
        assert [(e.index, e.key, e.kind) for e in evs] == [
            (i1, f"{ns}.d.sub".encode(), NodeKind.DIR),
            (i2, f"{ns}.d.sub.k".encode(), NodeKind.VALUE),
            (i3, f"{ns}.d.k".encode(), NodeKind.VALUE),
        ]


def test_iteration_ends_when_the_watch_is_closed(kv: dongting.KvClient, ns: str) -> None:
    start = kv.put(f"{ns}.k", "0").index
    w = kv.watch(f"{ns}.k", from_index=start)
    seen: List[WatchEvent] = []

    def consume() -> None:
        for ev in w:
            seen.append(ev)

    t = threading.Thread(target=consume)
    t.start()
    idx = kv.put(f"{ns}.k", "1").index
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    w.close()
    t.join(timeout=5)
    assert not t.is_alive()
    assert [e.index for e in seen] == [idx]
    assert w.closed
    w.close()  # idempotent
    with pytest.raises(dongting.ClosedError):
        w.next(timeout=0.1)


def test_resuming_from_last_index_repeats_nothing(kv: dongting.KvClient, ns: str) -> None:
    start = kv.put(f"{ns}.r", "0").index
    with kv.watch(f"{ns}.r", from_index=start) as w:
        first = [kv.put(f"{ns}.r", str(i)).index for i in range(3)]
        assert [e.index for e in _take(w, 3)] == first
        resume = w.last_index
    assert resume >= first[-1]
    later = [kv.put(f"{ns}.r", str(i)).index for i in range(3, 5)]
    with kv.watch(f"{ns}.r", from_index=resume) as w2:
        evs = _take(w2, 2)
        assert [e.index for e in evs] == later
        assert w2.next(timeout=0.3) is None
    # From an older index the history replays what was missed, once each.
    with kv.watch(f"{ns}.r", from_index=start) as w3:
        assert [e.index for e in _take(w3, 5)] == first + later


def test_bad_watch_arguments_are_refused(kv: dongting.KvClient, ns: str) -> None:
    with pytest.raises(ValueError):
        kv.watch()
    with pytest.raises(ValueError):
        kv.watch(b"\xff\xfe")
    with pytest.raises(ValueError):
        kv.watch(f"{ns}.x", from_index=-1)
    with pytest.raises(TypeError):
        kv.watch(42)  # type: ignore[arg-type]
    with kv.watch(f"{ns}.x") as w:
        with pytest.raises(ValueError):
            w.next(timeout=-1)


def test_async_watch_iterates_without_blocking_the_loop(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        async with cluster.async_client(timeout=10.0) as kv:
            start = (await kv.put(f"{ns}.aw", "0")).index
            ticks = 0
            stop = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)

            tick_task = asyncio.ensure_future(ticker())
            async with kv.watch(f"{ns}.aw", from_index=start) as w:
                # A cancelled __anext__ loses nothing.
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(w.__anext__(), 0.3)
                idx = [(await kv.put(f"{ns}.aw", str(i))).index for i in range(1, 4)]
                got = []
                async for ev in w:
                    got.append(ev)
                    if len(got) == 3:
                        break
                assert [e.index for e in got] == idx
                assert [e.value for e in got] == [b"1", b"2", b"3"]
                assert await w.next(timeout=0.2) is None
                assert await w.last_index() >= idx[-1]
            assert w.closed
            stop.set()
            await tick_task
            assert ticks > 20  # the loop kept running while the watch waited
            # aclose ends a pending iteration.
            w2 = await kv.watch(f"{ns}.aw", from_index=idx[-1])
            ended = asyncio.ensure_future(_drain(w2))
            await asyncio.sleep(0.3)
            await w2.aclose()
            assert await asyncio.wait_for(ended, 5) == []

    asyncio.run(main())


def test_async_watches_hold_no_thread(cluster: dongting.LocalCluster, ns: str) -> None:
    n = 100

    async def main() -> None:
        async with cluster.async_client(timeout=10.0) as kv:
            start = (await kv.put(f"{ns}.many", "0")).index
            watches = [await kv.watch(f"{ns}.many", from_index=start) for _ in range(n)]
            before = threading.active_count()
            waits = [asyncio.ensure_future(w.__anext__()) for w in watches]
            await asyncio.sleep(0.5)
            during = threading.active_count()
            # Every wait is pending at once, none on a thread of its own.
            assert during - before < n // 4, (before, during)
            index = (await kv.put(f"{ns}.many", "1")).index
            got = await asyncio.wait_for(asyncio.gather(*waits), 10)
            assert [e.index for e in got] == [index] * n
            for w in watches:
                await w.aclose()

    asyncio.run(main())


async def _drain(w: dongting.AsyncWatch) -> List[WatchEvent]:
    return [ev async for ev in w]


def test_async_lock_excludes_and_tokens_grow(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        async with cluster.async_client(timeout=10.0) as a, cluster.async_client(timeout=10.0) as b:
            la = a.lock(f"{ns}.al", lease=10.0)
            lb = b.lock(f"{ns}.al", lease=10.0, wait=8.0)
            holders = 0
            max_holders = 0
            tokens: List[int] = []

            async def critical(lock: dongting.AsyncLock) -> None:
                nonlocal holders, max_holders
                async with lock as token:
                    holders += 1
                    max_holders = max(max_holders, holders)
                    tokens.append(token)
                    assert lock.is_held() and lock.token == token
                    await asyncio.sleep(0.2)
                    holders -= 1
                assert not lock.is_held()

            async with la as t1:
                assert t1 > 0
                assert await lb.try_lock(wait=0) is None
                with pytest.raises(dongting.LockNotAcquiredError):
                    async with b.lock(f"{ns}.al", lease=5.0):
                        pass
                with pytest.raises(dongting.NotOwnerError):
                    await lb.update_lease(5.0)
                await la.update_lease(20.0)
                assert la.lease_rest > 19.0
            la.wait = 8.0

            async def rounds(lock: dongting.AsyncLock) -> None:
                for _ in range(3):
                    await critical(lock)

            # One handle per client: the two clients take turns, never both in.
            await asyncio.gather(rounds(la), rounds(lb))
            assert max_holders == 1
            assert len(tokens) == 6
            assert t1 < min(tokens)
            assert sorted(tokens) == tokens and len(set(tokens)) == 6
            with pytest.raises(ValueError):
                await la.try_lock(lease=0)

    asyncio.run(main())


def test_a_cancelled_async_acquisition_releases_a_late_grant(cluster: dongting.LocalCluster, ns: str) -> None:
    async def main() -> None:
        async with cluster.async_client(timeout=10.0) as a, cluster.async_client(
            timeout=10.0
        ) as b, cluster.async_client(timeout=10.0) as c:
            lb = b.lock(f"{ns}.cl", lease=10.0)
            assert await lb.try_lock() is not None
            la = a.lock(f"{ns}.cl", lease=10.0, wait=8.0)
            waiting = asyncio.ensure_future(la.try_lock())
            await asyncio.sleep(0.3)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # b releases: a's request still in the queue gets the lock and
            # hands it back at once, so c gets it well before a's lease ends.
            await lb.unlock()
            t0 = time.monotonic()
            assert await c.lock(f"{ns}.cl", lease=5.0).try_lock(wait=8.0) is not None
            assert time.monotonic() - t0 < 5.0
            assert not la.is_held()

    asyncio.run(main())


_EXIT_SCRIPT = r"""
import asyncio, sys, threading, dongting
servers = sys.argv[1]
kv = dongting.KvClient(servers, timeout=10.0)
w = kv.watch(sys.argv[2])
t = threading.Thread(target=lambda: [ev for ev in w], daemon=True)
t.start()

async def main():
    akv = dongting.AsyncKvClient(servers, timeout=10.0)
    global aw
    aw = await akv.watch(sys.argv[2])
    task = asyncio.ensure_future(aw.__anext__())
    await asyncio.sleep(0.3)

asyncio.run(main())
print("exiting", flush=True)
"""


def test_interpreter_exit_with_live_watches_neither_hangs_nor_crashes(
    cluster: dongting.LocalCluster, kv: dongting.KvClient, ns: str
) -> None:
    servers = cluster.addresses
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, servers, f"{ns}.exit"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "exiting"
    assert "Traceback" not in p.stderr, p.stderr
    assert time.monotonic() - t0 < 25


def test_a_compaction_item_becomes_a_compacted_event() -> None:
    # The server sends these only when its history no longer reaches back to
    # the watch; the conversion of the native item is checked directly.
    from dongting._watch import _event

    ev = _event((True, 70, b"", 0, b"", 30))
    assert ev.compacted and ev.index == 70 and ev.history_floor == 30
    assert ev.key == b"" and ev.value == b"" and ev.kind == NodeKind.ABSENT
    change = _event((False, 71, b"a.b", 1, b"v", 0))
    assert not change.compacted and change.kind == NodeKind.VALUE and change.name == "a.b"
