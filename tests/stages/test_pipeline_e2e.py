"""End to end: `dvc repro` in a temporary copy of the repo on tiny synthetic data."""

from __future__ import annotations

import json
import sys

import mlflow
import pytest
import yaml
from conftest import dvc, ran, sh, tiny_params

from bench.workspace import commit, copy_repo

VARIANTS = ["thoracic_cce", "baseline", "dropout"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, request):
    """A repo copy whose params run three variants for 2 epochs on synthetic data."""
    mirror_fixture = request.getfixturevalue("mirror_module")
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(params, mirror_fixture, VARIANTS)))
    commit(repo, "tiny params")
    out = dvc(repo, "repro")
    return repo, out


def test_repro_writes_metrics_for_every_variant(tiny_repo):
    repo, out = tiny_repo
    for name in VARIANTS:
        assert f"Running stage 'train@{name}'" in out
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        for which in ("last", "best"):
            assert 0.0 <= metrics[which]["accuracy"] <= 1.0 and metrics[which]["loss"] > 0
        assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 2
        assert (repo / "models" / name / "best.keras").is_file()
        assert (repo / "plots" / "history" / f"{name}.csv").is_file()
    assert "auc" in json.loads((repo / "metrics" / "thoracic_cce.json").read_text())["best"]
    report = (repo / "reports" / "compare.md").read_text()
    assert all(f"| {name} |" in report for name in VARIANTS)
    assert (repo / "reports" / "compare.png").stat().st_size > 1000


def runs_by_name(repo):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("keras-regularization")
    by_name = {}
    for run in client.search_runs([exp.experiment_id]):
        by_name.setdefault(run.info.run_name, []).append(run)
    return client, by_name


