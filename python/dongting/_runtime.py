"""The runtime (IO threads) clients and servers run on."""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Optional

from . import _args, _native

_lock = threading.Lock()
_default: Optional["Runtime"] = None
_live: "weakref.WeakSet[Runtime]" = weakref.WeakSet()


class Runtime:
    """IO threads that run clients and embedded servers.

    Most programs never create one: clients and servers use a process-wide
    default runtime. An explicit runtime isolates a set of clients and
    servers and can be shut down on its own. Shutting down completes calls
    in flight with :class:`RuntimeShutDownError` and stops embedded servers.
    Every runtime still alive is shut down at interpreter exit. In a process
    forked from the one that created it, every call raises
    :class:`ForkedError`.
    """

    def __init__(self, worker_threads: int = 0) -> None:
        """Starts ``worker_threads`` IO threads (0: one per CPU, at most 4;
        at most 256)."""
        threads = _args.integer(worker_threads, "worker_threads", 0, _native.MAX_WORKER_THREADS)
        self._native = _native.NativeRuntime(threads)
        self._pid = os.getpid()
        _live.add(self)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Shuts the runtime down, waiting up to ``timeout`` seconds (0 to
        86400) for its threads. Releases the GIL while waiting. Idempotent."""
        timeout_ms = _args.wait(timeout, "timeout")
        if self._pid != os.getpid():
            return
        self._native.shutdown(timeout_ms)

    @property
    def is_shut_down(self) -> bool:
        return self._native.is_shut_down()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"Runtime(pid={self._pid}, shut_down={self.is_shut_down})"


def default_runtime() -> Runtime:
    """The process-wide runtime, created on first use (again in a forked
    child, whose inherited one cannot run)."""
    global _default
    with _lock:
        if _default is None or _default._pid != os.getpid() or _default.is_shut_down:
            _default = Runtime()
        return _default


def _shutdown_all() -> None:
    # Runs before the interpreter finalizes: callbacks of calls still in
    # flight can still take the GIL, and nothing is left to hang at exit.
    pid = os.getpid()
    for rt in list(_live):
        if rt._pid == pid:
            try:
                rt.shutdown(timeout=2.0)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


atexit.register(_shutdown_all)
