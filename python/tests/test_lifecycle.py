"""Servers, runtimes, shutdown, interpreter exit and fork."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import dongting


def test_embedded_single_node_from_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dongting import _native

    cfg = _native.local_cluster_configs(1, [0], str(tmp_path))[0]
    path = tmp_path / "node1.toml"
    path.write_text(cfg)
    with dongting.Runtime(1) as rt:
        with dongting.EmbeddedServer(path=path, runtime=rt) as server:
            assert server.node_id == 1 and ":" in server.service_addr and ":" in server.replicate_addr
            st = server.status()
            assert st["node_id"] == 1 and st["groups"][0]["group_id"] == 0
            assert server.role(7) is None
            with dongting.KvClient(server.service_addr, runtime=rt) as kv:
                kv.mkdir("x")
                # The status is published by the group's task right after the
                # answer goes out; allow for the moment in between.
                deadline = time.monotonic() + 5.0
                while not server.is_leader(0) and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert server.is_leader(0)
                assert server.role(0) == "leader"
                m = server.metrics()
                assert 'dongting_group_is_leader{group="0"} 1' in m and m.rstrip().endswith("# EOF")
        assert server.stopped
        server.stop()  # idempotent
    assert rt.is_shut_down


def test_leader_failover(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with dongting.Runtime(2) as rt:
        with dongting.start_local_cluster(3, data_dir=tmp_path, runtime=rt) as c:
            with c.client(timeout=20.0) as kv:
                kv.mkdir("f")
                kv.put("f.a", b"1")
                leader = c.leader()
                assert leader is not None
                leader.stop()
                kv.put("f.b", b"2")
                assert kv.get("f.a").value == b"1"  # type: ignore[union-attr]
                # Under load the two survivors may hold another election after
                # the one that served the put: wait for the group to settle.
                c.wait_ready(20.0)
                new = c.leader()
                assert new is not None and new is not leader


def test_runtime_shutdown_fails_calls_in_flight_and_later_calls() -> None:
    import asyncio

    rt = dongting.Runtime(1)

    async def main() -> None:
        kv = dongting.AsyncKvClient("127.0.0.1:1", timeout=60.0, runtime=rt)
        futs = [kv.get("a") for _ in range(20)]
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, rt.shutdown)
        results = await asyncio.gather(*futs, return_exceptions=True)
        assert all(isinstance(r, dongting.RuntimeShutDownError) for r in results)
        with pytest.raises(dongting.RuntimeShutDownError):
            await kv.get("a")

    asyncio.run(main())
    with pytest.raises(dongting.RuntimeShutDownError):
        dongting.KvClient("127.0.0.1:1", runtime=rt)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exit_with_live_clients_servers_and_calls_in_flight() -> None:
    p = _run(
        """
        import asyncio, dongting
        c = dongting.start_local_cluster(1)
        kv = c.client()
        kv.mkdir("a")
        dead = dongting.AsyncKvClient("127.0.0.1:1", timeout=60.0)
        async def main():
            dead.get("a")          # left in flight
            await asyncio.sleep(0.05)
        asyncio.run(main())
        blocking = dongting.KvClient("127.0.0.1:1", timeout=60.0)
        print("bye")
        """
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "bye"
    assert "Traceback" not in p.stderr and "panicked" not in p.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_clear_error() -> None:
    p = _run(
        """
        import os, sys, warnings, dongting
        warnings.simplefilter("ignore")
        c = dongting.start_local_cluster(1)
        kv = c.client()
        kv.mkdir("p")
        pid = os.fork()
        if pid == 0:
            try:
                kv.get("p")
                os._exit(2)
            except dongting.ForkedError as e:
                ok = e.code == 903 and "fork" in e.message
            # A new client in the child gets a new runtime of its own.
            fresh = dongting.KvClient("127.0.0.1:1", timeout=0.2)
            try:
                fresh.get("p")
            except (dongting.TimeoutError, dongting.NetworkError):
                pass
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.WEXITSTATUS(status))
        print("parent", kv.get("p").is_dir)
        """
    )
    assert p.returncode == 0, p.stderr
    assert "child 0" in p.stdout and "parent True" in p.stdout
