"""Checks of the numeric arguments: groups, indexes, timeouts, waits, TTLs
and lock leases.

Each check returns the value the native layer takes (an int; milliseconds
for durations given in seconds) or raises InvalidArgumentError (also a
ValueError) naming the argument, the rule and the value given, before
anything is sent. A TTL of 0 or above its maximum raises InvalidTtlError
(also an InvalidArgumentError), the error DtKV itself answers for it. No
argument reaches the native layer as a value it would refuse with
OverflowError or TypeError, and none is taken as "the default".
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, NoReturn

from . import _native
from ._errors import InvalidArgumentError, InvalidTtlError

_INVALID_ARGUMENT = 900
_INVALID_TTL = 1022

MAX_U32 = 0xFFFF_FFFF
MAX_GROUP = MAX_U32
"""The largest raft group id (ids are unsigned 32-bit)."""
MAX_INDEX = 0xFFFF_FFFF_FFFF_FFFF
"""The largest raft index (unsigned 64-bit)."""
MAX_TIMEOUT = _native.MAX_TIMEOUT_MS / 1000
"""The longest call timeout and watch wait, in seconds (one day)."""
MAX_TTL = _native.MAX_TTL_MS / 1000
"""The longest TTL, lock lease and lock wait, in seconds (30 days)."""


def _refuse(name: str, rule: str, value: Any) -> NoReturn:
    raise InvalidArgumentError(_INVALID_ARGUMENT, f"{name} must be {rule}, got {value!r}")


def integer(value: Any, name: str, lo: int, hi: int) -> int:
    """An int from ``lo`` to ``hi`` (bool is refused; objects with
    ``__index__`` are taken)."""
    if type(value) is int and lo <= value <= hi:
        return value
    rule = f"an int between {lo} and {hi}"
    if isinstance(value, bool):
        _refuse(name, rule, value)
    try:
        v = operator.index(value)
    except TypeError:
        _refuse(name, rule, value)
    if not lo <= v <= hi:
        _refuse(name, rule, value)
    return v


MAX_PAGE_LIMIT: int = _native.MAX_PAGE_LIMIT
"""The most children one list page holds (0 asks for the default, 1,000)."""


def page_limit(value: Any) -> int:
    """A list page's limit: 0 (the default) to 10000."""
    return integer(value, "limit", 0, MAX_PAGE_LIMIT)


def group(value: Any, name: str = "group") -> int:
    """A raft group id: 0 to 4294967295."""
    if type(value) is int and 0 <= value <= MAX_GROUP:
        return value
    return integer(value, name, 0, MAX_GROUP)


def index(value: Any, name: str = "from_index") -> int:
    """A raft index: 0 to 2**64 - 1."""
    return integer(value, name, 0, MAX_INDEX)


def _seconds(value: Any, name: str, rule: str) -> float:
    """``value`` as a float, refusing what is not a real number (bool, NaN,
    strings, None...). An int too large for a float becomes infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _refuse(name, rule, value)
    try:
        s = float(value)
    except OverflowError:
        s = math.inf if value > 0 else -math.inf
    if s != s:
        _refuse(name, rule, value)
    return s


def _ms(s: float) -> int:
    # A positive duration shorter than a millisecond is one millisecond.
    return 0 if s == 0 else max(1, int(round(s * 1000)))


def _span(hi: float) -> str:
    return f"{hi:g} seconds"


def _positive(value: Any, name: str, hi: float) -> int:
    """Seconds more than 0 and at most ``hi``; in ms."""
    rule = f"more than 0 and at most {_span(hi)}"
    s = _seconds(value, name, rule)
    if not 0 < s <= hi:
        _refuse(name, rule, value)
    return _ms(s)


def timeout(value: Any, name: str = "timeout") -> int:
    """A call timeout in seconds: more than 0, at most one day; in ms."""
    return _positive(value, name, MAX_TIMEOUT)


def wait(value: Any, name: str, hi: float = MAX_TIMEOUT) -> int:
    """A wait in seconds that may be 0 (do not wait), at most ``hi``; in ms."""
    rule = f"between 0 and {_span(hi)}"
    s = _seconds(value, name, rule)
    if not 0 <= s <= hi:
        _refuse(name, rule, value)
    return _ms(s)


def lease(value: Any, name: str = "lease") -> int:
    """A lock lease in seconds: more than 0, at most 30 days; in ms."""
    return _positive(value, name, MAX_TTL)


def ttl(value: Any, name: str = "ttl") -> int:
    """A TTL in seconds: more than 0, at most 30 days; in ms. Zero or a
    finite number above the maximum raises InvalidTtlError, as DtKV answers
    for them; a negative or infinite one is no TTL at all."""
    rule = f"more than 0 and at most {_span(MAX_TTL)}"
    s = _seconds(value, name, rule)
    if s < 0 or (math.isinf(s) and not isinstance(value, numbers.Integral)):
        _refuse(name, rule, value)
    if not 0 < s <= MAX_TTL:
        raise InvalidTtlError(_INVALID_TTL, f"INVALID_TTL: {name} must be {rule}, got {value!r}")
    return _ms(s)
