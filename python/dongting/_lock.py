"""Lock and AsyncLock: a DtKV distributed lock with fencing tokens, usable as a context manager."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional

from . import _args, _native


class LockNotAcquiredError(Exception):
    """The lock stayed held by another client until the wait ended.

    Attributes:
        key: the lock's key.
        wait: how long the call waited, in seconds.
    """

    def __init__(self, key: str, wait: float) -> None:
        super().__init__(f"lock {key} is held by another client (waited {wait:g} s)")
        self.key = key
        self.wait = wait


def _lease_ms(seconds: float) -> int:
    return _args.lease(seconds, "lease")


def _wait_ms(seconds: float) -> int:
    return _args.wait(seconds, "wait", _args.MAX_TTL)


class Lock:
    """A distributed lock on one key, held by the session of the client that
    created it (``KvClient.lock``). Every acquisition returns a fencing token,
    the raft index of the grant: larger for every new holder, so a resource
    that keeps the largest token it saw can refuse a holder whose lease ended.

    The lease counts from the moment the request that set it was sent; renew
    it with ``update_lease`` before it runs out. As a context manager it
    acquires on entry (returning the token, or raising ``LockNotAcquiredError``)
    and releases on exit::

        with kv.lock("jobs.nightly", lease=30, wait=5) as token:
            run_job(fencing_token=token)

    Calls that talk to the cluster block with the GIL released.
    """

    def __init__(self, native: _native.NativeLock, key: str, lease: float, wait: float) -> None:
        _lease_ms(lease)
        _wait_ms(wait)
        self._native = native
        self.key = key
        self.lease = lease
        self.wait = wait

    def try_lock(self, lease: Optional[float] = None, wait: Optional[float] = None) -> Optional[int]:
        """Acquires the lock with a lease of ``lease`` seconds (more than 0,
        at most 2592000), waiting up to ``wait`` seconds (0: not at all; at
        most 2592000) behind its holder. Returns the fencing token, or None
        when the wait ended without the lock. Defaults: the values given to
        ``KvClient.lock``."""
        lease = self.lease if lease is None else lease
        wait = self.wait if wait is None else wait
        token = self._native.try_lock(_lease_ms(lease), _wait_ms(wait))
        return token or None

    def unlock(self) -> None:
        """Releases the lock (or leaves its queue); a no-op when not held."""
        self._native.unlock()

    def update_lease(self, lease: Optional[float] = None) -> None:
        """Extends the lease to ``lease`` seconds from now; raises
        ``NotOwnerError`` (or ``NotFoundError``) when the lock is no longer held."""
        self._native.update_lease(_lease_ms(self.lease if lease is None else lease))

    def is_held(self) -> bool:
        """True while this client holds the lock by its own count (no call)."""
        return self._native.is_held()

    @property
    def lease_rest(self) -> float:
        """Seconds left of the lease by this client's count (0 when not held)."""
        return self._native.lease_rest_ms() / 1000.0

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold, None when not held."""
        return self._native.token() or None

    def __enter__(self) -> int:
        token = self.try_lock()
        if token is None:
            raise LockNotAcquiredError(self.key, self.wait)
        return token

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"Lock(key={self.key!r}, held={self.is_held()})"


def _token(r: Any) -> Optional[int]:
    return r[6] or None


def _nothing(r: Any) -> None:
    return None


class AsyncLock:
    """The asyncio form of :class:`Lock` (``AsyncKvClient.lock``): the same
    lock, whose calls return awaitables and never block the event loop. As an
    async context manager it acquires on entry (returning the fencing token,
    or raising ``LockNotAcquiredError``) and releases on exit::

        async with kv.lock("app.leader", lease=10, wait=5) as token:
            await lead(fencing_token=token)

    Cancelling an acquisition in progress releases the lock if the request
    got it after all.
    """

    def __init__(
        self,
        native: _native.NativeLock,
        key: str,
        lease: float,
        wait: float,
        call: Callable[..., "asyncio.Future[Any]"],
    ) -> None:
        _lease_ms(lease)
        _wait_ms(wait)
        self._native = native
        self._call = call
        self.key = key
        self.lease = lease
        self.wait = wait

    async def try_lock(self, lease: Optional[float] = None, wait: Optional[float] = None) -> Optional[int]:
        """See :meth:`Lock.try_lock`."""
        lease_ms = _lease_ms(self.lease if lease is None else lease)
        wait_ms = _wait_ms(self.wait if wait is None else wait)
        fut = self._call(_token, self._native.try_lock_cb, lease_ms, wait_ms)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(self._release_if_granted)
            raise

    def _release_if_granted(self, fut: "asyncio.Future[Any]") -> None:
        if fut.cancelled() or fut.exception() is not None or fut.result() is None:
            return
        released = self._call(_nothing, self._native.unlock_cb)
        released.add_done_callback(lambda f: f.cancelled() or f.exception())

    def unlock(self) -> Awaitable[None]:
        """See :meth:`Lock.unlock` (the release is sent at once; await the
        result to know it is done)."""
        return self._call(_nothing, self._native.unlock_cb)

    def update_lease(self, lease: Optional[float] = None) -> Awaitable[None]:
        """See :meth:`Lock.update_lease`."""
        lease_ms = _lease_ms(self.lease if lease is None else lease)
        return self._call(_nothing, self._native.update_lease_cb, lease_ms)

    def is_held(self) -> bool:
        """True while this client holds the lock by its own count (no call)."""
        return self._native.is_held()

    @property
    def lease_rest(self) -> float:
        """Seconds left of the lease by this client's count (0 when not held)."""
        return self._native.lease_rest_ms() / 1000.0

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold, None when not held."""
        return self._native.token() or None

    async def __aenter__(self) -> int:
        token = await self.try_lock()
        if token is None:
            raise LockNotAcquiredError(self.key, self.wait)
        return token

    async def __aexit__(self, *exc: object) -> None:
        await self.unlock()

    def __repr__(self) -> str:
        return f"AsyncLock(key={self.key!r}, held={self.is_held()})"
