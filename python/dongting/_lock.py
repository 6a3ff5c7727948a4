"""Lock: a DtKV distributed lock with fencing tokens, usable as a context manager."""

from __future__ import annotations

from typing import Optional

from . import _native


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
    if seconds <= 0:
        raise ValueError(f"the lease must be positive, not {seconds!r}")
    return max(1, int(round(seconds * 1000)))


def _wait_ms(seconds: float) -> int:
    if seconds < 0:
        raise ValueError(f"the wait must not be negative, not {seconds!r}")
    return int(round(seconds * 1000))


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
        self._native = native
        self.key = key
        self.lease = lease
        self.wait = wait

    def try_lock(self, lease: Optional[float] = None, wait: Optional[float] = None) -> Optional[int]:
        """Acquires the lock with a lease of ``lease`` seconds, waiting up to
        ``wait`` seconds (0: not at all) behind its holder. Returns the fencing
        token, or None when the wait ended without the lock. Defaults: the
        values given to ``KvClient.lock``."""
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
