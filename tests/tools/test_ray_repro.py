"""tools/ray_repro.py: the DVC graph's stale stages as Ray tasks, each written to dvc.lock.

These tests use a small DVC project with shell commands (no TensorFlow);
tests/tools/test_runner_cluster.py runs the tiny study on a two-node Ray cluster.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import psutil
import pytest
import yaml
from conftest import dvc
from dvc_projects import (
    GRAPH,
    RUNNER,
    Lines,
    local_ray,
    project,
    run_runner,
    runner,
    stage,
    status,
)
from processes import ray_processes

from bench.workspace import pipeline_env
from tools.dvc_graph import descendants, plan
from tools.ray_start import WholeLines, background
from tools.schedule import load_seconds, save_seconds


def test_plan_follows_dvc_graph(tmp_path, monkeypatch):
    from dvc.repo import Repo

    root = project(tmp_path, GRAPH)
    monkeypatch.chdir(root)  # no target: ./dvc.yaml, as for `dvc repro`
    repo = Repo(str(root))
    stages = plan(repo)
    assert {name: deps for name, (_, deps) in stages.items()} == {
        "a": set(), "b": {"a"}, "c": set(), "d": {"b", "c"}, "e": set(),
    }  # fmt: skip
    order = list(stages)
    assert order.index("a") < order.index("b") < order.index("d")
    # A target (relative to the working directory, as for dvc) and what it depends on.
    assert set(plan(repo, [f"{root}/dvc.yaml:b"])) == {"a", "b"}
    code, _, err = run_runner(root, "nosuch")
    assert code == 1 and err.strip() == "error: Stage 'nosuch' not found inside 'dvc.yaml' file"


def test_descendants_are_transitive():
    needs = {"a": set(), "b": {"a"}, "c": set(), "d": {"b", "c"}, "e": set()}
    assert descendants(needs, "a") == {"b", "d"}
    assert descendants(needs, "c") == {"d"}
    assert descendants(needs, "e") == set()


def test_background_gives_its_result_or_its_error():
    # The runner creates the MLflow store this way (while Ray starts): its result and its
    # errors must reach the caller, and the call must have ended by then.
    ended = []
    assert background(lambda: ended.append(1) or "done").result() == "done"
    assert ended == [1]
    with pytest.raises(ValueError, match="'x'"):
        background(int, "x").result()


def test_whole_lines_passes_on_a_threads_line_only_once_it_ends():
    """The runner's print and Ray's log thread at once: print writes a line's text and its
    newline apart; the other thread's line comes out whole, before the unfinished one."""
    raw = io.StringIO()
    out = WholeLines(raw)
    out.write("ray_repro: variants: done in 6.3s on node")  # print's first write
    ray_log = threading.Thread(target=print, args=("(task pid=1) variants/",), kwargs={"file": out})
    ray_log.start()
    ray_log.join()
    assert raw.getvalue() == "(task pid=1) variants/\n"
    out.write(" d3b6fde7\n")
    assert raw.getvalue().splitlines() == [
        "(task pid=1) variants/", "ray_repro: variants: done in 6.3s on node d3b6fde7"
    ]  # fmt: skip
    out.write("no newline")
    out.flush()  # passed on as it is
    assert raw.getvalue().endswith("d3b6fde7\nno newline") and out.isatty() is False


