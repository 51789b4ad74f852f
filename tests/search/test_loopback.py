"""study/search/loopback.py: which addresses turn Ray's cluster switch off. What the processes
of an instance then listen on is checked where the runner and the search stage start theirs
(tests/tools/test_runner_failures.py, tests/search/test_search.py)."""

from __future__ import annotations

import os

import pytest
from ray._private import ray_constants

from study.search.loopback import loopback_only

SWITCH = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR


@pytest.fixture
def switch(monkeypatch):
    """Ray's switch as a fresh process has it (clusters on), put back after the test."""
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.delenv(SWITCH, raising=False)


@pytest.mark.parametrize(
    "address", [None, "127.0.0.1:6379", "localhost:6379", "[::1]:6379", "ray://127.0.0.1:10001"]
)
def test_a_local_instance_or_one_at_a_loopback_address_stays_on_loopback(switch, address):
    loopback_only(address)
    assert ray_constants.ENABLE_RAY_CLUSTER is False  # this process
    assert os.environ[SWITCH] == "0"  # the processes ray.init starts


@pytest.mark.parametrize("address", ["10.0.0.5:6379", "head.example.org:6379", "auto"])
def test_a_clusters_address_changes_nothing(switch, address):
    loopback_only(address)
    assert ray_constants.ENABLE_RAY_CLUSTER is True
    assert SWITCH not in os.environ
