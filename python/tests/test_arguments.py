"""Numeric arguments: every timeout, wait, group, index, TTL and lease out of
range (or not a number) is refused with InvalidArgumentError naming the
argument and the value given, before anything is sent; never OverflowError,
a TypeError from inside the library, or a silent default."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Callable

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import dongting

MAX_TTL = 2_592_000  # seconds: DtKV's longest TTL, lease and lock wait (30 days)
MAX_TIMEOUT = 86_400  # seconds: the longest call timeout and watch wait (one day)
NOT_NUMBERS = ["5", None, True, b"1", [1]]


def refused(call: Callable[[], Any], name: str, value: Any, cls: type = dongting.InvalidArgumentError) -> None:
    """`call` raises `cls` (an InvalidArgumentError and a ValueError) whose
    message names the argument and the value given."""
    with pytest.raises(cls) as e:
        call()
    assert isinstance(e.value, ValueError)
    assert isinstance(e.value, dongting.InvalidArgumentError)
    assert e.value.code == (1022 if cls is dongting.InvalidTtlError else 900)
    assert e.value.message.startswith(("INVALID_TTL: " + name, name)), e.value.message
    assert e.value.message.endswith(f"got {value!r}"), e.value.message


@pytest.fixture(scope="module")
def nowhere() -> Any:
    """A client of an address where nothing listens: a call that passed the
    checks fails with TimeoutError or NetworkError, not InvalidArgumentError."""
    with dongting.KvClient("127.0.0.1:1", timeout=0.05) as kv:
        yield kv


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5, math.nan, math.inf, MAX_TIMEOUT + 0.001, 10**400, *NOT_NUMBERS])
@pytest.mark.parametrize("cls", [dongting.KvClient, dongting.AsyncKvClient])
def test_client_timeouts_out_of_range_are_refused_not_defaulted(cls: type, timeout: Any) -> None:
    refused(lambda: cls("127.0.0.1:1", timeout=timeout), "timeout", timeout)


def test_the_longest_timeout_and_a_short_one_are_taken() -> None:
    dongting.KvClient("127.0.0.1:1", timeout=MAX_TIMEOUT).close()
    dongting.KvClient("127.0.0.1:1", timeout=0.0001).close()


@pytest.mark.parametrize("servers", ["127.0.0.1:0", "127.0.0.1:1,localhost:0", ["127.0.0.1:1", "127.0.0.1:0"]])
def test_port_0_is_refused_at_once(servers: Any) -> None:
    started = time.monotonic()
    with pytest.raises(dongting.InvalidArgumentError) as e:
        dongting.KvClient(servers, timeout=60)
    assert time.monotonic() - started < 5
    assert e.value.code == 900 and ':0" has port 0' in e.value.message, e.value.message


@pytest.mark.parametrize("group", [-1, 2**32, 2**40, 1.5, "0", True])
def test_groups_out_of_range_are_refused(nowhere: dongting.KvClient, group: Any) -> None:
    refused(lambda: dongting.KvClient("127.0.0.1:1", group=group), "group", group)
    refused(lambda: nowhere.get("k", group=group), "group", group)
    refused(lambda: nowhere.put_temp("k", b"v", 10, group=group), "group", group)
    refused(lambda: nowhere.lock("k", group=group), "group", group)
    refused(lambda: nowhere.watch("k", group=group), "group", group)

    def assign() -> None:
        nowhere.group = group

    refused(assign, "group", group)
    assert nowhere.group == 0


def test_a_client_group_of_none_is_refused(nowhere: dongting.KvClient) -> None:
    # A call's group=None means the client's group; the client's own has no default.
    refused(lambda: dongting.KvClient("127.0.0.1:1", group=None), "group", None)

    def assign() -> None:
        nowhere.group = None  # type: ignore[assignment]

    refused(assign, "group", None)


def test_the_largest_group_is_sent(kv: dongting.KvClient) -> None:
    with pytest.raises(dongting.GroupNotFoundError):
        kv.get("k", group=2**32 - 1)


@pytest.mark.parametrize("ttl", [0, -0.0, 1e30, MAX_TTL + 0.001, 10**400])
def test_ttls_dtkv_refuses_are_invalid_ttl_naming_the_value(nowhere: dongting.KvClient, ttl: Any) -> None:
    for call in (
        lambda: nowhere.put_temp("k", b"v", ttl),
        lambda: nowhere.make_temp_dir("k", ttl),
        lambda: nowhere.update_ttl("k", ttl),
    ):
        refused(call, "ttl", ttl, dongting.InvalidTtlError)


@pytest.mark.parametrize("ttl", [-5, -0.001, math.inf, -math.inf, math.nan, *NOT_NUMBERS])
def test_ttls_that_are_no_ttl_are_invalid_arguments(nowhere: dongting.KvClient, ttl: Any) -> None:
    for call in (
        lambda: nowhere.put_temp("k", b"v", ttl),
        lambda: nowhere.make_temp_dir("k", ttl),
        lambda: nowhere.update_ttl("k", ttl),
    ):
        with pytest.raises(dongting.InvalidArgumentError) as e:
            call()
        assert not isinstance(e.value, dongting.InvalidTtlError)
        refused(call, "ttl", ttl)


def test_the_longest_ttl_is_taken(kv: dongting.KvClient, ns: str) -> None:
    assert kv.put_temp(f"{ns}.t", b"v", MAX_TTL).deadline_ms > 0
    assert kv.update_ttl(f"{ns}.t", MAX_TTL).deadline_ms > 0
    kv.remove(f"{ns}.t")


@pytest.mark.parametrize("lease", [0, -1, math.nan, math.inf, MAX_TTL + 0.001, *NOT_NUMBERS])
def test_leases_out_of_range_are_refused(nowhere: dongting.KvClient, lease: Any) -> None:
    refused(lambda: nowhere.lock("k", lease=lease), "lease", lease)
    if lease is None:
        return  # a call's lease=None means the lock's
    lock = nowhere.lock("k")
    refused(lambda: lock.try_lock(lease=lease), "lease", lease)
    refused(lambda: lock.update_lease(lease), "lease", lease)


@pytest.mark.parametrize("wait", [-1, -0.001, math.nan, math.inf, MAX_TTL + 0.001, *NOT_NUMBERS])
def test_lock_waits_out_of_range_are_refused(nowhere: dongting.KvClient, wait: Any) -> None:
    refused(lambda: nowhere.lock("k", wait=wait), "wait", wait)
    if wait is not None:  # a call's wait=None means the lock's
        refused(lambda: nowhere.lock("k").try_lock(wait=wait), "wait", wait)


def test_the_longest_lease_and_wait_are_taken(kv: dongting.KvClient, ns: str) -> None:
    lock = kv.lock(f"{ns}.l", lease=MAX_TTL, wait=MAX_TTL)
    assert lock.try_lock() is not None
    lock.update_lease(MAX_TTL)
    lock.unlock()


@pytest.mark.parametrize("from_index", [-1, 2**64, 1.0, "3", None, True])
def test_from_indexes_out_of_range_are_refused(nowhere: dongting.KvClient, from_index: Any) -> None:
    refused(lambda: nowhere.watch("k", from_index=from_index), "from_index", from_index)


@pytest.mark.parametrize("timeout", [-1, math.nan, math.inf, MAX_TIMEOUT + 0.001, "1", True])
def test_watch_waits_out_of_range_are_refused(kv: dongting.KvClient, ns: str, timeout: Any) -> None:
    with kv.watch(f"{ns}.w") as w:
        refused(lambda: w.next(timeout=timeout), "timeout", timeout)
        assert w.next(timeout=0) is None


def test_async_calls_refuse_the_same_arguments(nowhere: dongting.KvClient) -> None:
    async def main() -> None:
        async with dongting.AsyncKvClient("127.0.0.1:1", timeout=0.2) as kv:
            refused(lambda: kv.put("k", b"v", group=-1), "group", -1)
            refused(lambda: kv.get("k", group=2**32), "group", 2**32)
            refused(lambda: kv.put_temp("k", b"v", -5), "ttl", -5)
            refused(lambda: kv.put_temp("k", b"v", 0), "ttl", 0, dongting.InvalidTtlError)
            refused(lambda: kv.put_temp("k", b"v", "10"), "ttl", "10")
            refused(lambda: kv.make_temp_dir("k", 1e30), "ttl", 1e30, dongting.InvalidTtlError)
            refused(lambda: kv.update_ttl("k", 0), "ttl", 0, dongting.InvalidTtlError)
            refused(lambda: kv.watch("k", from_index=-1), "from_index", -1)
            refused(lambda: kv.lock("k", lease=0), "lease", 0)
            lock = kv.lock("k")
            with pytest.raises(dongting.InvalidArgumentError):
                await lock.try_lock(wait=-1)
            refused(lambda: lock.update_lease(-1), "lease", -1)

    asyncio.run(main())


def test_runtime_and_server_arguments(cluster: dongting.LocalCluster) -> None:
    for threads in [-1, 257, 2**40, "2", 1.5]:
        refused(lambda: dongting.Runtime(threads), "worker_threads", threads)
    with dongting.Runtime(1) as rt:
        refused(lambda: rt.shutdown(timeout=-1), "timeout", -1)
        assert not rt.is_shut_down
    refused(lambda: cluster.servers[0].stop(grace=-1), "grace", -1)
    assert not cluster.servers[0].stopped
    refused(lambda: dongting.LocalCluster(nodes=-1), "nodes", -1)
    refused(lambda: dongting.LocalCluster(groups=[0, -1]), "groups", -1)
    refused(lambda: cluster.wait_ready(timeout=math.nan), "timeout", math.nan)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=False)))
def test_any_ttl_outside_its_range_is_refused_with_its_value(nowhere: dongting.KvClient, ttl: Any) -> None:
    if 0 < ttl <= MAX_TTL:
        # In range: sent, and fails only for want of a server.
        with pytest.raises((dongting.TimeoutError, dongting.NetworkError)):
            nowhere.update_ttl("k", ttl)
    elif ttl < 0 or (isinstance(ttl, float) and math.isinf(ttl)):
        refused(lambda: nowhere.update_ttl("k", ttl), "ttl", ttl)
    else:
        refused(lambda: nowhere.update_ttl("k", ttl), "ttl", ttl, dongting.InvalidTtlError)


@settings(max_examples=200, deadline=None)
@given(st.integers())
def test_any_group_outside_u32_is_refused_with_its_value(nowhere: dongting.KvClient, group: int) -> None:
    if 0 <= group <= 2**32 - 1:
        with pytest.raises((dongting.TimeoutError, dongting.NetworkError)):
            nowhere.get("k", group=group)
    else:
        refused(lambda: nowhere.get("k", group=group), "group", group)
