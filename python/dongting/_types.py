"""Results: nodes and write results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

Key = Union[str, bytes]
"""A key: ``str`` (encoded as UTF-8) or ``bytes`` holding UTF-8."""

Value = Union[str, bytes, bytearray, memoryview]
"""A value: ``bytes``-like, or ``str`` (encoded as UTF-8)."""


class NodeKind(enum.IntEnum):
    """What a node is (stable numbers shared with the C API)."""

    ABSENT = 0
    VALUE = 1
    DIR = 2
    LOCK = 3


@dataclass(frozen=True)
class Node:
    """One DtKV node as read."""

    key: bytes
    """The full key (``a.b.c``) as UTF-8 bytes."""
    value: bytes
    """The value (empty for directories)."""
    kind: NodeKind
    create_index: int
    """Raft index of the creation."""
    create_time_ms: int
    """Leader wall-clock milliseconds of the creation."""
    update_index: int
    """Raft index of the last change."""
    update_time_ms: int
    """Leader wall-clock milliseconds of the last change."""
    ttl_deadline_ms: int = 0
    """Temporary node: expiry deadline (leader wall-clock ms); 0 otherwise."""
    ttl_owner: int = 0
    """Temporary node: id of the owning client; 0 otherwise."""

    @property
    def is_dir(self) -> bool:
        return self.kind == NodeKind.DIR

    @property
    def is_value(self) -> bool:
        return self.kind == NodeKind.VALUE

    @property
    def name(self) -> str:
        """The key as text."""
        return self.key.decode("utf-8")


@dataclass(frozen=True)
class WriteResult:
    """The answer to a write."""

    index: int
    """Raft index the write was applied at."""
    created: bool = False
    """put, mkdir: whether the node was created (False: it existed)."""
    deadline_ms: int = 0
    """put_temp, make_temp_dir, update_ttl: the new expiry deadline."""
    codes: List[int] = field(default_factory=list)
    """batch_put, batch_remove: one code per key (0: done)."""


def key_bytes(key: Key) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytes):
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a key is str or bytes, not {type(key).__name__}")


def value_bytes(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a value is bytes-like or str, not {type(value).__name__}")


def keys_bytes(keys: Sequence[Key]) -> List[bytes]:
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be a sequence of keys, not a single key")
    return [key_bytes(k) for k in keys]


RawReply = Tuple[int, int, bool, int, Tuple[Tuple[Any, ...], ...], Tuple[int, ...], int, bool]


def node(raw: Tuple[Any, ...]) -> Node:
    return Node(
        raw[0], raw[1], NodeKind(raw[2]), raw[3], raw[4], raw[5], raw[6], raw[7], raw[8]
    )


_new_object = object.__new__


def as_write(r: RawReply) -> WriteResult:
    # The object WriteResult(...) builds, without the frozen dataclass
    # __init__'s object.__setattr__ per field: every write's reply goes
    # through here, about 3 times faster.
    w: WriteResult = _new_object(WriteResult)
    d = w.__dict__
    d["index"] = r[1]
    d["created"] = r[2]
    d["deadline_ms"] = r[3]
    d["codes"] = list(r[5])
    return w


def as_get(r: RawReply) -> Optional[Node]:
    return node(r[4][0]) if r[4] else None


def as_list(r: RawReply) -> List[Node]:
    return [node(n) for n in r[4]]


@dataclass(frozen=True)
class Page:
    """One page of a directory's children."""

    nodes: List[Node]
    """The page's children, sorted by key."""
    more: bool
    """True when children follow the last one of this page."""

    @property
    def next_after(self) -> Optional[bytes]:
        """The key the next page starts after (the last key; None when empty)."""
        return self.nodes[-1].key if self.nodes else None


def as_page(r: RawReply) -> Page:
    return Page([node(n) for n in r[4]], r[7])


def as_batch_get(r: RawReply) -> List[Optional[Node]]:
    from ._errors import error_from_code

    out: List[Optional[Node]] = []
    for raw, code in zip(r[4], r[5]):
        if code != 0:
            raise error_from_code(code, f"batch_get of {raw[0]!r} failed")
        out.append(None if raw[2] == NodeKind.ABSENT else node(raw))
    return out
