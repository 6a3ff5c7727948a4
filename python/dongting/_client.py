"""KvClient (blocking) and AsyncKvClient (asyncio)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from . import _args, _native
from ._errors import InvalidArgumentError
from ._lock import AsyncLock, Lock
from ._runtime import Runtime, default_runtime
from ._types import (
    Key,
    Node,
    RawReply,
    Value,
    Page,
    WriteResult,
    as_batch_get,
    as_get,
    as_list,
    as_page,
    as_write,
    key_bytes,
    keys_bytes,
    value_bytes,
)
from ._watch import AsyncWatch, Watch

T = TypeVar("T")

_running_loop = asyncio.get_running_loop

Servers = Union[str, Sequence[str]]
Entries = Union[Mapping[Key, Value], Iterable[Tuple[Key, Value]]]


def _servers(servers: Servers) -> str:
    if isinstance(servers, str):
        return servers
    return ",".join(servers)


def _watch_keys(keys: Tuple[Key, ...]) -> Tuple[List[bytes], Tuple[str, ...]]:
    if not keys:
        raise InvalidArgumentError(900, 'watch() needs at least one key ("" watches the whole tree)')
    kb = keys_bytes(keys)
    for k in kb:
        try:
            k.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(900, f"the watch key {k!r} is not valid UTF-8") from None
    return kb, tuple(k.decode("utf-8") for k in kb)


def _entries(entries: Entries) -> Tuple[List[bytes], List[bytes]]:
    items = entries.items() if isinstance(entries, Mapping) else entries
    keys: List[bytes] = []
    values: List[bytes] = []
    for k, v in items:
        keys.append(key_bytes(k))
        values.append(value_bytes(v))
    return keys, values


class _Base:
    def __init__(
        self,
        servers: Servers,
        *,
        group: int = 0,
        timeout: float = 5.0,
        runtime: Optional[Runtime] = None,
    ) -> None:
        timeout_ms = _args.timeout(timeout)
        self.group = group
        self._runtime = runtime if runtime is not None else default_runtime()
        self._native = _native.NativeClient(self._runtime._native, _servers(servers), timeout_ms)

    @property
    def group(self) -> int:
        """The raft group calls use unless they name one (0 to 4294967295)."""
        return self._group

    @group.setter
    def group(self, value: int) -> None:
        self._group = _args.group(value)

    def _g(self, group: Optional[int]) -> int:
        return self._group if group is None else _args.group(group)

    @property
    def client_id(self) -> int:
        """The write session id (owner of this client's temporary nodes)."""
        return self._native.client_id()

    def close(self) -> None:
        """Fails new calls with ClosedError; connections close once calls in
        flight finish (up to one second). Blocks; releases the GIL."""
        self._native.close()


class KvClient(_Base):
    """A blocking DtKV client.

    ``servers`` are service addresses (``"host:port"``, a comma-separated
    string or a list; port 0 is refused). Each call takes at most ``timeout``
    seconds (more than 0, at most 86400), retries included, follows leader
    changes, and blocks the calling thread with the GIL released (other
    Python threads run meanwhile). Keys are ``str`` or UTF-8 ``bytes``
    (``"app.db.url"``); values are bytes-like or ``str``. Calls use ``group``
    unless they pass ``group=`` (an int 0 to 4294967295). TTLs and lock
    leases are seconds, more than 0 and at most 2592000 (30 days). A number
    out of range, or not a number, raises InvalidArgumentError (a
    ValueError; InvalidTtlError for a TTL) before anything is sent. Use it
    as a context manager to close it.
    """

    def __enter__(self) -> "KvClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self, key: Key, *, lease: float = 10.0, wait: float = 0.0, group: Optional[int] = None) -> Lock:
        """A handle on the distributed lock at ``key`` (its parent directory
        must exist); nothing is sent until it is acquired. ``lease`` and
        ``wait`` (seconds) are the defaults of its ``try_lock`` and of the
        context manager."""
        kb = key_bytes(key)
        return Lock(self._native.create_lock(self._g(group), kb), kb.decode(), lease, wait)

    def watch(self, *keys: Key, from_index: int = 0, group: Optional[int] = None) -> Watch:
        """Watches ``keys`` (each covers itself and every key under it; ``""``
        is the whole tree; a key need not exist) for changes with a raft index
        above ``from_index``. ``from_index=0`` starts at the serving node's
        applied index, which may be behind a write this client just made:
        to see everything after a write, pass that write's ``index``; to
        resume a closed watch without repeats, pass its ``last_index``.
        Blocks (GIL released) until a server accepted the watch. See
        :class:`Watch`."""
        kb, names = _watch_keys(keys)
        native = self._native.watch(self._g(group), kb, _args.index(from_index))
        return Watch(native, names)

    def put(self, key: Key, value: Value, *, group: Optional[int] = None) -> WriteResult:
        """Creates or overwrites a value (its parent directory must exist)."""
        return as_write(self._native.put(self._g(group), key_bytes(key), value_bytes(value)))

    def get(self, key: Key, *, group: Optional[int] = None) -> Optional[Node]:
        """Reads a node (linearizable); None when the key does not exist."""
        return as_get(self._native.get(self._g(group), key_bytes(key)))

    def remove(self, key: Key, *, group: Optional[int] = None) -> WriteResult:
        """Removes a value or an empty directory; NotFoundError when absent."""
        return as_write(self._native.remove(self._g(group), key_bytes(key)))

    def mkdir(self, key: Key, *, group: Optional[int] = None) -> WriteResult:
        """Creates a directory; ``created`` is False when it existed."""
        return as_write(self._native.mkdir(self._g(group), key_bytes(key)))

    def list(self, dir: Key = "", *, group: Optional[int] = None) -> List[Node]:
        """All children of a directory (``""``: the root), sorted by key. A
        directory of any size lists: the children are read a page at a time,
        each page at its own raft index, so children added or removed during
        the listing may or may not appear."""
        return as_list(self._native.list(self._g(group), key_bytes(dir)))

    def list_page(
        self, dir: Key = "", *, start_after: Key = "", limit: int = 0, group: Optional[int] = None
    ) -> Page:
        """One page of a directory's children: those whose key sorts after
        ``start_after`` (a full key, typically the previous page's
        ``next_after``; ``""``: from the first), at most ``limit`` of them
        (0: 1,000; at most 10,000) and under the server's byte cap for one
        answer. ``more`` says whether children follow."""
        return as_page(
            self._native.list_page(
                self._g(group), key_bytes(dir), key_bytes(start_after), _args.page_limit(limit)
            )
        )

    def iter_list(self, dir: Key = "", *, limit: int = 0, group: Optional[int] = None) -> Iterator[Node]:
        """The children of a directory, read lazily a page of ``limit`` at a time."""
        limit = _args.page_limit(limit)
        after: bytes = b""
        while True:
            page = self.list_page(dir, start_after=after, limit=limit, group=group)
            yield from page.nodes
            if not page.more or page.next_after is None:
                return
            after = page.next_after

    def batch_put(self, entries: Entries, *, group: Optional[int] = None) -> WriteResult:
        """Sets several keys in one raft entry; ``codes`` holds one result
        per key (0: done)."""
        keys, values = _entries(entries)
        return as_write(self._native.batch_put(self._g(group), keys, values))

    def batch_get(self, keys: Sequence[Key], *, group: Optional[int] = None) -> List[Optional[Node]]:
        """Reads several keys: one node (or None) per key, in order."""
        return as_batch_get(self._native.batch_get(self._g(group), keys_bytes(keys)))

    def batch_remove(self, keys: Sequence[Key], *, group: Optional[int] = None) -> WriteResult:
        """Removes several keys in one raft entry; one code per key."""
        return as_write(self._native.batch_remove(self._g(group), keys_bytes(keys)))

    def compare_and_set(
        self, key: Key, expected: Value, new_value: Value, *, group: Optional[int] = None
    ) -> WriteResult:
        """Sets ``new_value`` if the current value is ``expected`` (``b""``:
        the key must be absent; ``new_value=b""``: delete). Raises
        CasMismatchError otherwise."""
        return as_write(
            self._native.compare_and_set(
                self._g(group), key_bytes(key), value_bytes(expected), value_bytes(new_value)
            )
        )

    def put_temp(self, key: Key, value: Value, ttl: float, *, group: Optional[int] = None) -> WriteResult:
        """A temporary value owned by this client, removed ``ttl`` seconds
        after this write unless re-armed; ``deadline_ms`` is its expiry."""
        return as_write(self._native.put_temp(self._g(group), key_bytes(key), value_bytes(value), _args.ttl(ttl)))

    def make_temp_dir(self, key: Key, ttl: float, *, group: Optional[int] = None) -> WriteResult:
        """A temporary directory whose subtree is removed when its TTL passes."""
        return as_write(self._native.make_temp_dir(self._g(group), key_bytes(key), _args.ttl(ttl)))

    def update_ttl(self, key: Key, ttl: float, *, group: Optional[int] = None) -> WriteResult:
        """Re-arms a temporary node's TTL from now (owner only)."""
        return as_write(self._native.update_ttl(self._g(group), key_bytes(key), _args.ttl(ttl)))


def _identity(v: Any) -> Any:
    return v


class _Completions:
    """Results handed from the IO threads to one event loop.

    The native queue collects completions without the GIL and settles their
    futures in ``drain()`` on the loop thread. It wakes the loop only when no
    drain is pending, so a burst of completions costs one wake-up: a byte on
    a socket the loop watches (IO threads never wait for the GIL), or, for a
    loop that cannot watch sockets, one ``call_soon_threadsafe``. Holds the
    loop weakly: a closed, dropped loop takes its queue with it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        me = weakref.ref(self)

        def wake() -> None:
            c = me()
            if c is not None:
                c._schedule()

        self.queue = _native.CompletionQueue(wake)
        fd = self.queue.fileno()
        if fd is not None:
            try:
                loop.add_reader(fd, self.queue.drain)
            except (NotImplementedError, RuntimeError):
                pass  # e.g. the proactor loop on Windows: wake() it is
            else:
                self.queue.wake_by_fd()

    def _schedule(self) -> None:
        loop = self._loop()
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self.queue.drain)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more


_completions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Completions]" = weakref.WeakKeyDictionary()


def _completions_for(loop: asyncio.AbstractEventLoop) -> _Completions:
    c = _completions.get(loop)
    if c is None:
        c = _completions[loop] = _Completions(loop)
    return c


class AsyncKvClient(_Base):
    """An asyncio DtKV client.

    Same operations and arguments as :class:`KvClient`; each returns an
    awaitable at once and never blocks the event loop: the call runs on the
    IO threads and results are handed to the loop in bursts (one loop
    wake-up per burst, not per call). Create it inside a running loop or outside;
    await its calls inside one. Many calls may be in flight at once.
    Cancelling an awaitable stops waiting for the answer, not the call (a
    write already sent may be applied).
    """

    # (loop, queue) of the loop the last call ran on; one attribute, read
    # once per call, so that loops in several threads never mix them up.
    _bound: Tuple[Optional[asyncio.AbstractEventLoop], Any] = (None, None)

    async def __aenter__(self) -> "AsyncKvClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the client without blocking the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> Any:
        bound = (loop, _completions_for(loop).queue)
        self._bound = bound
        return bound[1]

    def _call(self, conv: Callable[[RawReply], T], start: Callable[..., None], *args: Any) -> "asyncio.Future[T]":
        loop = _running_loop()
        bound = self._bound
        queue = bound[1] if bound[0] is loop else self._bind(loop)
        fut: "asyncio.Future[T]" = loop.create_future()
        start(*args, queue, fut, conv)
        return fut

    def lock(self, key: Key, *, lease: float = 10.0, wait: float = 0.0, group: Optional[int] = None) -> AsyncLock:
        """A handle on the distributed lock at ``key``, used with ``async
        with`` or awaited calls; see :meth:`KvClient.lock` and
        :class:`AsyncLock`."""
        kb = key_bytes(key)
        return AsyncLock(self._native.create_lock(self._g(group), kb), kb.decode(), lease, wait, self._call)

    def watch(self, *keys: Key, from_index: int = 0, group: Optional[int] = None) -> AsyncWatch:
        """An async iterator of the changes to ``keys`` (see
        :meth:`KvClient.watch` and :class:`AsyncWatch`). Registration starts
        at once; ``async with`` or ``await`` waits for it. Call it inside a
        running event loop."""
        kb, names = _watch_keys(keys)
        g = self._g(group)
        fi = _args.index(from_index)
        native = self._native
        return AsyncWatch(
            lambda queue, fut: native.watch_cb(g, kb, fi, queue, fut, _identity),
            names,
            lambda loop: _completions_for(loop).queue,
        )

    def put(self, key: Key, value: Value, *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.put`."""
        # The hot path of many programs: _call inlined.
        g = self._group if group is None else _args.group(group)
        loop = _running_loop()
        bound = self._bound
        queue = bound[1] if bound[0] is loop else self._bind(loop)
        fut: "asyncio.Future[WriteResult]" = loop.create_future()
        self._native.put_async(g, key_bytes(key), value_bytes(value), queue, fut, as_write)
        return fut

    def get(self, key: Key, *, group: Optional[int] = None) -> Awaitable[Optional[Node]]:
        """See :meth:`KvClient.get`."""
        return self._call(as_get, self._native.get_async, self._g(group), key_bytes(key))

    def remove(self, key: Key, *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.remove`."""
        return self._call(as_write, self._native.remove_async, self._g(group), key_bytes(key))

    def mkdir(self, key: Key, *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.mkdir`."""
        return self._call(as_write, self._native.mkdir_async, self._g(group), key_bytes(key))

    def list(self, dir: Key = "", *, group: Optional[int] = None) -> Awaitable[List[Node]]:
        """See :meth:`KvClient.list`."""
        return self._call(as_list, self._native.list_async, self._g(group), key_bytes(dir))

    def list_page(
        self, dir: Key = "", *, start_after: Key = "", limit: int = 0, group: Optional[int] = None
    ) -> Awaitable[Page]:
        """See :meth:`KvClient.list_page`."""
        return self._call(
            as_page,
            self._native.list_page_async,
            self._g(group),
            key_bytes(dir),
            key_bytes(start_after),
            _args.page_limit(limit),
        )

    async def iter_list(
        self, dir: Key = "", *, limit: int = 0, group: Optional[int] = None
    ) -> AsyncIterator[Node]:
        """See :meth:`KvClient.iter_list`."""
        limit = _args.page_limit(limit)
        after: bytes = b""
        while True:
            page = await self.list_page(dir, start_after=after, limit=limit, group=group)
            for n in page.nodes:
                yield n
            if not page.more or page.next_after is None:
                return
            after = page.next_after

    def batch_put(self, entries: Entries, *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.batch_put`."""
        keys, values = _entries(entries)
        return self._call(as_write, self._native.batch_put_async, self._g(group), keys, values)

    def batch_get(self, keys: Sequence[Key], *, group: Optional[int] = None) -> Awaitable[List[Optional[Node]]]:
        """See :meth:`KvClient.batch_get`."""
        return self._call(as_batch_get, self._native.batch_get_async, self._g(group), keys_bytes(keys))

    def batch_remove(self, keys: Sequence[Key], *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.batch_remove`."""
        return self._call(as_write, self._native.batch_remove_async, self._g(group), keys_bytes(keys))

    def compare_and_set(
        self, key: Key, expected: Value, new_value: Value, *, group: Optional[int] = None
    ) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.compare_and_set`."""
        return self._call(
            as_write,
            self._native.compare_and_set_async,
            self._g(group),
            key_bytes(key),
            value_bytes(expected),
            value_bytes(new_value),
        )

    def put_temp(self, key: Key, value: Value, ttl: float, *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.put_temp`."""
        return self._call(
            as_write, self._native.put_temp_async, self._g(group), key_bytes(key), value_bytes(value), _args.ttl(ttl)
        )

    def make_temp_dir(self, key: Key, ttl: float, *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.make_temp_dir`."""
        return self._call(as_write, self._native.make_temp_dir_async, self._g(group), key_bytes(key), _args.ttl(ttl))

    def update_ttl(self, key: Key, ttl: float, *, group: Optional[int] = None) -> Awaitable[WriteResult]:
        """See :meth:`KvClient.update_ttl`."""
        return self._call(as_write, self._native.update_ttl_async, self._g(group), key_bytes(key), _args.ttl(ttl))
