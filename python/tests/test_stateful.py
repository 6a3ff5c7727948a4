"""A hypothesis state machine: the client against an in-Python model of DtKV
(put, get, remove, mkdir, list, compare_and_set) on the embedded cluster."""

from __future__ import annotations

import itertools
import uuid
from typing import Dict, Optional, Type, Union

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import dongting

DIR = object()
Entry = Union[bytes, object]

# Keys two levels deep over a small alphabet, so operations collide often.
SEGMENTS = ["a", "b", "c"]
KEYS = SEGMENTS + [f"{x}.{y}" for x, y in itertools.product(SEGMENTS, SEGMENTS)]
key_st = st.sampled_from(KEYS)
value_st = st.sampled_from([b"1", b"2", b"xyz"])
cas_value_st = st.sampled_from([b"", b"1", b"2"])


class _Kv:
    client: Optional[dongting.KvClient] = None


def parent_of(k: str) -> Optional[str]:
    return k.rsplit(".", 1)[0] if "." in k else None


class DtKvModel(RuleBasedStateMachine):
    """Each example works in a fresh top-level directory."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = _Kv.client
        assert self.kv is not None
        self.model: Dict[str, Entry] = {}
        self.root = ""

    @initialize()
    def make_root(self) -> None:
        self.root = "h" + uuid.uuid4().hex[:12]
        self.kv.mkdir(self.root)  # type: ignore[union-attr]

    def full(self, k: str) -> str:
        return f"{self.root}.{k}"

    def parent_error(self, k: str) -> Optional[Type[dongting.DongtingError]]:
        p = parent_of(k)
        if p is None:
            return None
        if p not in self.model:
            return dongting.ParentNotFoundError
        if self.model[p] is not DIR:
            return dongting.ParentNotDirError
        return None

    def expect(self, error: Optional[Type[dongting.DongtingError]], call) -> bool:  # type: ignore[no-untyped-def]
        if error is None:
            call()
            return True
        with pytest.raises(error):
            call()
        return False

    @rule(k=key_st, v=value_st)
    def put(self, k: str, v: bytes) -> None:
        err = self.parent_error(k) or (dongting.IsDirError if self.model.get(k) is DIR else None)
        if self.expect(err, lambda: self.kv.put(self.full(k), v)):  # type: ignore[union-attr]
            self.model[k] = v

    @rule(k=key_st)
    def mkdir(self, k: str) -> None:
        cur = self.model.get(k)
        err = self.parent_error(k) or (dongting.NotDirError if cur is not None and cur is not DIR else None)
        if err is None:
            r = self.kv.mkdir(self.full(k))  # type: ignore[union-attr]
            assert r.created == (cur is None)
            self.model[k] = DIR
        else:
            self.expect(err, lambda: self.kv.mkdir(self.full(k)))  # type: ignore[union-attr]

    @rule(k=key_st)
    def remove(self, k: str) -> None:
        cur = self.model.get(k)
        if cur is None:
            err: Optional[Type[dongting.DongtingError]] = dongting.NotFoundError
        elif cur is DIR and any(parent_of(c) == k for c in self.model):
            err = dongting.DirNotEmptyError
        else:
            err = None
        if self.expect(err, lambda: self.kv.remove(self.full(k))):  # type: ignore[union-attr]
            del self.model[k]

    @rule(k=key_st, expected=cas_value_st, new=cas_value_st)
    def compare_and_set(self, k: str, expected: bytes, new: bytes) -> None:
        cur = self.model.get(k)
        err: Optional[Type[dongting.DongtingError]] = None
        if cur is None:
            if expected:
                err = dongting.CasMismatchError
            elif new:
                err = self.parent_error(k)
        elif cur is DIR:
            err = dongting.IsDirError
        elif not expected or cur != expected:
            err = dongting.CasMismatchError
        if self.expect(err, lambda: self.kv.compare_and_set(self.full(k), expected, new)):  # type: ignore[union-attr]
            if new:
                self.model[k] = new
            else:
                self.model.pop(k, None)

    @rule(k=key_st)
    def get(self, k: str) -> None:
        n = self.kv.get(self.full(k))  # type: ignore[union-attr]
        cur = self.model.get(k)
        if cur is None:
            assert n is None
        elif cur is DIR:
            assert n is not None and n.is_dir
        else:
            assert n is not None and n.is_value and n.value == cur

    @rule(k=st.sampled_from([""] + SEGMENTS))
    def list(self, k: str) -> None:
        path = self.full(k) if k else self.root
        cur = DIR if not k else self.model.get(k)
        if cur is None:
            self.expect(dongting.NotFoundError, lambda: self.kv.list(path))  # type: ignore[union-attr]
            return
        if cur is not DIR:
            self.expect(dongting.NotDirError, lambda: self.kv.list(path))  # type: ignore[union-attr]
            return
        got = [n.name for n in self.kv.list(path)]  # type: ignore[union-attr]
        want = sorted(self.full(c) for c in self.model if parent_of(c) == (k or None))
        assert got == want

    @invariant()
    def batch_get_agrees(self) -> None:
        if not self.root:
            return
        sample = KEYS[:4]
        got = self.kv.batch_get([self.full(k) for k in sample])  # type: ignore[union-attr]
        for k, n in zip(sample, got):
            cur = self.model.get(k)
            if cur is None:
                assert n is None
            elif cur is DIR:
                assert n is not None and n.is_dir
            else:
                assert n is not None and n.value == cur


def test_client_matches_the_model(kv: dongting.KvClient) -> None:
    _Kv.client = kv
    run = DtKvModel.TestCase
    run.settings = settings(
        max_examples=25,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=True,
        database=None,
    )
    run().runTest()
