"""docs/runner.md's Ray cluster with token authentication (RAY_AUTH_MODE=token, the token in
RAY_AUTH_TOKEN_PATH), on 127.0.0.1 here: a head node started by `ray start --head` as the
guide says and a worker node joining it (the worker as tests/search/test_search_cluster.py's
ray.cluster_utils adds one: `ray start --address` refuses to join on 127.0.0.1 only). A
client without the token is refused, one with it runs tasks on both nodes. Everything stops
at the end: the processes started with this test's RAY_TMPDIR, not another Ray instance."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from processes import LOOPBACK, listening_ips, ray_processes
from servers import free_port

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")

# A node on 127.0.0.1 joining the head (what ray.cluster_utils.Cluster.add_node does).
WORKER_NODE = """
import sys
from ray._private.node import Node
from ray._private.parameter import RayParams

params = RayParams(
    gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=1, node_manager_port=0,
    min_worker_port=0, max_worker_port=0, include_log_monitor=False,
    object_store_memory=150 * 1024 * 1024,
)
Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
"""

# Which nodes two tasks ran on, each holding a node's only CPU at once.
CLIENT = """
import sys, time
import ray

ray.init(address=sys.argv[1])
@ray.remote(num_cpus=1)
def node(): time.sleep(1); return ray.get_runtime_context().get_node_id()
print("nodes:", len(set(ray.get([node.remote(), node.remote()]))))
"""


def ray_env(tmp: Path, home: Path, **extra: str) -> dict[str, str]:
    """The cluster's RAY_TMPDIR, a private HOME (where no ~/.ray/auth_token of this machine's
    user is found), every address on 127.0.0.1 (else Ray advertises and binds the machine's
    outward one)."""
    home.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {
        **base, "HOME": str(home), "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **extra,
    }  # fmt: skip


def run(cmd: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def token_cluster() -> Iterator[tuple[str, Path]]:
    """A head and a worker node with token auth on; yields the head's address and the token
    file. Stopped by killing this cluster's processes (found by RAY_TMPDIR)."""
    tmp = Path(tempfile.mkdtemp(prefix="ra", dir="/tmp"))  # short: Ray's socket paths
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = ray_env(tmp, tmp / "home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    port = free_port()
    try:
        head = run(
            [RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
             "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
             f"--ray-client-server-port={free_port()}"], env,
        )  # fmt: skip
        assert head.returncode == 0, head.stdout + head.stderr
        address = f"127.0.0.1:{port}"
        worker = run([sys.executable, "-c", WORKER_NODE, address], env)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        yield address, token
    finally:
        for proc in ray_processes(str(tmp)):
            proc.kill()
        psutil.wait_procs(ray_processes(str(tmp)), timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_token_cluster_refuses_a_client_without_the_token_and_runs_one_with_it(tmp_path):
    with token_cluster() as (address, token):
        tmp = Path(token).parent
        listening = listening_ips(ray_processes(str(tmp)))
        assert listening and listening <= LOOPBACK, listening

        # The GCS refuses a client without the token at once; ray.init retries the connection
        # NUM_REDIS_GET_RETRIES times a second apart (ray/_private/node.py), 20 by default.
        quick = {"RAY_NUM_REDIS_GET_RETRIES": "2"}
        without = run(
            [sys.executable, "-c", CLIENT, address], ray_env(tmp, tmp_path / "home", **quick)
        )
        assert without.returncode != 0
        assert "InvalidAuthToken" in without.stderr, without.stderr[-3000:]
        wrong = tmp_path / "wrong_token"
        wrong.write_text(secrets.token_hex(32))
        home = tmp_path / "home"
        env = ray_env(tmp, home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(wrong), **quick)
        wrong_token = run([sys.executable, "-c", CLIENT, address], env)
        assert wrong_token.returncode != 0
        assert "InvalidAuthToken" in wrong_token.stderr, wrong_token.stderr[-3000:]

        env = ray_env(tmp, home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        with_token = run([sys.executable, "-c", CLIENT, address], env)
        assert with_token.returncode == 0, with_token.stderr[-3000:]
        assert "nodes: 2" in with_token.stdout
    assert not ray_processes(str(tmp))
