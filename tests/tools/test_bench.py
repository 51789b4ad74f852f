"""bench/: the benchmark's study reduction, DVC floor, report and metrics checks (the
benchmarks themselves are too slow for the suite: `make bench-quick` runs them)."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from bench import (
    check_crossval,
    check_metrics,
    floor,
    lr_decay,
    metric_diffs,
    report,
    run,
    stage_costs,
    system_metrics,
)
from bench.workspace import copy_repo, dvc_bin, pipeline_env
from study.config.params import load_params, variant_config
from study.config.paths import REPO_ROOT
from study.config.raw import read_params
from study.config.variant import Variant


def test_seed_study_keeps_the_seed_variants_without_search_or_crossval(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {old: {cmd: x}}\n")  # main's, stale
    run.seed_study(repo, quick=True)

    params = load_params(repo)  # still a valid study
    variant_config(params, params.search.variant)  # best.yaml as search.variant_fields say
    datasets = {name: params.variant(name).dataset for name in params.variants}
    main = read_params()["variants"]
    seed = {n for n, v in main.items() if v["dataset"] in run.SEED_DATASETS}
    assert set(datasets) == seed and set(datasets.values()) == set(run.SEED_DATASETS)
    assert all(listed == [] for listed in params.crossval.variants.values())
    assert params.train.defaults.epochs == run.QUICK_EPOCHS
    assert params.variant(params.search.variant).epochs == run.QUICK_EPOCHS
    assert not (repo / "dvc.lock").exists()
    listed = subprocess.run(
        [dvc_bin(), "stage", "list", "--name-only"],
        cwd=repo,
        env=pipeline_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "search" not in listed and not [s for s in listed if s.startswith("crossval")]
    assert {f"train@{v}" for v in seed} | {"train_searched", "compare"} <= set(listed)
    committed = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True)
    assert committed.stdout == b""


def test_floor_plan_writes_each_output_and_the_files_stages_read_inside_one(built_study):
    plan = floor.touch_plan(built_study)
    variants = list(read_params(built_study)["variants"])
    assert plan["variants"] == sorted(f"variants/{name}.json" for name in variants)
    assert plan["train@baseline"] == ["models/baseline/x", "plots/history/baseline.csv"]
    assert plan["crossval_thoracic@thoracic_bce"] == ["metrics/crossval/thoracic_bce.json"]
    assert "search/best.yaml" in plan["search"]
    stages = subprocess.run(
        [dvc_bin(), "stage", "list", "--name-only"],
        cwd=built_study,
        env=pipeline_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(plan) == sorted(stages)


def test_floor_stand_in_python_writes_the_stage_dvc_runs(tmp_path):
    plan = {"variants": ["variants/a.json", "variants/b.json"], "train@a": ["models/a/x"]}
    bin_dir = floor.stand_in(plan, tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**pipeline_env(), "DVC_STAGE": "variants"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    # As DVC runs a command: through the shell, `python` from PATH, arguments ignored.
    subprocess.run(
        "python -m stages.variants --whatever", shell=True, cwd=repo, env=env, check=True
    )
    assert sorted(p.name for p in (repo / "variants").iterdir()) == ["a.json", "b.json"]
    assert (repo / "variants" / "a.json").read_text() == "{}"
    assert not (repo / "models").exists()


def test_parallel_metrics_are_compared_byte_for_byte(tmp_path):
    (tmp_path / "metrics" / "crossval").mkdir(parents=True)
    (tmp_path / "metrics" / "a.json").write_text('{"best": 0.5}\n')
    (tmp_path / "metrics" / "crossval" / "a.json").write_text("{}\n")
    assert run.metrics_bytes(tmp_path) == {"a.json": b'{"best": 0.5}\n', "crossval/a.json": b"{}\n"}


def test_report_judges_every_target_and_names_the_commit(tmp_path):
    figures = {
        "pipeline_s": 130.0,
        "bare_s": 100.0,
        "notebook_s": 200.0,
        "noop_s": 3.0,
        "floor_noop_s": 2.5,
        "parallel_s": 65.0,
        "lock_lines": 1800,
        "lock_lines_default": 4100,
        "peak_rss_mb": 1100,
    }
    figures |= {
        "ratio_vs_bare": 1.3,
        "ratio_vs_notebook": 0.65,
        "noop_vs_floor": 1.2,
        "ratio_parallel_vs_bare": 0.65,
        "ratio_parallel_vs_notebook": 0.325,
        "xla_vs_plain": 0.9,
        "tiny_train_s": 2.5,
        "probe_drift": 1.25,
    }
    runs = [{"run": "stages.train baseline", "s": 12.5, "maxrss_kb": 900 * 1024}]
    started = datetime.datetime(2026, 12, 4, 10, 0, tzinfo=datetime.UTC)
    text = report.report(figures, runs, None, started, "bench: x=1")
    results = {what: met for what, _, _, met in report.judged(figures)}
    met = [False, False, False, True, True, False, False, True, True, False]
    assert list(results.values()) == met
    assert "| `make repro` (parallel runner) / notebook | 0.33 | ≤ 0.30 | FAIL |" in text
    assert "| dvc.lock lines at the default study | 4,100 | ≤ 4,000 | FAIL |" in text
    assert "| `make repro` (parallel runner) / bare | 0.65 | ≤ 0.70 | pass |" in text
    assert "| stages.train baseline | 12.5 | 900 |" in text
    drift = (
        "| machine speed, a fixed workload at the run's end vs its start | 1.25 | ≤ 1.10 | FAIL |"
    )
    assert drift in text
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    assert f"git commit: {head.stdout.strip()}" in text
    assert "date (UTC): 2026-12-04 10:00" in text and "nproc " in text
    assert text.rstrip().endswith("bench: x=1\n```")


def test_the_speed_probe_runs_one_thread_in_well_under_a_minute():
    """bench/run.py's drift probe (timed at the hour-long run's start and end) runs here."""
    assert 0 < run.speed_probe(pipeline_env()) < 60


def test_lr_decay_holds_out_a_stratified_slice_of_train():
    y = np.repeat(np.arange(10), 30)
    x = np.arange(len(y) * 2).reshape(len(y), 2)
    (x_rest, y_rest), (x_held, y_held) = lr_decay.carve((x, y), 0.1, seed=42)
    assert len(y_held) == 30 and np.bincount(y_held).tolist() == [3] * 10  # stratified
    assert np.bincount(y_rest).tolist() == [27] * 10
    assert np.array_equal(y_held, x_held[:, 0] // 2 // 30)  # rows keep their labels
    rows = np.concatenate([x_rest[:, 0], x_held[:, 0]])
    assert sorted(rows.tolist()) == x[:, 0].tolist()  # disjoint, nothing lost
    again = lr_decay.carve((x, y), 0.1, seed=42)[1][0]
    assert np.array_equal(again, x_held)  # fixed by the seed


@pytest.mark.parametrize(
    ("policy", "schedule", "plateau"),
    [
        ("none", None, None),
        ("halve:5", {"name": "exponential_decay", "decay_steps": 50, "decay_rate": 0.5}, None),
        ("plateau:3", None, {"factor": 0.5, "patience": 3}),
    ],
)
def test_lr_decay_policy_replaces_the_rate_policy_only(policy, schedule, plateau):
    base = load_params().variant("dropout")
    base = base.model_copy(update={"reduce_lr_on_plateau": None})
    cfg = lr_decay.policy_config(base, policy, steps_per_epoch=10)
    assert isinstance(cfg, Variant)
    dump = cfg.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    assert dump.get("lr_schedule") == schedule and dump.get("reduce_lr_on_plateau") == plateau
    assert (cfg.units, cfg.optimizer, cfg.epochs) == (base.units, base.optimizer, base.epochs)


def test_check_metrics_agrees_with_the_pipeline_and_catches_a_wrong_figure(built_study, tmp_path):
    params = load_params(built_study)
    diffs = metric_diffs.Diffs()
    for name in params.study_variants():
        line = check_metrics.check_variant(built_study, name, params, diffs)
        assert line.startswith(f"{name}: test accuracy")
    lines = check_crossval.check_crossval(built_study, params, diffs)
    assert [line.split(":")[0] for line in lines] == ["crossval thoracic_bce"]
    assert diffs.failed == [] and diffs.compared > 50
    assert {"accuracy", "loss", "auc", "best_val_loss", "seeds/accuracy"} <= set(diffs.worst)
    assert "cv/logistic/auc" in diffs.worst

    # The same models beside a metrics file with one wrong figure, one beyond the tolerance.
    root = tmp_path / "repo"
    shutil.copytree(built_study / "metrics", root / "metrics")
    for name in ("models", "data", "params.yaml", "search"):
        (root / name).symlink_to(built_study / name)
    path = root / "metrics" / "thoracic_bce.json"
    doc = json.loads(path.read_text())
    doc["best"]["auc"] = round(doc["best"]["auc"] + 0.01, 6)
    doc["best_val_loss"] += 0.5
    path.write_text(json.dumps(doc))
    path = root / "metrics" / "crossval" / "thoracic_bce.json"
    doc = json.loads(path.read_text())
    doc["logistic"]["accuracy"]["sd"] += 0.001
    path.write_text(json.dumps(doc))
    diffs = metric_diffs.Diffs()
    check_metrics.check_variant(root, "thoracic_bce", params, diffs)
    check_crossval.check_crossval(root, params, diffs)
    wrong = sorted(problem.split(":")[0] for problem in diffs.failed)
    assert wrong == [
        "crossval thoracic_bce cv/logistic/accuracy/sd",
        "thoracic_bce best/auc",
        "thoracic_bce best_val_loss",
    ]


def test_check_metrics_tolerances_by_kind():
    assert metric_diffs.tolerance("best_val_loss") == metric_diffs.VAL_TOLERANCE
    assert metric_diffs.tolerance("seeds/last_loss/sd") == metric_diffs.TOLERANCE["loss"]
    assert metric_diffs.tolerance("best/accuracy") == metric_diffs.EXACT
    assert metric_diffs.tolerance("best/saturated_fraction/hidden_2") == 1e-4
    assert metric_diffs.kind("last/dead_fraction/hidden_1") == "dead_fraction"
    assert metric_diffs.kind("seeds/best_balanced_accuracy/mean") == "seeds/balanced_accuracy"


def test_system_metrics_bench_times_samples_that_reach_the_store(tmp_path):
    """Each timed sample is a real one: its CPU and memory figures are in the run."""
    import mlflow

    times = system_metrics.sample_seconds(3, tmp_path / "mlflow.db")
    assert len(times) == 3 and all(t > 0 for t in times)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    history = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert [m.step for m in history] == [0, 1, 2]


def test_stage_costs_clock_counts_each_part_without_the_parts_it_calls():
    clock = stage_costs.Clock()
    inner = clock.wrap("inner", lambda: time.sleep(0.05))

    def outer_body() -> None:
        time.sleep(0.05)
        inner()

    clock.wrap("outer", outer_body)()
    clock.wrap("inner", lambda: time.sleep(0.02))()  # the same part again adds up
    assert 0.07 <= clock.parts["inner"] < 0.1 and 0.05 <= clock.parts["outer"] < 0.08


def test_the_report_lists_each_stages_parts_and_their_total(tmp_path):
    costs = {"train@t": {"fit": 1.5, "dvc": 0.5}, "evaluate@t": {"dvc": 0.25}}
    table = report.cost_table(costs)
    assert "| part | train@t | evaluate@t |" in table
    assert table.index("| fit | 1.50 | 0.00 |") < table.index("| dvc | 0.50 | 0.25 |")
    assert "| total | 2.00 | 0.25 |" in table


def test_telemetry_is_off_for_stages_make_ci_and_this_suite():
    """DVC's analytics, MLflow's telemetry and Ray's usage stats: off in the stages'
    environment (pipeline_env), for every make target, in .ci/run and in this suite, where
    Ray itself says so (a local instance a test starts reports nothing)."""
    from ray._common.usage import usage_lib

    off = {
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env = pipeline_env()
    assert {k: env.get(k) for k in off} == off
    makefile = (REPO_ROOT / "Makefile").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    for name, value in off.items():
        assert f"export {name} := {value}\n" in makefile, name
        assert f"{name}={value}" in ci, name
    assert not usage_lib.usage_stats_enabled()
