"""EmbeddedServer and a local cluster for tests and development."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _args, _native
from ._client import AsyncKvClient, KvClient
from ._runtime import Runtime, default_runtime

PathLike = Union[str, "os.PathLike[str]"]


class EmbeddedServer:
    """A Dongting node running inside this process.

    Start it from TOML configuration text (``config``) or a file (``path``);
    see docs/server.md for the settings. Starting blocks (GIL released) until
    every group is open and the ports listen. Use it as a context manager, or
    call :meth:`stop`; servers still running when their runtime shuts down
    (at the latest at interpreter exit) are stopped then.
    """

    def __init__(
        self,
        config: Optional[str] = None,
        *,
        path: Optional[PathLike] = None,
        runtime: Optional[Runtime] = None,
    ) -> None:
        if (config is None) == (path is None):
            raise TypeError("give exactly one of config (TOML text) and path")
        self._runtime = runtime if runtime is not None else default_runtime()
        if config is not None:
            self._native = _native.NativeServer.start(self._runtime._native, config)
        else:
            self._native = _native.NativeServer.start_file(self._runtime._native, os.fspath(path))  # type: ignore[arg-type]

    @property
    def node_id(self) -> int:
        return self._native.node_id()

    @property
    def service_addr(self) -> str:
        """``ip:port`` clients connect to."""
        return self._native.service_addr()

    @property
    def replicate_addr(self) -> str:
        """``ip:port`` of the replicate port (peers, admin tools)."""
        return self._native.replicate_addr()

    @property
    def stopped(self) -> bool:
        return self._native.is_stopped()

    def status(self) -> Dict[str, Any]:
        """``{"node_id", "ready", "groups": [{"group_id", "role", "term",
        "leader_id", "commit_index", "applied_index", "ready"}]}``. Cheap."""
        return self._native.status()

    def metrics(self) -> str:
        """The node's metrics in the Prometheus text format, the same text
        its HTTP port's ``GET /metrics`` serves (see docs/monitoring.md), for
        an application to expose on its own endpoint. Cheap."""
        return self._native.metrics()

    def role(self, group: int = 0) -> Optional[str]:
        """This node's role in ``group`` (``"leader"``, ``"follower"``...),
        None when it does not host it."""
        for g in self.status()["groups"]:
            if g["group_id"] == group:
                return g["role"]
        return None

    def is_leader(self, group: int = 0) -> bool:
        """Whether this node leads ``group`` and has applied its term's first
        entry (it serves linearizable reads)."""
        for g in self.status()["groups"]:
            if g["group_id"] == group:
                return g["role"] == "leader" and g["ready"]
        return False

    def stop(self, grace: float = 1.0) -> None:
        """Stops gracefully: writes already accepted finish within ``grace``
        seconds (0 to 86400), logs are synced and closed. Idempotent;
        releases the GIL."""
        self._native.stop(_args.wait(grace, "grace"))

    def __enter__(self) -> "EmbeddedServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedServer(node_id={self.node_id}, service={self.service_addr!r})"


class LocalCluster:
    """Nodes on loopback in this process, each hosting every group, with
    fast elections: for tests and development, not production.

    Data lives in ``data_dir`` (default: a temporary directory removed by
    :meth:`stop`).
    """

    def __init__(
        self,
        nodes: int = 3,
        groups: Sequence[int] = (0,),
        *,
        data_dir: Optional[PathLike] = None,
        runtime: Optional[Runtime] = None,
        timeout: float = 30.0,
    ) -> None:
        nodes = _args.integer(nodes, "nodes", 0, _args.MAX_U32)
        self.groups = [_args.group(g, "groups") for g in groups]
        _args.wait(timeout, "timeout")
        self._temp = data_dir is None
        self.data_dir = tempfile.mkdtemp(prefix="dongting-") if data_dir is None else os.fspath(data_dir)
        self._runtime = runtime if runtime is not None else default_runtime()
        self.servers: List[EmbeddedServer] = []
        try:
            for cfg in _native.local_cluster_configs(nodes, self.groups, self.data_dir):
                self.servers.append(EmbeddedServer(cfg, runtime=self._runtime))
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> str:
        """Service addresses of every node, comma-separated."""
        return ",".join(s.service_addr for s in self.servers if not s.stopped)

    def leader(self, group: int = 0) -> Optional[EmbeddedServer]:
        """The node leading ``group``, if one does now."""
        for s in self.servers:
            if not s.stopped and s.is_leader(group):
                return s
        return None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until every group has a leader, at most ``timeout`` seconds
        (0 to 86400); raises TimeoutError."""
        _args.wait(timeout, "timeout")
        deadline = time.monotonic() + timeout
        while True:
            if all(self.leader(g) is not None for g in self.groups):
                return
            if time.monotonic() > deadline:
                from ._errors import TimeoutError as DtTimeout

                raise DtTimeout(10, f"no leader for every group within {timeout} s")
            time.sleep(0.05)

    def client(self, **kwargs: Any) -> KvClient:
        """A blocking client for this cluster (``group`` defaults to the first)."""
        kwargs.setdefault("group", self.groups[0])
        kwargs.setdefault("runtime", self._runtime)
        return KvClient(self.addresses, **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncKvClient:
        """An asyncio client for this cluster."""
        kwargs.setdefault("group", self.groups[0])
        kwargs.setdefault("runtime", self._runtime)
        return AsyncKvClient(self.addresses, **kwargs)

    def stop(self) -> None:
        """Stops every node and removes a temporary data directory."""
        for s in self.servers:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - stop the others too
                pass
        if self._temp:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_cluster(
    nodes: int = 3,
    groups: Sequence[int] = (0,),
    *,
    data_dir: Optional[PathLike] = None,
    runtime: Optional[Runtime] = None,
    timeout: float = 30.0,
) -> LocalCluster:
    """Starts :class:`LocalCluster` and waits until every group has a leader."""
    return LocalCluster(nodes, groups, data_dir=data_dir, runtime=runtime, timeout=timeout)
