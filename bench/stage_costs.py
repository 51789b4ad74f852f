"""Where a small stage's fixed seconds go: one training stage and one evaluate stage, part by
part (issue 33).

  python -m bench.stage_costs REPO [--variant thoracic_bce] [--repeats 3]

REPO: a repository copy after `dvc repro` (bench/run.py passes its sequential copy). Per
stage (train@V, evaluate@V), the median of --repeats runs of each layer:

- `dvc`: `dvc repro --force --single-item <stage>` (what DVC adds: its checks, the outputs'
  hashes and cache, the lock write) = its wall time minus the command's, measured in the
  same run from the stage's own clock (tools.prefork's fork log);
- `fork`: the command `python -m tools.prefork ...` (interpreter start, the request to the
  warm server, the fork) = the command's wall time minus the forked child's;
- inside the child, timed in a process of its own that first imports `runner.preload` as the
  warm server does (untimed): the repository's own imports, then the stage's main() cut into
  parts by timers around the functions below. A part's time excludes the parts it calls
  (Keras saves inside MLflow's log_model count as saves); `other` is what no timer covers.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.workspace import ForkLog, dvc_bin, pipeline_env
from study.config.paths import REPO_ROOT

# (part, module, attribute): the function is timed where its callers look it up.
TIMED = (
    ("config", "stages.{stage}", "load_params"),
    ("MLflow store setup", "stages.{stage}", "setup_mlflow"),
    ("backup tidy", "stages.{stage}", "tidy"),
    ("data load", "study.io.splits", "load_split"),
    ("data load", "stages.evaluate", "load_split"),
    ("data load", "stages.evaluate", "load_raw_x"),
    ("data load", "study.training.run", "load_raw_input"),
    ("data load", "study.training.run", "load_raw_x"),
    ("model build", "study.training.train", "build_model"),
    ("model build", "study.training.train", "raw_input_model"),
    ("tracing", "tensorflow.python.eager.polymorphic_function.tracing_compilation",
     "trace_function"),
    ("Keras saves", "keras.src.saving.saving_lib", "save_model"),
    ("Keras saves", "keras.src.saving.saving_lib", "save_weights_only"),
    ("Keras loads", "keras.src.saving.saving_lib", "load_model"),
    ("Keras loads", "keras.src.saving.saving_lib", "load_weights_only"),
    ("training state", "study.training.resume.TrainingState", "save"),
    ("fit", "study.training.train", "fit"),
    ("MLflow per-epoch logging", "mlflow.keras.callback.MlflowCallback", "on_epoch_end"),
    ("MLflow per-epoch logging", "study.tracking.keras_log.RunLogger", "on_train_begin"),
    ("MLflow runs, params, datasets", "mlflow", "start_run"),
    ("MLflow runs, params, datasets", "mlflow", "end_run"),
    ("MLflow runs, params, datasets", "mlflow", "set_tags"),
    ("MLflow runs, params, datasets", "mlflow", "log_params"),
    ("MLflow runs, params, datasets", "mlflow", "log_metrics"),
    ("MLflow runs, params, datasets", "mlflow.tracking.client.MlflowClient", "log_inputs"),
    ("MLflow runs, params, datasets", "study.training.run", "split_inputs"),
    ("MLflow runs, params, datasets", "study.evaluation.evaluate", "split_inputs"),
    ("MLflow logged models", "mlflow.keras", "log_model"),
    ("figures", "study.training.run", "learning_curves"),
    ("figures", "study.evaluation.evaluate", "confusion_matrix_figure"),
    ("figures", "mlflow", "log_figure"),
    ("scoring", "study.evaluation.evaluate", "score_model"),
    ("scoring", "study.evaluation.evaluate", "score_outputs"),
)  # fmt: skip

# Run in a fresh process in the copy (its stages/ and study/ first on sys.path; bench/ from
# this repository, which copies leave out): preload as the warm server does, then time.
CHILD = """
import json, sys
sys.path.append({root!r})
from bench.stage_costs import inside
print("stage_costs:", json.dumps(inside(sys.argv[1], sys.argv[2])))
"""


class Clock:
    """Exclusive time per part: a timed call's seconds minus those of timed calls inside it."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self._stack: list[float] = []  # time taken by nested timed calls, per open call

    def wrap(self, part: str, function: Any) -> Any:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self._stack.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                total = time.perf_counter() - start
                nested = self._stack.pop()
                self.parts[part] = self.parts.get(part, 0.0) + total - nested
                if self._stack:
                    self._stack[-1] += total

        return timed


