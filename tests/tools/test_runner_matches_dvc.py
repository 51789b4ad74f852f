"""tools/ray_repro.py against `dvc repro`: the same commands run, the same files and dvc.lock.

Each case is a small DVC project of shell commands, in two identical copies taken through the
same steps (a first run, changes, targets, a no-op): `dvc repro` in one, the runner in the
other. The runner runs in this process, on one local Ray instance for the whole module. Every
command appends its stage's name to ran.log, so the two runs' commands can be compared.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import dvc
from dvc_projects import RUNNER, local_ray, project

from bench.workspace import commit, dvc_bin, pipeline_env

Edit = Callable[[Path], None]
NOT_COMPARED = {"ran.log", "reports/stage_seconds.json"}  # the runner's stage times


@pytest.fixture(scope="module")
def ray_instance():
    with local_ray(num_cpus=2) as address:
        yield address


def run_runner(repo: Path, targets: list[str], gcs: str, monkeypatch) -> int:
    """`python -m tools.ray_repro TARGET...` in this process, on the module's Ray instance."""
    import tools.ray_repro as ray_repro

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with monkeypatch.context() as m:
        m.chdir(repo)
        m.setenv("RAY_ADDRESS", gcs)  # the runner sets it for its stages
        m.setattr(ray_repro, "start_ray", lambda settings: False)  # joined, not started
        m.setattr(sys, "argv", ["ray_repro", *targets])
        # DVC binds its log handlers to sys.stdout/stderr once, at its first import: maybe
        # under an earlier test's capture, closed since ("I/O operation on closed file").
        for name in ("dvc", "dvc_objects", "dvc_data"):
            for handler in logging.getLogger(name).handlers:
                err = handler.level >= logging.WARNING
                m.setattr(handler, "stream", sys.stderr if err else sys.stdout)
        try:
            ray_repro.main()
        except SystemExit as exit_:
            return exit_.code
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    return 0


def files(repo: Path) -> dict[str, bytes | list[bytes]]:
    """The working tree but git's and DVC's own directories (the cache, DVC's tmp). A
    .gitignore's lines are sorted: DVC appends an output as its stage is recorded."""
    found: dict[str, bytes | list[bytes]] = {}
    for top, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if not (top == str(repo) and d in (".git", ".dvc"))]
        for name in names:
            path = Path(top, name)
            if not path.is_symlink() and (rel := str(path.relative_to(repo))) not in NOT_COMPARED:
                data = path.read_bytes()
                found[rel] = sorted(data.splitlines()) if name == ".gitignore" else data
    return found


def ran(repo: Path) -> list[str]:
    log = repo / "ran.log"
    return sorted(log.read_text().split()) if log.exists() else []


def lock_stamp(repo: Path) -> int | None:
    lock = repo / "dvc.lock"
    return lock.stat().st_mtime_ns if lock.exists() else None


