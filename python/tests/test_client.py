"""Every blocking operation against the embedded cluster."""

from __future__ import annotations

import threading
import time

import pytest

import dongting
from dongting import NodeKind


def test_put_get_remove_mkdir_list(kv: dongting.KvClient, ns: str) -> None:
    r = kv.put(f"{ns}.a", b"1")
    assert r.created and r.index > 0
    assert not kv.put(f"{ns}.a", "2").created
    n = kv.get(f"{ns}.a")
    assert n is not None and n.value == b"2" and n.kind == NodeKind.VALUE and n.is_value
    assert n.key == f"{ns}.a".encode() and n.name == f"{ns}.a"
    assert n.update_index >= n.create_index > 0
    assert kv.get(f"{ns}.missing") is None
    assert kv.mkdir(f"{ns}.d").created
    assert not kv.mkdir(f"{ns}.d").created
    d = kv.get(f"{ns}.d")
    assert d is not None and d.is_dir
    assert [x.name for x in kv.list(ns)] == [f"{ns}.a", f"{ns}.d"]
    assert any(x.name == ns for x in kv.list())
    assert kv.remove(f"{ns}.a").index > r.index
    assert kv.get(f"{ns}.a") is None


def test_paged_listing(kv: dongting.KvClient, ns: str) -> None:
    kv.batch_put({f"{ns}.{c}": c for c in "abcde"})
    p = kv.list_page(ns, limit=2)
    assert [n.name for n in p.nodes] == [f"{ns}.a", f"{ns}.b"] and p.more
    assert p.next_after == f"{ns}.b".encode()
    p = kv.list_page(ns, start_after=p.next_after, limit=2)
    assert [n.name for n in p.nodes] == [f"{ns}.c", f"{ns}.d"] and p.more
    p = kv.list_page(ns, start_after=f"{ns}.d", limit=2)
    assert [n.name for n in p.nodes] == [f"{ns}.e"] and not p.more
    p = kv.list_page(ns, start_after=f"{ns}.e")
    assert p.nodes == [] and not p.more and p.next_after is None
    assert len(kv.list_page(ns).nodes) == 5
    assert [n.name for n in kv.iter_list(ns, limit=2)] == [f"{ns}.{c}" for c in "abcde"]
    for bad in (10_001, -1, 1.5, "3", None, True):
        with pytest.raises(dongting.InvalidArgumentError, match="limit"):
            kv.list_page(ns, limit=bad)  # type: ignore[arg-type]
    with pytest.raises(dongting.NotFoundError):
        kv.list_page(f"{ns}.none")
    with pytest.raises(dongting.InvalidKeyError):
        kv.list_page(ns, start_after=f"{ns}..x")


def test_list_of_a_directory_larger_than_one_answer(kv: dongting.KvClient, ns: str) -> None:
    keys = [f"{ns}.k{i:05}" for i in range(12_000)]
    for i in range(0, len(keys), 10_000):
        kv.batch_put({k: b"v" for k in keys[i : i + 10_000]})
    assert [n.name for n in kv.list(ns)] == keys
    assert sum(1 for _ in kv.iter_list(ns, limit=5_000)) == 12_000


def test_bytes_and_str_keys_are_the_same(kv: dongting.KvClient, ns: str) -> None:
    kv.put(f"{ns}.k".encode(), bytearray(b"v"))
    assert kv.get(f"{ns}.k").value == b"v"  # type: ignore[union-attr]
    kv.put(f"{ns}.k", memoryview(b"w"))
    assert kv.get(f"{ns}.k".encode()).value == b"w"  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        kv.put(42, b"v")  # type: ignore[arg-type]


def test_batches(kv: dongting.KvClient, ns: str) -> None:
    r = kv.batch_put({f"{ns}.a": b"1", f"{ns}.b": "2"})
    assert r.codes == [0, 0]
    r = kv.batch_put([(f"{ns}.c", b"3")])
    assert r.codes == [0]
    got = kv.batch_get([f"{ns}.a", f"{ns}.zz", f"{ns}.c"])
    assert [g.value if g else None for g in got] == [b"1", None, b"3"]
    r = kv.batch_remove([f"{ns}.a", f"{ns}.b"])
    assert r.codes == [0, 0]
    assert kv.get(f"{ns}.a") is None
    with pytest.raises(TypeError):
        kv.batch_get(f"{ns}.a")
    with pytest.raises(dongting.TooManyKeysError):
        kv.batch_get([])


def test_compare_and_set(kv: dongting.KvClient, ns: str) -> None:
    k = f"{ns}.cas"
    kv.compare_and_set(k, b"", b"1")
    kv.compare_and_set(k, b"1", b"2")
    with pytest.raises(dongting.CasMismatchError) as e:
        kv.compare_and_set(k, b"1", b"3")
    assert e.value.code == 1014 and not e.value.retryable and e.value.name == "CAS_MISMATCH"
    kv.compare_and_set(k, b"2", b"")
    assert kv.get(k) is None


def test_temporary_nodes(kv: dongting.KvClient, ns: str) -> None:
    r = kv.put_temp(f"{ns}.t", b"v", ttl=60)
    assert r.deadline_ms > 0
    n = kv.get(f"{ns}.t")
    assert n is not None and n.ttl_deadline_ms == r.deadline_ms and n.ttl_owner == kv.client_id
    assert kv.update_ttl(f"{ns}.t", ttl=30).deadline_ms > 0
    assert kv.make_temp_dir(f"{ns}.td", ttl=60).deadline_ms > 0
    with pytest.raises(dongting.NotTempNodeError):
        kv.update_ttl(ns, ttl=10)
    with pytest.raises(dongting.InvalidTtlError):
        kv.put_temp(f"{ns}.t2", b"v", ttl=0)
    # A short TTL expires.
    kv.put_temp(f"{ns}.short", b"v", ttl=0.3)
    deadline = time.monotonic() + 10
    while kv.get(f"{ns}.short") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kv.get(f"{ns}.short") is None


def test_groups(cluster: dongting.LocalCluster, ns: str) -> None:
    with cluster.client(group=1) as kv1:
        kv1.mkdir(ns)
        kv1.put(f"{ns}.g", b"1")
        assert kv1.get(f"{ns}.g", group=0) is None
        assert kv1.get(f"{ns}.g").value == b"1"  # type: ignore[union-attr]


def test_gil_is_released_during_calls(kv: dongting.KvClient, ns: str) -> None:
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.0005)

    t = threading.Thread(target=spin)
    t.start()
    for i in range(50):
        kv.put(f"{ns}.g{i}", b"v")
    stop.set()
    t.join()
    assert ticks > 10


def test_many_threads_share_one_client(kv: dongting.KvClient, ns: str) -> None:
    errors: list = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                kv.put(f"{ns}.t{i}_{j}", b"v")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(kv.list(ns)) == 160
