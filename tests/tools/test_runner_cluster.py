"""The runner on a Ray cluster, as a team runs the study (docs/team.md): a two-node cluster on
this machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import study_copy
from dvc_projects import status

from bench.workspace import pipeline_env

# Two of the tiny study's variants (tests/conftest.py), one per dataset: their trainings run at
# once, one per node (dropout's two seeds would add ~8 s and no other path).
VARIANTS = ["thoracic_bce", "baseline"]


@pytest.mark.slow
def test_tiny_study_on_two_node_cluster_matches_sequential_repro(
    built_study, tmp_path, monkeypatch
):
    """Two of the tiny study's variants rerun by the runner on a two-node cluster: stages on both
    nodes (the runner names each stage's), metrics byte-identical to `dvc repro`'s."""
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    # Every node's address on 127.0.0.1 (else Ray advertises this machine's outward address).
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)

    repo = study_copy(built_study, tmp_path / "parallel")
    # Every stage stale and none restorable: the runner runs them all on the cluster.
    (repo / "dvc.lock").unlink()
    shutil.rmtree(repo / ".dvc" / "cache" / "runs")
    # The variants' stages (the search, tested in tests/search/, would add ~40 s).
    targets = [f"evaluate@{name}" for name in VARIANTS]

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        node_ids = {node.node_id[:8] for node in (cluster.head_node, worker)}
        env = pipeline_env(RAY_ADDRESS=cluster.address, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        proc = subprocess.run(
            [sys.executable, "-m", "tools.ray_repro", *targets], cwd=repo, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        cluster.shutdown()
    assert status(repo, *targets) == {}  # the targets and everything they depend on
    for name in VARIANTS:  # search.json also holds wall times
        path = Path("metrics") / f"{name}.json"
        assert (repo / path).read_bytes() == (built_study / path).read_bytes(), name
    done = [line for line in proc.stdout.splitlines() if " on node " in line]
    nodes = {line.rsplit(" ", 1)[1] for line in done}
    assert nodes == node_ids, done