def check(
    tmp_path: Path, stages: dict, steps: list, gcs: str, monkeypatch, params: dict | None = None,
    setup: Edit | None = None,
) -> None:  # fmt: skip
    """Take both copies through `steps`: (edit or None, targets, the stages that must run)."""
    dvc_copy = project(tmp_path, stages, "dvc")
    if params or setup:
        (dvc_copy / "params.yaml").write_text(yaml.safe_dump({"runner": RUNNER, **(params or {})}))
        if setup:
            setup(dvc_copy)
        commit(dvc_copy, "case")
    runner_copy = tmp_path / "runner"
    shutil.copytree(dvc_copy, runner_copy, symlinks=True)
    for i, (edit, targets, expected) in enumerate(steps, 1):
        stamps = []
        for repo in (dvc_copy, runner_copy):
            (repo / "ran.log").unlink(missing_ok=True)
            if edit:
                edit(repo)
            stamps.append(lock_stamp(repo))
        proc = subprocess.Popen(
            [dvc_bin(), "repro", *targets], cwd=dvc_copy, env=pipeline_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        code = run_runner(runner_copy, targets, gcs, monkeypatch)  # meanwhile
        out = f"step {i}, dvc repro {' '.join(targets)}:\n{proc.communicate(timeout=300)[0]}"
        assert (code == 0) == (proc.returncode == 0), out
        assert ran(dvc_copy) == sorted(expected), out  # what the case expects of DVC
        assert ran(runner_copy) == ran(dvc_copy), out
        assert files(runner_copy) == files(dvc_copy), out  # dvc.lock, .dvc files, outputs
        # dvc.lock rewritten by both or by neither (a no-op leaves it alone).
        assert (lock_stamp(dvc_copy) != stamps[0]) == (lock_stamp(runner_copy) != stamps[1]), out


def write(name: str, text: str) -> Edit:
    return lambda repo: (repo / name).write_text(text)


def remove(name: str) -> Edit:
    return lambda repo: (repo / name).unlink()


def edit_yaml(name: str, *path: str, **fields) -> Edit:
    """Update the mapping at `path` in the YAML file `name` with `fields`."""

    def edit(repo: Path) -> None:
        data = yaml.safe_load((repo / name).read_text())
        node = data
        for key in path:
            node = node[key]
        node.update(fields)
        (repo / name).write_text(yaml.safe_dump(data))

    return edit


def both(*edits: Edit) -> Edit:
    def edit(repo: Path) -> None:
        for one in edits:
            one(repo)

    return edit


# Every command starts `echo NAME >> ran.log`.
FEATURES = {
    "gen": {  # a multi-line string: one command per line, as DVC runs it
        "cmd": "echo gen >> ran.log\nmkdir -p data\ngrep -A1 '^gen:' params.yaml > data/p.txt\n"
        "echo one > data/one.txt",
        "params": ["gen.n"],
        "outs": ["data"],  # a directory
    },
    "count": {
        "cmd": ["echo count >> ran.log", "ls data > count.txt", "cat data/p.txt >> count.txt"],
        "deps": ["data"],
        "outs": [{"count.txt": {"cache": False}}],
    },
    "hist": {
        "cmd": "echo hist >> ran.log; cat count.txt >> hist.txt",
        "deps": ["count.txt"],
        "outs": [{"hist.txt": {"persist": True}}],
    },
    "always": {
        "cmd": "echo always >> ran.log; echo x > always.txt",
        "always_changed": True,
        "outs": ["always.txt"],
    },
    "other": {
        "cmd": "echo other >> ran.log; grep -A1 '^other:' params.yaml > other.txt",
        "params": ["other.k"],
        "outs": ["other.txt"],
    },
}


def test_params_directories_persist_always_changed_uncached_and_multiline(
    tmp_path, ray_instance, monkeypatch
):
    steps = [
        (None, [], ["gen", "count", "hist", "always", "other"]),
        (edit_yaml("params.yaml", "gen", n=3), [], ["gen", "count", "hist", "always"]),
        (remove("count.txt"), ["count"], ["count"]),  # uncached: not in the run-cache
        (None, [], ["always"]),
    ]
    params = {"gen": {"n": 2}, "other": {"k": 1}}
    check(tmp_path, FEATURES, steps, ray_instance, monkeypatch, params=params)


def chain(name: str, cmd: str, deps: list[str] = ()) -> dict:
    return {"cmd": f"echo {name} >> ran.log; {cmd}", "outs": [f"{name}.txt"], "deps": list(deps)}


def test_frozen_stage_is_verified_not_run_and_cuts_off_its_upstream(
    tmp_path, ray_instance, monkeypatch
):
    stages = {
        "a": chain("a", "echo a > a.txt"),
        "f": chain("f", "cat a.txt > f.txt", ["a.txt"]),
        "g": chain("g", "cat f.txt > g.txt", ["f.txt"]),
    }
    freeze = edit_yaml("dvc.yaml", "stages", "f", frozen=True)
    change_a = edit_yaml("dvc.yaml", "stages", "a", cmd="echo a >> ran.log; echo A > a.txt")
    steps = [
        (None, [], ["a", "f", "g"]),
        (both(freeze, change_a), ["g"], []),  # g, then f, frozen: a is not even looked at
        (None, [], ["a"]),  # a is a target itself; f does not follow
        (write("f.txt", "by hand\n"), [], ["g"]),  # f's outputs verified, recorded anew
        (None, [], []),  # a no-op
        (remove("f.txt"), [], []),  # a frozen stage's missing output fails it
    ]
    check(tmp_path, stages, steps, ray_instance, monkeypatch)


def test_data_source_and_targets(tmp_path, ray_instance, monkeypatch):
    stages = {
        "gen": {
            "foreach": ["x", "y"],
            "do": {
                "cmd": "echo gen@${item} >> ran.log; cat data.txt > gen-${item}.txt",
                "deps": ["data.txt"],
                "outs": ["gen-${item}.txt"],
            },
        },
        "join": chain("join", "cat gen-x.txt gen-y.txt > join.txt", ["gen-x.txt", "gen-y.txt"]),
        "solo": chain("solo", "echo s > solo.txt"),
    }

    def add_data(repo: Path) -> None:  # a data source: data.txt.dvc, a stage without a command
        (repo / "data.txt").write_text("one\n")
        dvc(repo, "add", "-q", "data.txt")

    steps = [
        (None, ["gen@x"], ["gen@x"]),
        (None, ["dvc.yaml:join"], ["gen@y", "join"]),
        (write("data.txt", "two\n"), ["gen"], ["gen@x", "gen@y"]),  # data.txt.dvc updated
        (None, [], ["join", "solo"]),
        (None, [], []),
    ]
    check(tmp_path, stages, steps, ray_instance, monkeypatch, setup=add_data)


def test_multiline_command_stops_at_its_first_failing_line(tmp_path, ray_instance, monkeypatch):
    stages = {
        "m": {
            "cmd": ["echo m >> ran.log", "echo one > m.txt", "false", "echo three >> m.txt"],
            "outs": ["m.txt"],
        },
        "n": {"cmd": "echo n >> ran.log\nfalse\necho n > n.txt", "outs": ["n.txt"]},
    }
    steps = [(None, ["m"], ["m"]), (None, ["n"], ["n"])]
    check(tmp_path, stages, steps, ray_instance, monkeypatch)


def test_commands_start_as_dvc_starts_them(tmp_path, ray_instance, monkeypatch):
    # DVC runs `$SHELL --noprofile --norc -c CMD` for bash (dvc/stage/run.py), which reads no
    # rc file but does read BASH_ENV (a non-interactive bash always does): the runner too.
    home = tmp_path / "home"
    home.mkdir()
    for rc in (".bashrc", ".bash_profile", ".profile", ".zshenv", ".zshrc"):
        (home / rc).write_text("export RC_SEEN=yes PATH=/rc-bin:$PATH\n")
    (home / "bash_env").write_text("export BASH_ENV_SEEN=yes\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHELL", shutil.which("bash"))
    monkeypatch.setenv("BASH_ENV", str(home / "bash_env"))
    monkeypatch.setenv("ENV", str(home / ".profile"))  # sh reads it when interactive only
    # As in a command run over ssh: a plain `bash -c` then reads ~/.bashrc (Debian's bash,
    # SSH_SOURCE_BASHRC), `bash --norc -c` does not.
    monkeypatch.setenv("SSH_CLIENT", "127.0.0.1 40000 22")
    monkeypatch.delenv("SHLVL", raising=False)
    # No ${...} (DVC's interpolation) and not PATH itself (the two runs' differ).
    rc_path = "case :$PATH: in *:/rc-bin:*) p=rc-bin;; *) p=;; esac"
    probe = f'{rc_path}; echo "$0|$RC_SEEN|$BASH_ENV_SEEN|$SHELLOPTS|$p" > sh.txt'
    stages = {"sh": {"cmd": f"echo sh >> ran.log; {probe}", "outs": ["sh.txt"]}}
    check(tmp_path, stages, [(None, [], ["sh"])], ray_instance, monkeypatch)
    zero, rc_seen, bash_env_seen, options, rc_path = (
        (tmp_path / "runner" / "sh.txt").read_text().strip().split("|")
    )
    assert zero == shutil.which("bash") and "posix" not in options.split(":")
    assert not rc_seen and not rc_path
    assert bash_env_seen == "yes"  # as under DVC
