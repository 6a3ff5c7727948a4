"""Dongting for Python: a DtKV client (blocking and asyncio) and an embedded
RAFT server node, over the same Rust core as every other language.

>>> import dongting
>>> with dongting.start_local_cluster(nodes=3) as cluster:          # doctest: +SKIP
...     with cluster.client() as kv:
...         kv.mkdir("app")
...         kv.put("app.color", "blue")
...         kv.get("app.color").value
b'blue'
"""

from . import _native
from ._client import AsyncKvClient, KvClient
from ._errors import *  # noqa: F401,F403 - the exception hierarchy is public
from ._errors import __all__ as _error_names
from ._lock import AsyncLock, Lock, LockNotAcquiredError
from ._runtime import Runtime, default_runtime
from ._server import EmbeddedServer, LocalCluster, start_local_cluster
from ._types import Node, NodeKind, Page, WriteResult
from ._watch import AsyncWatch, Watch, WatchEvent

__version__: str = _native.VERSION

__all__ = [
    "AsyncKvClient",
    "AsyncLock",
    "AsyncWatch",
    "EmbeddedServer",
    "KvClient",
    "LocalCluster",
    "Lock",
    "LockNotAcquiredError",
    "Node",
    "NodeKind",
    "Page",
    "Runtime",
    "Watch",
    "WatchEvent",
    "WriteResult",
    "default_runtime",
    "start_local_cluster",
    "__version__",
    *_error_names,
]
