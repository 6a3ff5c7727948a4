"""Every operation of the SDK's table (kv_ops!) has its wrapper on both clients."""

from __future__ import annotations

import inspect

import pytest

import dongting
from dongting import _native


def test_the_table_lists_the_operations() -> None:
    names = _native.kv_op_names()
    assert "put" in names and "list_page" in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("cls", [dongting.KvClient, dongting.AsyncKvClient])
@pytest.mark.parametrize("name", _native.kv_op_names())
def test_every_operation_has_a_wrapper(cls: type, name: str) -> None:
    method = getattr(cls, name, None)
    assert callable(method), f"{cls.__name__} has no method {name}"
    assert not name.startswith("_")
    assert inspect.signature(method).parameters, f"{cls.__name__}.{name} takes no arguments"


@pytest.mark.parametrize("name", _native.kv_op_names())
def test_every_operation_has_native_forms(name: str) -> None:
    assert callable(getattr(_native.NativeClient, name, None))
    assert callable(getattr(_native.NativeClient, name + "_async", None))