def test_another_dvc_version_runs_plain_dvc_repro(tmp_path, monkeypatch, capsys):
    import tools.dvc_graph
    from tools.ray_repro import main

    class Exec(Exception):
        pass

    def execv(path: str, argv: list[str]) -> None:
        raise Exec(path, argv)

    root = project(tmp_path, GRAPH)
    monkeypatch.chdir(root)
    monkeypatch.setattr(tools.dvc_graph, "DVC_TESTED", "0.0.1")
    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(Exec) as exec_:
        main(["b"])
    path, argv = exec_.value.args
    assert path == sys.executable and argv == [sys.executable, "-m", "dvc", "repro", "b"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tested with DVC 0.0.1; running `dvc repro` instead" in err
    subprocess.run(argv, cwd=root, env=pipeline_env(), capture_output=True, check=True)
    assert (root / "b.txt").read_text() == "a\n" and not (root / "c.txt").exists()
    assert status(root, "b") == {}


@pytest.fixture(scope="module")
def ray_address():
    with local_ray(num_cpus=1) as address:  # one stage at a time: the schedule's order
        yield address


def test_runs_the_graph_writes_each_stage_and_fills_run_cache(tmp_path, ray_address):
    # One stage at a time, each noting when it starts: the order is tools/schedule.py's.
    graph = {n: {**s, "cmd": f"echo {n} >> started.txt; {s['cmd']}"} for n, s in GRAPH.items()}
    repo = project(tmp_path, graph)
    runner_params = {**RUNNER, "parallel": {**RUNNER["parallel"], "num_cpus": 1}}
    (repo / "params.yaml").write_text(yaml.safe_dump({"runner": runner_params}))
    save_seconds(repo, {"c": 1.0, "e": 50.0})  # as a last run measured them
    code, out, err = run_runner(repo, ray_address=ray_address)
    assert code == 0, err
    assert (repo / "d.txt").read_text() == "c\na\n"
    # The longest path first (e), then c (which d waits for), then a, b, d.
    assert (repo / "started.txt").read_text().split() == ["e", "c", "a", "b", "d"]
    assert set(load_seconds(repo)) == set(GRAPH)  # this run's times for the next
    assert status(repo) == {}
    assert "Running stage" not in dvc(repo, "repro")  # DVC agrees: nothing to do
    assert out.count("Updating lock file") == len(GRAPH)  # once per finished stage
    # A no-op leaves dvc.lock alone, as `dvc repro` does (which rewrites it per stage run).
    lock = repo / "dvc.lock"
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    code, out, err = run_runner(repo, ray_address=ray_address)
    assert code == 0 and "started" not in out, out + err
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before
    # DVC's run-cache knows each result: with outputs gone, they are restored, not rerun.
    for name in ("a.txt", "b.txt"):
        (repo / name).unlink()
    code, out, err = run_runner(repo, ray_address=ray_address)
    assert code == 0, err
    # A stage without deps has no run-cache entry (for DVC neither): a runs again.
    assert "a: run" in out and "b: restored" in out and "d: up to date" in out
    assert (repo / "b.txt").read_text() == "a\n"
    (repo / "d.txt").unlink()
    assert "Stage 'd' is cached" in dvc(repo, "repro")  # dvc's own repro finds it too


def test_with_keep_going_a_failure_stops_only_what_depends_on_it(tmp_path, ray_address):
    graph = {**GRAPH, "c": stage("echo broken; exit 3", ["c.txt"])}
    repo = project(tmp_path, graph)
    code, _, err = run_runner(repo, "--keep-going", ray_address=ray_address)
    assert code == 1
    log = repo / ".dvc" / "tmp" / "ray_repro" / "c.log"
    assert f"failed: c (exit 3; log: {log})" in err
    assert "broken" in log.read_text()
    assert "not run: d" in err and not (repo / "d.txt").exists()
    # Everything else finished and is recorded; only the failed stage and its dependent are not.
    assert set(status(repo)) == {"c", "d"}
    assert (repo / "e.txt").read_text() == "e\n"


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_signal_stops_every_stage_and_commits_only_finished(tmp_path, how):
    graph = {
        "quick": stage("echo q > q.txt", ["q.txt"]),
        "slow": stage("echo partial > s.txt; echo slow pid $$; exec sleep 120", ["s.txt"]),
    }
    repo = project(tmp_path, graph)
    marker = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's sockets need a short path
    env = pipeline_env(RAY_TMPDIR=marker)
    proc = runner(repo, env=env, stderr=subprocess.STDOUT, start_new_session=True)
    lines = Lines(proc)
    # Once "done" is printed, the stage is recorded before a signal is looked at.
    lines.wait_for("ray_repro: quick: done")
    sleeper = int(lines.wait_for("[slow] slow pid ").split()[-1])  # the command runs
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:  # a terminal's ^C reaches the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, lines.rest()
    with pytest.raises(ProcessLookupError):
        os.kill(sleeper, 0)
    assert set(status(repo)) == {"slow"}  # quick is committed, the half-written stage is not
    _, alive = psutil.wait_procs(ray_processes(marker), timeout=30)
    assert not alive, f"Ray processes left behind: {alive}"
    shutil.rmtree(marker)


def test_bad_settings_fail_before_anything_runs(tmp_path):
    repo = project(tmp_path, GRAPH)
    params = {"runner": {**RUNNER, "parallel": {**RUNNER["parallel"], "cpus_per_stage": 0}}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    code, out, err = run_runner(repo)
    assert code == 1 and "runner.parallel.cpus_per_stage" in err and not out
    assert not (repo / "a.txt").exists()
