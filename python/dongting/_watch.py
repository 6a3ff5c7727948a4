"""Watches: a stream of changes to keys, blocking (Watch) and asyncio (AsyncWatch)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator, Optional, Tuple

from . import _args, _native
from ._errors import ClosedError, RuntimeShutDownError

# Errors that end an iteration: the watch, its client or its runtime is closed.
_ENDED = (ClosedError, RuntimeShutDownError)
from ._types import NodeKind

_CLOSED = 13  # the CLOSED error code

# How long one wait of an AsyncWatch on the IO threads lasts: a wait nobody
# awaits any more (a dropped AsyncWatch) ends within this.
_ASYNC_SLICE_MS = 200


@dataclass(frozen=True)
class WatchEvent:
    """One item of a watch: a change of a watched key, or a compaction.

    A change (``compacted`` False) carries the raft ``index`` of the write,
    the ``key``, its ``kind`` after the write (``NodeKind.ABSENT`` when it was
    removed) and its ``value`` (empty unless a value).

    A compaction (``compacted`` True) means the server's history no longer
    holds events the watch had not seen yet: re-read what you watch (``get``,
    ``batch_get`` or ``list``, which are linearizable) and continue; later
    events with an index at or below the read's index are already reflected
    in it. ``index`` is where events continue after and ``history_floor``
    where the server's history starts; ``key`` and ``value`` are empty.
    """

    index: int
    """Change: the raft index of the write. Compaction: events continue after it."""
    key: bytes
    """The changed key as UTF-8 bytes (empty for a compaction)."""
    kind: NodeKind
    """What the key is after the write (ABSENT: removed)."""
    value: bytes
    """The value after the write (empty unless ``kind`` is VALUE)."""
    compacted: bool = False
    """True for a compaction event (see the class documentation)."""
    history_floor: int = 0
    """Compaction: the lowest index the server's history resumes after."""

    @property
    def name(self) -> str:
        """The key as text."""
        return self.key.decode("utf-8")


def _event(raw: Tuple[bool, int, bytes, int, bytes, int]) -> WatchEvent:
    return WatchEvent(raw[1], raw[2], NodeKind(raw[3]), raw[4], raw[0], raw[5])


def _timeout_ms(timeout: Optional[float]) -> Optional[int]:
    if timeout is None:
        return None
    return _args.wait(timeout, "timeout")


class Watch:
    """A stream of the changes to some keys of one raft group
    (``KvClient.watch``), in raft index order, each exactly once, across
    reconnects and leader changes (it reconnects by itself and resumes from
    ``last_index``).

    Iterate it (``for ev in watch``) to wait for events one after the other;
    iteration ends when the watch, its client or its runtime is closed
    (the runtime is shut down at interpreter exit). Waits release
    the GIL and can be interrupted with Ctrl-C (KeyboardInterrupt); no event
    is lost by an interrupted wait. Use it as a context manager to close it::

        with kv.watch("app.config") as w:
            for ev in w:
                if ev.compacted:
                    reload_all()
                else:
                    apply(ev.name, ev.value)

    One thread at a time should wait on a watch; ``close`` may come from
    any thread.
    """

    def __init__(self, native: _native.NativeWatch, keys: Tuple[str, ...]) -> None:
        self._native = native
        self.keys = keys
        """The watched keys."""
        self._closed = False

    def next(self, timeout: Optional[float] = None) -> Optional[WatchEvent]:
        """The next event, waiting at most ``timeout`` seconds (None: until
        one comes; 0: only what already arrived; at most 86400); None when
        nothing came in time (nothing is lost: call again). Raises
        ClosedError once the watch or its client is closed."""
        raw = self._native.next(_timeout_ms(timeout))
        return None if raw is None else _event(raw)

    @property
    def last_index(self) -> int:
        """The highest raft index the watch is complete up to: a new watch
        started ``from_index=last_index`` continues where this one ended,
        without repeating an event."""
        return self._native.last_index()

    def close(self) -> None:
        """Unregisters the watch; a wait in progress ends (iteration stops)
        and later ``next`` calls raise ClosedError. Idempotent."""
        self._closed = True
        self._native.close()

    @property
    def closed(self) -> bool:
        """True after ``close``."""
        return self._closed

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        try:
            raw = self._native.next(None)
        except _ENDED:
            raise StopIteration from None
        assert raw is not None  # a wait without a timeout returns an event
        return _event(raw)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Watch(keys={self.keys!r}, closed={self._closed})"


