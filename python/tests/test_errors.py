"""Error mapping from the stable codes to the exception hierarchy."""

from __future__ import annotations

import builtins

import pytest

import dongting
from dongting import _errors


def test_kv_errors(kv: dongting.KvClient, ns: str) -> None:
    with pytest.raises(dongting.NotFoundError) as e:
        kv.remove(f"{ns}.nothing")
    assert isinstance(e.value, dongting.KvError) and isinstance(e.value, dongting.DongtingError)
    assert e.value.code == 1002 and "does not exist" in e.value.message
    with pytest.raises(dongting.ParentNotFoundError):
        kv.put(f"{ns}.no.such", b"v")
    kv.put(f"{ns}.v", b"v")
    with pytest.raises(dongting.ParentNotDirError):
        kv.put(f"{ns}.v.child", b"v")
    with pytest.raises(dongting.NotDirError):
        kv.mkdir(f"{ns}.v")
    with pytest.raises(dongting.NotDirError):
        kv.list(f"{ns}.v")
    kv.mkdir(f"{ns}.d")
    kv.put(f"{ns}.d.x", b"v")
    with pytest.raises(dongting.IsDirError):
        kv.put(f"{ns}.d", b"v")
    with pytest.raises(dongting.DirNotEmptyError):
        kv.remove(f"{ns}.d")
    with pytest.raises(dongting.InvalidValueError):
        kv.put(f"{ns}.e", b"")


def test_invalid_arguments(kv: dongting.KvClient, ns: str) -> None:
    for bad in [f"{ns}..x", f".{ns}", f"{ns} x", b"\xff\xfe"]:
        with pytest.raises(dongting.InvalidKeyError) as e:
            kv.put(bad, b"v")
        assert isinstance(e.value, ValueError)
        assert isinstance(e.value, dongting.InvalidArgumentError)
    with pytest.raises(dongting.InvalidArgumentError):
        dongting.KvClient("")
    with pytest.raises(dongting.InvalidArgumentError):
        dongting.KvClient("no-port-here")


def test_group_not_found(kv: dongting.KvClient) -> None:
    with pytest.raises(dongting.GroupNotFoundError) as e:
        kv.get("a", group=99)
    assert e.value.code == 8


def test_timeout_against_nothing() -> None:
    with dongting.KvClient("127.0.0.1:1", timeout=0.3) as kv:
        with pytest.raises((dongting.TimeoutError, dongting.NetworkError)) as e:
            kv.get("a")
    if isinstance(e.value, dongting.TimeoutError):
        assert isinstance(e.value, builtins.TimeoutError)


def test_closed_client(cluster: dongting.LocalCluster) -> None:
    kv = cluster.client()
    kv.close()
    with pytest.raises(dongting.ClosedError):
        kv.get("a")


def test_config_errors() -> None:
    with pytest.raises(dongting.ConfigError) as e:
        dongting.EmbeddedServer("node_id = 0")
    assert e.value.code == 905
    with pytest.raises(dongting.ConfigError):
        dongting.EmbeddedServer(path="/nonexistent/node.toml")
    with pytest.raises(TypeError):
        dongting.EmbeddedServer()


@pytest.mark.parametrize(
    "code,cls",
    [
        (7, dongting.NotLeaderError),
        (4, dongting.UnavailableError),
        (6, dongting.UnavailableError),
        (10, dongting.TimeoutError),
        (12, dongting.NetworkError),
        (13, dongting.ClosedError),
        (911, dongting.UnknownOutcomeError),
        (901, dongting.CancelledError),
        (902, dongting.RuntimeShutDownError),
        (903, dongting.ForkedError),
        (906, dongting.ServerStartError),
        (1014, dongting.CasMismatchError),
        (1018, dongting.NotOwnerError),
        (1099, dongting.KvError),
        (555, dongting.DongtingError),
    ],
)
def test_code_mapping(code: int, cls: type) -> None:
    e = _errors.error_from_code(code, "m", code == 7, "127.0.0.1:9" if code == 7 else None)
    assert type(e) is cls and e.code == code and str(e) == "m"
    if code == 7:
        assert e.retryable and e.leader_hint == "127.0.0.1:9"


# Codes that deliberately raise a base class (DongtingError, or KvError for
# DtKV codes): conditions a caller does not handle one by one.
_BASE_CLASS_CODES = {
    "SYS_ERROR",
    "COMMAND_NOT_SUPPORTED",
    "PROTOCOL_ERROR",
    "UNSUPPORTED_API_VERSION",
    "RESOURCE",
    "WRONG_RESULT_KIND",
    "PENDING",
    "SERVER_STOPPED",
    "INTERNAL",
    "INVALID_COMMAND",
    "SEQ_TOO_OLD",
    "INDEX_NOT_INCREASING",
    "INVALID_SNAPSHOT",
}


def test_every_code_has_a_constant_and_a_mapping() -> None:
    table = dongting.error_codes()
    assert len(table) == len({code for _, code in table}) == len({name for name, _ in table})
    assert {(m.name, m.value) for m in dongting.ErrorCode} == set(table)
    for name, code in table:
        assert dongting.ErrorCode[name] == code
        assert _native_name(code) == name
        cls = type(_errors.error_from_code(code, "m"))
        base = dongting.KvError if code > 1000 else dongting.DongtingError
        if name in _BASE_CLASS_CODES:
            assert cls is base, f"{name} ({code}) maps to {cls.__name__}"
        else:
            assert cls is not base and issubclass(cls, base), f"{name} ({code}) has no exception class"
    assert _BASE_CLASS_CODES <= {name for name, _ in table}


def _native_name(code: int) -> str:
    return _errors.error_from_code(code, "m").name


@pytest.mark.parametrize(
    "code,cls",
    [
        (1024, dongting.UnderTempDirError),
        (1025, dongting.ParentIsLockError),
        (1026, dongting.NotLockNodeError),
        (1027, dongting.IsLockError),
        (1104, dongting.HistoryCompactedError),
        (1106, dongting.TooManyWaitersError),
    ],
)
def test_lock_and_history_codes(code: int, cls: type) -> None:
    e = _errors.error_from_code(code, "m", code == 1106)
    assert type(e) is cls and isinstance(e, dongting.KvError) and e.code == code
    assert e.retryable == (code == 1106)
