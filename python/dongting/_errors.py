"""The exception hierarchy, mapped from the SDK's stable error codes.

Codes: 1-13 are RPC status codes (docs/protocol.md), 900-999 errors of the
client library itself, 1000 + n DtKV error n (docs/kv.md).
"""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Type

__all__ = [
    "DongtingError",
    "InvalidArgumentError",
    "NotLeaderError",
    "GroupNotFoundError",
    "UnavailableError",
    "TimeoutError",
    "NetworkError",
    "UnknownOutcomeError",
    "ClosedError",
    "CancelledError",
    "RuntimeShutDownError",
    "ForkedError",
    "ConfigError",
    "ServerStartError",
    "KvError",
    "NotFoundError",
    "IsDirError",
    "NotDirError",
    "ParentNotDirError",
    "ParentNotFoundError",
    "DirNotEmptyError",
    "InvalidKeyError",
    "InvalidValueError",
    "InvalidTtlError",
    "TooManyKeysError",
    "CasMismatchError",
    "NotOwnerError",
    "NotTempNodeError",
    "IsTempNodeError",
    "error_from_code",
]


class DongtingError(Exception):
    """Base of every error raised by this package.

    Attributes:
        code: the stable numeric code (see the module docstring).
        message: a human-readable description (no stability promise).
        retryable: True when the server guarantees the request was not
            executed, so sending it again is safe even for a write.
        leader_hint: ``host:port`` of the group's leader after a
            NOT_RAFT_LEADER answer that named one, else None.
    """

    def __init__(
        self,
        code: int,
        message: str,
        retryable: bool = False,
        leader_hint: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.leader_hint = leader_hint

    @property
    def name(self) -> str:
        """The symbolic name of the code, e.g. ``"NOT_FOUND"``."""
        from . import _native

        return _native.code_name(self.code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class InvalidArgumentError(DongtingError, ValueError):
    """The arguments are invalid; nothing was sent (codes 1, 900 and the DtKV
    key/value/TTL syntax errors)."""


class NotLeaderError(DongtingError):
    """The node does not lead the group (code 7); see ``leader_hint``."""


class GroupNotFoundError(DongtingError):
    """No server hosts the raft group (code 8)."""


class UnavailableError(DongtingError):
    """The server is starting, stopping, overloaded, or the group is stopped
    (codes 4, 5, 6, 9); retryable."""


class TimeoutError(DongtingError, builtins.TimeoutError):  # noqa: A001
    """No answer within the deadline (code 10); a write may or may not have
    been applied."""


class NetworkError(DongtingError, ConnectionError):
    """Connecting failed or the connection was lost (code 12)."""


class UnknownOutcomeError(DongtingError):
    """A write failed after an attempt of it may have reached a server: it may
    or may not have been applied (code 911, never retryable; the message names
    the last failure). Read the keys to learn what happened; sending the write
    again is a new write."""


class ClosedError(DongtingError):
    """The client was closed (code 13)."""


class CancelledError(DongtingError):
    """The call was cancelled (code 901)."""


class RuntimeShutDownError(DongtingError):
    """The runtime was shut down before or while the call ran (code 902)."""


class ForkedError(DongtingError):
    """The object was created in the parent of this forked process (code
    903); create a new client or server in the child."""


class ConfigError(DongtingError, ValueError):
    """A server configuration is invalid (code 905)."""


class ServerStartError(DongtingError):
    """An embedded server could not start (code 906)."""


class KvError(DongtingError):
    """DtKV refused the operation; nothing changed (codes 1000 + n)."""


class NotFoundError(KvError):
    """The key does not exist (remove, update_ttl)."""


class IsDirError(KvError):
    """A value operation hit a directory."""


class NotDirError(KvError):
    """A directory operation hit a value."""


class ParentNotDirError(KvError):
    """The key's parent is not a directory."""


class ParentNotFoundError(KvError):
    """The key's parent directory does not exist."""


class DirNotEmptyError(KvError):
    """Remove of a directory that has children."""


class InvalidKeyError(KvError, InvalidArgumentError):
    """The key breaks the key syntax rules, is too long, or is not UTF-8."""


class InvalidValueError(KvError, InvalidArgumentError):
    """The value is empty (put) or too large."""


class InvalidTtlError(KvError, InvalidArgumentError):
    """A TTL of zero or above the maximum."""


class TooManyKeysError(KvError, InvalidArgumentError):
    """A batch with no keys or more keys than the limit."""


class CasMismatchError(KvError):
    """compare_and_set found a different current value."""


class NotOwnerError(KvError):
    """The temporary node belongs to another client."""


class NotTempNodeError(KvError):
    """A TTL operation on a node that is not temporary."""


class IsTempNodeError(KvError):
    """A plain write on a temporary node."""


_KV = 1000

_BY_CODE: Dict[int, Type[DongtingError]] = {
    1: InvalidArgumentError,
    4: UnavailableError,
    5: UnavailableError,
    6: UnavailableError,
    7: NotLeaderError,
    8: GroupNotFoundError,
    9: UnavailableError,
    10: TimeoutError,
    12: NetworkError,
    13: ClosedError,
    900: InvalidArgumentError,
    901: CancelledError,
    902: RuntimeShutDownError,
    903: ForkedError,
    905: ConfigError,
    906: ServerStartError,
    911: UnknownOutcomeError,
    _KV + 2: NotFoundError,
    _KV + 4: IsDirError,
    _KV + 5: NotDirError,
    _KV + 6: ParentNotDirError,
    _KV + 7: InvalidKeyError,
    _KV + 8: InvalidValueError,
    _KV + 9: ParentNotFoundError,
    _KV + 10: DirNotEmptyError,
    _KV + 11: InvalidKeyError,
    _KV + 12: InvalidValueError,
    _KV + 14: CasMismatchError,
    _KV + 18: NotOwnerError,
    _KV + 19: NotTempNodeError,
    _KV + 20: IsTempNodeError,
    _KV + 22: InvalidTtlError,
    _KV + 101: TooManyKeysError,
}


def error_from_code(
    code: int, message: str, retryable: bool = False, leader_hint: Optional[str] = None
) -> DongtingError:
    """The exception instance for a stable error code."""
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = KvError if code > _KV else DongtingError
    return cls(code, message, retryable, leader_hint)