class AsyncWatch:
    """The asyncio form of :class:`Watch` (``AsyncKvClient.watch``): an
    async iterator of :class:`WatchEvent`, closed by ``aclose()`` or
    ``async with``::

        async with kv.watch("app.config") as w:
            async for ev in w:
                ...

    The watch registers as soon as it is created; ``async with`` and
    ``await kv.watch(...)`` wait until a server accepted it (and raise its
    errors), so a write made afterwards is seen.

    Opening, waiting and closing never block the event loop and hold no
    thread: the IO threads wait for the next event in 200 ms slices and hand
    it to the loop. A
    cancelled ``__anext__`` loses nothing: the event its wait brings is
    returned by the next ``__anext__``.
    """

    def __init__(
        self,
        open_native: Callable[[_native.CompletionQueue, "asyncio.Future[_native.NativeWatch]"], None],
        keys: Tuple[str, ...],
        queue_for: Callable[[asyncio.AbstractEventLoop], _native.CompletionQueue],
    ) -> None:
        loop = asyncio.get_running_loop()
        self._queue_for = queue_for
        self.keys = keys
        """The watched keys."""
        self._closed = False
        self._native: Optional[_native.NativeWatch] = None
        self._opening: "asyncio.Future[_native.NativeWatch]" = loop.create_future()
        self._opening.add_done_callback(_retrieve)
        open_native(queue_for(loop), self._opening)
        # The wait in progress (a slice on the IO threads), kept across a
        # cancelled __anext__ so that the event it brings is not lost.
        self._pending: Optional["asyncio.Future[Any]"] = None

    async def _ready(self) -> _native.NativeWatch:
        if self._native is None:
            self._native = await asyncio.shield(self._opening)
        return self._native

    def __await__(self) -> Generator[Any, None, "AsyncWatch"]:
        yield from self._ready().__await__()
        return self

    def _start(self, loop: asyncio.AbstractEventLoop, native: _native.NativeWatch) -> "asyncio.Future[Any]":
        fut: "asyncio.Future[Any]" = loop.create_future()
        fut.add_done_callback(_retrieve)
        native.next_cb(_ASYNC_SLICE_MS, self._queue_for(loop), fut, _same)
        return fut

    async def next(self, timeout: Optional[float] = None) -> Optional[WatchEvent]:
        """The next event, waiting at most ``timeout`` seconds (None: until
        one comes); None when nothing came in time. Raises ClosedError once
        the watch or its client is closed."""
        limit = _timeout_ms(timeout)
        native = await self._ready()
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit / 1000.0
        while True:
            if self._closed:
                raise _closed_error()
            pending = self._pending
            if pending is None or pending.get_loop() is not loop:
                pending = self._pending = self._start(loop, native)
            rest = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait({pending}, timeout=rest)
            if not done:
                return None  # the wait goes on; the next call picks it up
            if self._pending is pending:
                self._pending = None
            if pending.cancelled() or self._closed:
                raise _closed_error()
            raw = pending.result()
            if raw is not None:
                return _event(raw)
            if deadline is not None and loop.time() >= deadline:
                return None

    def __aiter__(self) -> "AsyncWatch":
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            ev = await self.next()
        except _ENDED:
            raise StopAsyncIteration from None
        assert ev is not None
        return ev

    async def last_index(self) -> int:
        """See :attr:`Watch.last_index`."""
        native = await self._ready()
        return native.last_index()

    @property
    def closed(self) -> bool:
        """True after ``aclose``."""
        return self._closed

    async def aclose(self) -> None:
        """Unregisters the watch; a pending ``__anext__`` ends the
        iteration. Idempotent."""
        self._closed = True
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
        try:
            native = await self._ready()
        except Exception:  # noqa: BLE001 - a watch that never opened has nothing to close
            return
        loop = asyncio.get_running_loop()
        done: "asyncio.Future[Any]" = loop.create_future()
        native.close_cb(self._queue_for(loop), done, _same)
        await done

    async def __aenter__(self) -> "AsyncWatch":
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncWatch(keys={self.keys!r}, closed={self._closed})"


def _retrieve(f: "asyncio.Future[Any]") -> None:
    # A wait nobody awaits any more (cancelled, closed) must not report
    # "exception was never retrieved".
    if not f.cancelled():
        f.exception()


def _closed_error() -> ClosedError:
    return ClosedError(_CLOSED, "the watch is closed")


def _same(raw: Any) -> Any:
    return raw