def patch(clock: Clock, stage: str) -> None:
    """Put the clock's timers around TIMED's functions (those that exist for this stage)."""
    for part, module_name, attribute in TIMED:
        module_name = module_name.format(stage=stage)
        owner = resolve(module_name)
        if owner is None or not hasattr(owner, attribute):
            continue
        setattr(owner, attribute, clock.wrap(part, getattr(owner, attribute)))


def resolve(dotted: str) -> Any:
    """A module, or a class in a module (`pkg.mod.Class`); None if neither imports."""
    try:
        return importlib.import_module(dotted)
    except ImportError:
        module, _, name = dotted.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name, None)
        except ImportError:
            return None


def inside(stage: str, variant: str) -> dict[str, float]:
    """In this process: the warm server's preloads (untimed), the repository's imports, and
    the stage's main() by part."""
    from study.config.raw import read_params
    from tools.forkserver import preload_modules

    preload_modules(read_params()["runner"]["preload"])
    start = time.perf_counter()
    module = importlib.import_module(f"stages.{stage}")
    parts = {"repository imports": time.perf_counter() - start}
    clock = Clock()
    patch(clock, stage)
    sys.argv = [stage, variant]
    start = time.perf_counter()
    module.main()
    total = time.perf_counter() - start
    parts |= clock.parts
    parts["other"] = total - sum(clock.parts.values())
    return {k: round(v, 3) for k, v in parts.items()}


def timed_run(cmd: list[str], repo: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=pipeline_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(
            f"stage_costs: {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return seconds, proc.stdout + proc.stderr


def layers(repo: Path, stage: str, variant: str) -> dict[str, float]:
    """One run of each layer: dvc's, the fork's, and the child's parts."""
    forks = ForkLog()
    forks.new_runs()
    target = f"{stage}@{variant}"
    dvc_s, _ = timed_run([dvc_bin(), "repro", "--force", "--single-item", target], repo)
    (under_dvc,) = forks.new_runs()
    command = [sys.executable, "-m", "tools.prefork", f"stages.{stage}", variant]
    command_s, _ = timed_run(command, repo)
    (alone,) = forks.new_runs()
    child = CHILD.format(root=str(REPO_ROOT))
    _, out = timed_run([sys.executable, "-c", child, stage, variant], repo)
    parts = json.loads(out.split("stage_costs:", 1)[1].splitlines()[0])
    fork = command_s - alone["s"]
    return {"dvc": dvc_s - under_dvc["s"] - fork, "fork": fork, **parts}


def stage_costs(repo: Path, variant: str, repeats: int) -> dict[str, dict[str, float]]:
    """Per stage (train@variant, evaluate@variant), the median seconds of each part over
    `repeats` runs; printed, largest first."""
    result = {}
    for stage in ("train", "evaluate"):
        runs = [layers(repo, stage, variant) for _ in range(repeats)]
        keys = list(dict.fromkeys(k for run in runs for k in run))
        medians = {k: round(statistics.median(run.get(k, 0.0) for run in runs), 3) for k in keys}
        result[f"{stage}@{variant}"] = medians
        print(f"{stage}@{variant}: {sum(medians.values()):.2f} s")
        for part, seconds in sorted(medians.items(), key=lambda kv: -kv[1]):
            print(f"  {part}: {seconds:.3f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--variant", default="thoracic_bce")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("stage_costs:", json.dumps(stage_costs(args.repo, args.variant, args.repeats)))


if __name__ == "__main__":
    main()
