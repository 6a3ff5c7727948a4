"""The exception hierarchy, mapped from the SDK's stable error codes.

Codes: 1-13 are RPC status codes (docs/protocol.md), 900-999 errors of the
client library itself, 1000 + n DtKV error n (docs/kv.md).
"""

from __future__ import annotations

import builtins
from enum import IntEnum
from typing import Dict, List, Optional, Tuple, Type

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
    "UnderTempDirError",
    "ParentIsLockError",
    "NotLockNodeError",
    "IsLockError",
    "TooManyWaitersError",
    "HistoryCompactedError",
    "ErrorCode",
    "error_codes",
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


class UnderTempDirError(KvError):
    """A lock may not be created under a temporary directory."""


class ParentIsLockError(KvError):
    """The key's parent is a lock node, which has no children."""


class NotLockNodeError(KvError):
    """A lock operation on a node that is not a lock."""


class IsLockError(KvError):
    """A value or directory operation on a lock node."""


class TooManyWaitersError(KvError):
    """The lock already has the maximum number of waiters; retryable."""


class HistoryCompactedError(KvError):
    """A watch's resume point is older than the server's event history:
    re-read the keys."""


_KV = 1000


class ErrorCode(IntEnum):
    """Every stable error code by its symbolic name (the ``name`` of an
    exception): 1-13 RPC status codes, 900-999 client library codes, 1000 + n
    DtKV code n. ``error_codes()`` lists the native library's table."""

    CLIENT_ERROR = 1
    SYS_ERROR = 2
    COMMAND_NOT_SUPPORTED = 3
    NOT_INIT = 4
    STOPPING = 5
    FLOW_CONTROL = 6
    NOT_RAFT_LEADER = 7
    RAFT_GROUP_NOT_FOUND = 8
    RAFT_GROUP_STOPPED = 9
    TIMEOUT = 10
    PROTOCOL_ERROR = 11
    NETWORK_ERROR = 12
    CLOSED = 13
    INVALID_ARGUMENT = 900
    CANCELLED = 901
    RUNTIME_SHUT_DOWN = 902
    FORKED = 903
    UNSUPPORTED_API_VERSION = 904
    CONFIG_ERROR = 905
    SERVER_START_FAILED = 906
    RESOURCE = 907
    WRONG_RESULT_KIND = 908
    PENDING = 909
    SERVER_STOPPED = 910
    UNKNOWN_OUTCOME = 911
    INTERNAL = _KV + 1
    NOT_FOUND = _KV + 2
    IS_DIR = _KV + 4
    NOT_DIR = _KV + 5
    PARENT_NOT_DIR = _KV + 6
    INVALID_KEY = _KV + 7
    INVALID_VALUE = _KV + 8
    PARENT_NOT_FOUND = _KV + 9
    DIR_NOT_EMPTY = _KV + 10
    KEY_TOO_LONG = _KV + 11
    VALUE_TOO_LARGE = _KV + 12
    CAS_MISMATCH = _KV + 14
    NOT_OWNER = _KV + 18
    NOT_TEMP_NODE = _KV + 19
    IS_TEMP_NODE = _KV + 20
    INVALID_TTL = _KV + 22
    UNDER_TEMP_DIR = _KV + 24
    PARENT_IS_LOCK = _KV + 25
    NOT_LOCK_NODE = _KV + 26
    IS_LOCK = _KV + 27
    INVALID_COMMAND = _KV + 100
    TOO_MANY_KEYS = _KV + 101
    SEQ_TOO_OLD = _KV + 102
    INDEX_NOT_INCREASING = _KV + 103
    HISTORY_COMPACTED = _KV + 104
    INVALID_SNAPSHOT = _KV + 105
    TOO_MANY_WAITERS = _KV + 106


def error_codes() -> List[Tuple[str, int]]:
    """Every error code of the native library as ``(name, code)``, in code
    order: the one table the constants and exceptions here follow."""
    from . import _native

    return [(name, code) for name, code in _native.error_codes()]


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
    _KV + 24: UnderTempDirError,
    _KV + 25: ParentIsLockError,
    _KV + 26: NotLockNodeError,
    _KV + 27: IsLockError,
    _KV + 101: TooManyKeysError,
    _KV + 104: HistoryCompactedError,
    _KV + 106: TooManyWaitersError,
}


def error_from_code(
    code: int, message: str, retryable: bool = False, leader_hint: Optional[str] = None
) -> DongtingError:
    """The exception instance for a stable error code."""
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = KvError if code > _KV else DongtingError
    return cls(code, message, retryable, leader_hint)
