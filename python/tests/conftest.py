"""One embedded 3-node cluster (groups 0 and 1) shared by the test session."""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

import dongting

_names = itertools.count()


@pytest.fixture(scope="session")
def cluster() -> Iterator[dongting.LocalCluster]:
    with dongting.start_local_cluster(nodes=3, groups=(0, 1), timeout=60.0) as c:
        yield c


@pytest.fixture
def kv(cluster: dongting.LocalCluster) -> Iterator[dongting.KvClient]:
    with cluster.client(timeout=10.0) as client:
        yield client


@pytest.fixture
def ns(kv: dongting.KvClient) -> str:
    """A fresh top-level directory for one test."""
    name = f"t{next(_names)}"
    kv.mkdir(name)
    return name
