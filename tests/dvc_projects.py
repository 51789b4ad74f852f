"""Small DVC projects with shell-command stages (no TensorFlow), and tools.ray_repro on them."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from conftest import dvc, sh

from bench.workspace import commit, dvc_bin, pipeline_env
from study.config.paths import REPO_ROOT
from study.config.raw import read_params

RUNNER = read_params()["runner"]


def project(tmp_path: Path, stages: dict, name: str = "repo") -> Path:
    """A git + DVC repository with these dvc.yaml stages and params.yaml's runner section."""
    repo = tmp_path / name
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    (repo / "params.yaml").write_text(yaml.safe_dump({"runner": RUNNER}))
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for package in ("tools", "stages", "study"):
        (repo / package).symlink_to(REPO_ROOT / package)
    commit(repo, "project")
    return repo


def stage(cmd: str, outs: list[str], deps: list[str] = ()) -> dict:
    return {"cmd": cmd, "outs": outs, **({"deps": list(deps)} if deps else {})}


GRAPH = {
    "a": stage("echo a > a.txt", ["a.txt"]),
    "b": stage("cat a.txt > b.txt", ["b.txt"], ["a.txt"]),
    "c": stage("echo c > c.txt", ["c.txt"]),
    "d": stage("cat c.txt b.txt > d.txt", ["d.txt"], ["c.txt", "b.txt"]),
    "e": stage("echo e > e.txt", ["e.txt"]),
}


def runner(repo: Path, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tools.ray_repro", *args]
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(cmd, cwd=repo, env=env or pipeline_env(), text=True, **popen)


def run_runner(repo: Path, *args: str, ray_address: str | None = None) -> tuple[int, str, str]:
    """The runner on repo; on the Ray instance at ray_address (as a team's RAY_ADDRESS) if
    given, else on one it starts and shuts down itself."""
    env = pipeline_env(RAY_ADDRESS=ray_address) if ray_address else None
    proc = runner(repo, *args, env=env)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@contextmanager
def local_ray(num_cpus: int) -> Iterator[str]:
    """A local Ray instance in this process for a module's runner runs to share (each start
    costs ~5 CPU-seconds); its GCS address. The tests of how the runner ends the instance
    it started itself (kills, signals) start their own. On 127.0.0.1 as the runner's own
    (study/search/loopback.py); the switch is put back once Ray's processes have started, so
    that this worker's later subprocesses do not inherit it."""
    import ray
    from ray._private import ray_constants

    from study.search.loopback import loopback_only

    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(name)
    loopback_only()
    try:
        ray.init(
            address="local", num_cpus=num_cpus, include_dashboard=False,
            _node_ip_address="127.0.0.1", log_to_driver=False,
        )  # fmt: skip
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[0]
        if saved[1] is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved[1]
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def status(repo: Path, *targets: str) -> dict:
    out = sh(repo, dvc_bin(), "status", "--json", "--with-deps", *targets)
    return json.loads(out.strip().splitlines()[-1])


class Lines:
    """A running process's output lines as they come, read by a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        """The first line that contains `text`, once there is one; fails if the output ends
        without it (queue.Empty after `timeout`)."""
        for line in self.seen:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while (line := self._lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in:\n{''.join(self.seen)}")

    def rest(self) -> str:
        """Everything, once the process has ended."""
        while (line := self._lines.get(timeout=120)) is not None:
            self.seen.append(line)
        return "".join(self.seen)