def test_one_named_finished_run_per_variant_in_sqlite(tiny_repo):
    repo, _ = tiny_repo
    client, by_name = runs_by_name(repo)
    for name in VARIANTS:
        (run,) = by_name[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["variant"] == name
        assert "val_loss" in run.data.metrics
        history = client.get_metric_history(run.info.run_id, "val_loss")
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert len(history) == metrics["epochs_run"]
        assert "validation_loss" not in run.data.metrics  # one curve per metric
        assert not client.list_artifacts(run.info.run_id, "models")  # logged models instead
        figures = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert figures == {"plots/learning_curves.png"}
        tags = run.data.tags
        for key in ("git_commit", "config_hash", "seed", "deterministic", "tensorflow_version",
                    "keras_version", "mlflow_version", "dvc_version"):  # fmt: skip
            assert tags[key], key
        assert any(k.startswith("data_sha256.train/") for k in tags)
        # dvc repro rewrote dvc.lock; the committed sources are unchanged
        assert tags["git_dirty"] == "false" and "dirty" not in tags["git_commit"]
        # each checkpoint: a logged model of the training run, loadable, with its test
        # metrics from the evaluation's child run (beside evaluate's params)
        model_ids = json.loads((repo / "models" / name / "train.json").read_text())["model_ids"]
        for which in ("last", "best"):
            (child,) = by_name[f"{name}/{which}"]
            assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
            assert child.info.status == "FINISHED"
            assert child.data.params["evaluate.threshold"] == "0.5"
            assert child.data.metrics["test_accuracy"] == metrics[which]["accuracy"]
            assert child.data.metrics["test_loss"] == metrics[which]["loss"]
            model = client.get_logged_model(model_ids[which])
            assert model.source_run_id == run.info.run_id and model.name == which
            linked = {m.key: m.value for m in model.metrics if m.run_id == child.info.run_id}
            assert linked["test_accuracy"] == metrics[which]["accuracy"]
        assert not any(k.startswith("test_") for k in run.data.metrics)
        mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
        best = mlflow.keras.load_model(f"models:/{model_ids['best']}")
        assert best.count_params() > 0
    assert run.info.artifact_uri.startswith(f"file://{repo}/mlartifacts")
    assert not (repo / ".backup").exists() or not any((repo / ".backup").rglob("*.json"))


def test_second_repro_does_nothing_and_one_change_reruns_one_variant(tiny_repo):
    repo, _ = tiny_repo
    assert "Running stage" not in dvc(repo, "repro")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["variants"]["baseline"]["patience"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = dvc(repo, "repro")
    # crossval@ and seeds@baseline: a variant's params are theirs too (no folds, one seed)
    stages = ["compare", *(f"{s}@baseline" for s in ("crossval", "evaluate", "seeds", "train"))]
    assert ran(out) == stages


def test_rerun_from_clean_state_gives_bit_identical_metrics(tiny_repo):
    """Retraining from scratch in a plain process (no warm server, no DVC) reproduces the
    forked stage runs' metrics/*.json exactly: same commit and params, same numbers."""
    repo, _ = tiny_repo
    before = {n: (repo / "metrics" / f"{n}.json").read_bytes() for n in VARIANTS}
    for name in ("dropout", "thoracic_cce"):  # dropout masks and a thoracic split included
        sh(repo, sys.executable, "-m", "stages.train", name)
        sh(repo, sys.executable, "-m", "stages.evaluate", name)
    after = {n: (repo / "metrics" / f"{n}.json").read_bytes() for n in VARIANTS}
    assert after == before


def test_evaluate_params_change_logs_a_new_evaluation_and_keeps_the_old(tiny_repo):
    repo, _ = tiny_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["threshold"] = 0.3
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = dvc(repo, "repro")
    assert "train@" not in " ".join(ran(out))
    _, by_name = runs_by_name(repo)
    *old, new = sorted(by_name["thoracic_cce/best"], key=lambda r: r.info.start_time)
    assert old and all(r.data.params["evaluate.threshold"] == "0.5" for r in old)
    assert new.data.params["evaluate.threshold"] == "0.3"
    metrics = json.loads((repo / "metrics" / "thoracic_cce.json").read_text())
    assert new.data.metrics["test_accuracy"] == metrics["best"]["accuracy"]


def test_a_killed_training_that_dvc_serves_from_its_cache_leaves_nothing_behind(tiny_repo):
    """The state a `kill -9` leaves (a backup under the variant's key, a RUNNING run), when
    DVC then restores the stage from its cache instead of rerunning it: `make repro`'s
    tidy step ends the run KILLED and removes the backup."""
    repo, _ = tiny_repo
    client, _ = runs_by_name(repo)
    summary = json.loads((repo / "models" / "baseline" / "train.json").read_text())
    exp = client.get_experiment_by_name("keras-regularization")
    run_id = client.create_run(exp.experiment_id, run_name="baseline").info.run_id
    backup = repo / ".backup" / "baseline" / summary["key"]
    backup.mkdir(parents=True)
    state = {"meta": {"key": summary["key"], "run_id": run_id}, "history": {}, "snapshots": {}}
    (backup / "training_state.json").write_text(json.dumps(state))
    assert "Running stage" not in dvc(repo, "repro")
    out = sh(repo, sys.executable, "-m", "tools.tidy")
    assert f"tidy: removed {backup}" in out
    assert client.get_run(run_id).info.status == "KILLED"
    assert not (repo / ".backup" / "baseline").exists()


def test_seeds_repeats_trains_only_the_other_seeds_and_reports_their_spread(tiny_repo):
    """seeds.repeats 2: each variant's seed 43 is trained by seeds@V (train@V stays cached)
    as its own MLflow run; metrics, the MLflow child runs and compare.md agree on it."""
    import statistics

    repo, _ = tiny_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["seeds"]["repeats"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = dvc(repo, "repro")
    assert not any(s.startswith("train@") for s in ran(out))
    assert {f"seeds@{name}" for name in VARIANTS} <= set(ran(out))
    client, by_name = runs_by_name(repo)
    for name in VARIANTS:
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        seeds = metrics["seeds"]
        assert seeds["seeds"] == [42, 43]
        main, other = seeds["best_accuracy"]["values"]
        assert main == metrics["best"]["accuracy"]
        assert seeds["best_accuracy"]["sd"] == round(statistics.stdev([main, other]), 6)
        summary = json.loads(
            (repo / "models" / name / "seeds" / "seed43" / "train.json").read_text()
        )
        (run,) = by_name[f"{name}/seed43"]
        assert run.info.status == "FINISHED" and run.info.run_id == summary["run_id"]
        assert run.data.tags["seed"] == "43" and run.data.tags["variant"] == name
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == summary["epochs_run"]
        (child,) = by_name[f"{name}/seed43/best"]
        assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
        assert child.data.metrics["test_accuracy"] == other
    report = (repo / "reports" / "compare.md").read_text()
    assert "# Noise across seeds" in report and "| baseline | 2 |" in report
