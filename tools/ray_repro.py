"""`dvc repro` with the graph's independent stages in parallel, as Ray tasks.

  python -m tools.ray_repro [TARGET ...]   # `make repro` runs it; targets as for `dvc repro`

DVC runs one stage at a time (treeverse/dvc#755). This takes from DVC itself the plan (targets,
frozen stages), each stage's commands and what is stale (the same checks and steps as `dvc
repro`: up to date -> skipped; frozen or without a command -> outputs verified, not run;
restorable from the run-cache -> checked out, not rerun; else outputs removed and the
commands run), runs every ready command as a Ray task, and records each finished stage with
DVC's own save + commit as it finishes (which also fills the run-cache), then writes it to
dvc.lock, as `dvc repro` leaves it. Ray: a local instance on this machine's cores by default,
the cluster at RAY_ADDRESS when set (the repository at the same path on every node). A stage
that fails (its command, or DVC's checks or recording of it) stops the run as in `dvc repro`
(no stage starts; those running finish), or with -k/--keep-going only what depends on it;
Ctrl-C or SIGTERM stops every running stage; the stages that finished are in dvc.lock either
way. Settings: params.yaml `runner.parallel` (they change no result). With another DVC than
tools/dvc_graph.py was tested with, this runs plain `dvc repro` instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tools.dvc_graph import (
    LockWriter,
    descendants,
    dvc_mismatch,
    plan,
    prepare_stage,
    record,
    stage_names,
    start,
)
from tools.ray_start import background, start_ray
from tools.schedule import load_seconds, priorities, save_seconds

WAIT_S = 0.5


class Interrupted(Exception):
    pass


STOP: list[str] = []  # the signals received; checked between waits


def _request_stop(signum: int, _frame: Any) -> None:
    # Only noted: raised inside Ray's Cython wait, an exception would surface as SystemError.
    STOP.append(signal.Signals(signum).name)


def drive(
    repo: Any,
    stages: dict[str, tuple[Any, set[str]]],
    settings: dict[str, Any],
    before_first_run: Any = None,
    keep_going: bool = False,
) -> int:
    """Run the plan; return the exit code (0, 1 failed, 130 stopped). Each recorded stage is
    written to dvc.lock at once, so a killed runner loses only the stages still running.

    After a failure, as `dvc repro`: no stage starts, those running finish and are recorded;
    with keep_going (`dvc repro --keep-going`), all but the failed stage's dependants run.
    before_first_run() is called once, before the first command starts (not at all on a no-op).
    """

    needs = {name: set(deps) for name, (_, deps) in stages.items()}
    order = [stage for stage, _ in stages.values()]  # DVC's plan: that of dvc.lock's new entries
    root = Path(repo.root_dir)
    priority = priorities(needs, load_seconds(root))  # tools/schedule.py: longest path first
    took: dict[str, float] = {}  # this run's stage times, stored at the end for the next
    waiting = dict(needs)
    ready = [n for n, deps in needs.items() if not deps]
    running: dict[Any, str] = {}
    unwritten: list[Any] = []  # recorded, not yet in dvc.lock
    lock = LockWriter(order)  # each recorded stage to its dvc.lock
    failed: dict[str, str] = {}  # stage -> why
    skipped: set[str] = set()
    checked: set[str] = set()  # taken from `ready`: DVC's checks done
    cpus, stop_s = settings["stage_cpus"], settings["stop_timeout_s"]
    runnable: list[str] = []  # stale stages waiting for CPUs
    occupied: dict[Any, float] = {}  # running stage -> the CPUs it occupies
    ray: Any = None  # imported and started with the first command: a no-op needs neither
    ray_started: bool | None = None
    capacity = 1.0

    def by_priority(names: list[str]) -> None:
        names.sort(key=lambda n: -priority[n])  # stable: else DVC's order

    def done(name: str, recorded: bool) -> None:
        if recorded:
            unwritten.append(stages[name][0])
            lock.write(unwritten)
            unwritten.clear()
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps and other not in skipped:
                    ready.append(other)
        by_priority(ready)

    def fail(name: str, why: str) -> None:
        failed[name] = why
        if keep_going:
            lost = descendants(needs, name)
        else:  # as plain `dvc repro`: nothing more starts; what runs finishes and is recorded
            lost = {n for n in needs if n not in checked or n in runnable} - skipped
            ready.clear()
            runnable.clear()
        skipped.update(lost)
        print(f"ray_repro: {name} failed ({why})", file=sys.stderr, flush=True)
        if lost:
            print(f"ray_repro: not run: {', '.join(sorted(lost))}", file=sys.stderr, flush=True)

    def start_ray_once() -> None:
        nonlocal ray, ray_started, capacity
        # before_first_run (the MLflow store: ~3 s when new) overlaps Ray's start, which
        # mostly waits for Ray's processes; it is done before any stage starts.
        setup = background(before_first_run) if before_first_run else None
        import ray

        ray_started = start_ray(settings)
        if setup:
            setup.result()
        capacity = ray.cluster_resources().get("CPU", 1.0)
        # Stages that use Ray themselves (search) join this instance or cluster.
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        # ray.init installs its own SIGTERM handler (log, then exit): ours instead.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _request_stop)

    def start_what_fits() -> None:
        # A stage occupies its CPUs; one that drives Ray tasks of its own (the search's
        # trials) asks Ray for none, and the runner keeps its CPUs free for them.
        if not runnable:
            return
        from tools.ray_tasks import LOG_DIR, run_command

        while runnable:
            name = runnable[0]
            need = min(cpus.get(name, settings["cpus_per_stage"]), capacity)
            if running and sum(occupied.values()) + need > capacity:
                return
            runnable.pop(0)
            argvs, cwd, env = start(stages[name][0])
            log = str(root / LOG_DIR / f"{name}.log")
            ray_cpus = 0 if name in settings["ray_driver_stages"] else need
            ref = run_command.options(
                num_cpus=ray_cpus, max_retries=settings["max_retries"]
            ).remote(name, argvs, cwd, env, log, stop_s)
            running[ref], occupied[ref] = name, need
            print(f"ray_repro: {name}: started", flush=True)

    by_priority(ready)
    try:
        while ready or runnable or running:
            if ready:  # DVC's checks, one stage between polls: free CPUs are refilled at once
                name = ready.pop(0)
                checked.add(name)
                try:
                    action = prepare_stage(repo, stages[name][0])
                    if action == "restored":
                        record(stages[name][0])
                except Exception as err:  # this stage's, e.g. a missing dependency
                    fail(name, f"{type(err).__name__}: {err}")
                    continue
                print(f"ray_repro: {name}: {action}", flush=True)
                if action == "run":
                    runnable.append(name)
                    by_priority(runnable)
                else:
                    done(name, recorded=action != "up to date")
            if runnable and ray_started is None:
                start_ray_once()
            start_what_fits()
            if not running:
                continue
            # Short waits: Python runs signal handlers only between them. No wait while
            # stages are still to be checked.
            ended, _ = ray.wait(list(running), num_returns=1, timeout=0 if ready else WAIT_S)
            if STOP:
                raise Interrupted(STOP[0])
            if not ended:
                continue
            ref = ended[0]
            name = running.pop(ref)
            occupied.pop(ref)
            try:
                result = ray.get(ref)
                code, log = result["code"], result["log"]
            except (ray.exceptions.RayError, OSError) as err:  # task or node lost for good
                code, log = 1, f"{type(err).__name__}: {err}"
            if code:
                fail(name, f"exit {code}; log: {log}")
                continue
            if keep_going:  # the freed CPUs work while this stage is recorded (else only
                start_what_fits()  # once it is: a failed recording stops the run)
            took_s, node = result["seconds"], result["node"][:8]
            print(f"ray_repro: {name}: done in {took_s:.1f}s on node {node}", flush=True)
            took[name] = took_s
            try:
                record(stages[name][0])
            except Exception as err:  # this stage's, e.g. an output its command did not write
                fail(name, f"{type(err).__name__}: {err}")
                continue
            done(name, recorded=True)
    except (KeyboardInterrupt, Interrupted) as why:
        print(f"ray_repro: {why or 'interrupted'}: stopping {len(running)} stage(s)", flush=True)
        if running:
            for ref in running:
                ray.cancel(ref)  # KeyboardInterrupt in the task: it stops its command
            timeout = settings["stop_timeout_s"] * 2 + 5
            ray.wait(list(running), num_returns=len(running), timeout=timeout)
        return 130
    finally:
        try:
            if unwritten:  # recorded, but its write was cut short: whatever happened, again
                lock.write(unwritten)
        finally:
            if ray_started:
                ray.shutdown()
            save_seconds(root, took, stage_names(repo))
    for name, why in failed.items():
        print(f"ray_repro: failed: {name} ({why})", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help="stages (and what they depend on) to run")
    parser.add_argument(
        "-k",
        "--keep-going",
        action="store_true",
        help="after a failure, run every stage that does not depend on the failed one (as "
        "`dvc repro --keep-going`; without it, no stage starts after a failure)",
    )
    args = parser.parse_args(argv)
    problem = dvc_mismatch()
    if problem:  # DVC's internals may differ: DVC itself gives the same result, one at a time
        print(f"ray_repro: {problem}; running `dvc repro` instead", file=sys.stderr, flush=True)
        keep_going = ["--keep-going"] if args.keep_going else []
        os.execv(sys.executable, [sys.executable, "-m", "dvc", "repro", *keep_going, *args.targets])
    from dvc.exceptions import DvcException
    from dvc.repo import Repo, lock_repo

    from study.config.cli import run_stage
    from study.config.raw import read_params, require
    from study.config.sections import Parallel
    from study.config.validation import validate

    def run() -> None:
        repo = Repo()  # the repository around the working directory, as for `dvc repro`
        params = read_params(Path(repo.root_dir))
        parallel = require(params, "runner.parallel")
        settings = validate(Parallel, parallel, "runner.parallel").model_dump()
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # KeyboardInterrupt

        def create_store() -> None:
            # Before stages start at once: concurrent first use of a fresh SQLite store races
            # on its schema migration.
            if "mlflow" in params:
                from study.config.sections import Mlflow
                from study.tracking.store import setup_mlflow

                setup_mlflow(validate(Mlflow, params["mlflow"], "mlflow"))

        # Held for the whole run (DVC's repo lock): no other dvc command changes the graph,
        # the lock file or the outputs meanwhile.
        with lock_repo(repo):
            try:
                stages = plan(repo, args.targets)
            except DvcException as err:  # e.g. an unknown target: one line, as from `dvc repro`
                sys.exit(f"error: {err}")
            code = drive(repo, stages, settings, create_store, args.keep_going)
        if code:
            sys.exit(code)

    run_stage(run)


if __name__ == "__main__":
    main()
