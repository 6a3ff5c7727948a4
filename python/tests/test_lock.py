"""Distributed locks from Python: fencing tokens, the context manager, waits
and the owner check."""

from __future__ import annotations

import threading
import time

import pytest

import dongting


def test_tokens_grow_and_the_context_manager_releases(cluster: dongting.LocalCluster, ns: str) -> None:
    with cluster.client(timeout=10.0) as a, cluster.client(timeout=10.0) as b:
        la = a.lock(f"{ns}.l", lease=10.0)
        lb = b.lock(f"{ns}.l", lease=10.0)
        with la as t1:
            assert t1 > 0
            assert la.is_held()
            assert la.token == t1
            assert 9.0 < la.lease_rest <= 10.0
            assert lb.try_lock() is None
            with pytest.raises(dongting.LockNotAcquiredError):
                with lb:
                    pass
        assert not la.is_held()
        assert la.token is None
        with lb as t2:
            assert t2 > t1
            with pytest.raises(dongting.NotOwnerError):
                la.update_lease(5.0)
            lb.update_lease(20.0)
            assert lb.lease_rest > 19.0
        assert not lb.is_held()


def test_a_waiter_gets_the_lock_when_it_is_released(cluster: dongting.LocalCluster, ns: str) -> None:
    with cluster.client(timeout=10.0) as a, cluster.client(timeout=10.0) as b:
        la = a.lock(f"{ns}.w", lease=10.0)
        t1 = la.try_lock()
        assert t1 is not None
        got = []
        waiter = threading.Thread(target=lambda: got.append(b.lock(f"{ns}.w").try_lock(lease=10.0, wait=8.0)))
        waiter.start()
        time.sleep(0.3)
        la.unlock()
        waiter.join(timeout=10.0)
        assert len(got) == 1 and got[0] is not None and got[0] > t1
        # A wait that ends without the lock returns None.
        started = time.monotonic()
        assert la.try_lock(wait=0.3) is None
        assert time.monotonic() - started >= 0.3


def test_bad_arguments_are_refused(kv: dongting.KvClient, ns: str) -> None:
    lock = kv.lock(f"{ns}.bad")
    with pytest.raises(ValueError):
        lock.try_lock(lease=0)
    with pytest.raises(ValueError):
        lock.try_lock(wait=-1)
    with pytest.raises(dongting.InvalidKeyError):
        kv.lock("bad..key")
