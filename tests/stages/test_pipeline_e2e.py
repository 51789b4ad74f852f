"""End to end: the tiny study (tests/conftest.py's built_study: `dvc repro` on synthetic data)
as it was built, and `dvc repro` in copies of it after an edit and after a killed training."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml
from conftest import STUDY_VARIANTS, dvc, ran, sh
from processes import is_fork_server, working_in

from bench.workspace import dvc_bin, pipeline_env
from study.config.params import load_params

pytestmark = pytest.mark.slow
EXPERIMENT = "keras-regularization"
MLFLOW = str(Path(sys.executable).parent / "mlflow")


def store(repo) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def runs_by_name(repo) -> dict[str, list]:
    client = store(repo)
    exp = client.get_experiment_by_name(EXPERIMENT)
    by_name: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id]):
        by_name.setdefault(run.info.run_name, []).append(run)
    return by_name


def metrics_of(repo, name: str) -> dict:
    return json.loads((repo / "metrics" / f"{name}.json").read_text())


def set_params(repo, change) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    change(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_the_study_has_every_variants_results(built_study):
    repo = built_study
    params = load_params(repo)
    epochs = params.train.defaults.epochs
    for name in params.study_variants():  # the listed variants, then the searched one
        metrics = metrics_of(repo, name)
        for which in ("last", "best"):
            assert 0.0 <= metrics[which]["accuracy"] <= 1.0 and metrics[which]["loss"] > 0
        assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= epochs + 1  # searched: +1
        assert metrics["dataset"] == params.variant(name).dataset
        assert (repo / "models" / name / "best.keras").is_file()
        assert (repo / "plots" / "history" / f"{name}.csv").is_file()
        assert (repo / "plots" / "confusion" / f"{name}.csv").is_file()
        trained = json.loads((repo / "models" / name / "train.json").read_text())["config"]
        if name in params.variants:  # what the variants stage merged, as trained
            assert json.loads((repo / "variants" / f"{name}.json").read_text()) == trained
    assert "auc" in metrics_of(repo, "thoracic_bce")["best"]
    # dropout has seeds: 2: seed 43 trained into models/dropout/seed43, both scored
    seeds = metrics_of(repo, "dropout")["seeds"]
    assert seeds["seeds"] == [42, 43]
    first, other = seeds["best_accuracy"]["values"]
    assert first == metrics_of(repo, "dropout")["best"]["accuracy"]
    assert seeds["best_accuracy"]["sd"] == round(statistics.stdev([first, other]), 6)
    assert json.loads((repo / "models/dropout/seed43/train.json").read_text())["seed"] == 43
    assert "seeds" not in metrics_of(repo, "baseline")
    # only the listed variant is cross-validated, beside the references
    assert sorted(p.name for p in (repo / "metrics" / "crossval").iterdir()) == [
        "thoracic_bce.json"
    ]
    crossval = json.loads((repo / "metrics" / "crossval" / "thoracic_bce.json").read_text())
    assert {"variant", "logistic", "majority"} <= set(crossval)
    report = (repo / "reports" / "compare.md").read_text()
    assert all(f"| {name} |" in report for name in params.study_variants())
    assert "# Noise across seeds" in report and "| dropout | 2 |" in report
    assert "# Cross-validated" in report
    assert (repo / "reports" / "compare.png").stat().st_size > 1000
    # every training finished: no backup left (only empty directories)
    assert not [p for p in (repo / ".backup").rglob("*") if p.is_file()]


def test_one_finished_mlflow_run_per_training_with_its_evaluations(built_study):
    repo = built_study
    client, by_name = store(repo), runs_by_name(repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = {out["path"]: out["md5"] for out in lock["stages"]["prepare"]["outs"]}
    trainings = [(name, name, "models/" + name) for name in [*STUDY_VARIANTS, "searched"]]
    trainings.append(("dropout", "dropout/seed43", "models/dropout/seed43"))
    for variant, run_name, out in trainings:
        (run,) = by_name[run_name]
        summary = json.loads((repo / out / "train.json").read_text())
        assert run.info.status == "FINISHED" and run.info.run_id == summary["run_id"]
        tags = run.data.tags
        assert tags["variant"] == variant and tags["seed"] == str(summary["seed"])
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert len(history) == summary["epochs_run"]
        assert "validation_loss" not in run.data.metrics  # one curve per metric
        assert not client.list_artifacts(run.info.run_id, "models")  # logged models instead
        figures = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert figures == {"plots/learning_curves.png"}
        for key in ("git_commit", "config_hash", "deterministic", "tensorflow_version",
                    "keras_version", "mlflow_version", "dvc_version"):  # fmt: skip
            assert tags[key], key
        assert any(k.startswith("data_md5.train/") for k in tags)
        # dvc repro rewrote dvc.lock; the committed sources are unchanged
        assert tags["git_dirty"] == "false" and "dirty" not in tags["git_commit"]
        assert not any(k.startswith("test_") for k in run.data.metrics)
        dataset = summary["dataset"]
        assert inputs_of(run) == {
            f"{dataset}/train": ("training", md5[f"data/prepared/train/{dataset}.npz"]),
            f"{dataset}/val": ("validation", md5[f"data/prepared/val/{dataset}.npz"]),
        }
        # each checkpoint: a logged model of the training run, with its test metrics from
        # the evaluation's child run (beside evaluate's params)
        metrics = metrics_of(repo, variant)
        seed_index = metrics.get("seeds", {"seeds": [summary["seed"]]})["seeds"].index(
            summary["seed"]
        )
        for which in ("last", "best"):
            (child,) = by_name[f"{run_name}/{which}"]
            assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
            assert child.info.status == "FINISHED"
            assert child.data.params["evaluate.threshold"] == "0.5"
            test_file = f"data/prepared/test/{dataset}.npz"
            assert inputs_of(child) == {f"{dataset}/test": ("evaluation", md5[test_file])}
            expected = (
                metrics[which]["accuracy"]
                if "seeds" not in metrics
                else metrics["seeds"][f"{which}_accuracy"]["values"][seed_index]
            )
            assert child.data.metrics["test_accuracy"] == expected
            model = client.get_logged_model(summary["model_ids"][which])
            assert model.source_run_id == run.info.run_id and model.name == which
            linked = {m.key: m.value for m in model.metrics if m.run_id == child.info.run_id}
            assert linked["test_accuracy"] == expected
    assert run.info.artifact_uri.startswith(f"file://{repo}/mlartifacts")
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    try:
        best_id = json.loads((repo / "models/baseline/train.json").read_text())["model_ids"]["best"]
        assert mlflow.keras.load_model(f"models:/{best_id}").count_params() > 0
    finally:
        mlflow.set_tracking_uri(None)


def killed_training_debris(repo, variant: str) -> tuple[str, object]:
    """What `kill -9` of train@variant leaves once DVC restored the stage from its cache: a
    RUNNING run and the training's backup under the key of the finished training."""
    client = store(repo)
    summary = json.loads((repo / "models" / variant / "train.json").read_text())
    exp = client.get_experiment_by_name(EXPERIMENT)
    run_id = client.create_run(exp.experiment_id, run_name=variant).info.run_id
    backup = repo / ".backup" / variant / f"seed{summary['seed']}" / summary["key"]
    backup.mkdir(parents=True)
    (backup / "lock").touch()  # its claim's (study/training/backups.py)
    meta = {"key": summary["key"], "run_id": run_id}
    state = {"meta": meta, "history": {}, "snapshots": {}}
    (backup / "training_state.json").write_text(json.dumps(state))
    return run_id, backup


def inputs_of(run) -> dict[str, tuple[str, str]]:
    """A run's MLflow datasets: name -> (context, digest)."""
    return {
        d.dataset.name: (next(t.value for t in d.tags if t.key == "mlflow.data.context"),
                         d.dataset.digest)
        for d in run.inputs.dataset_inputs
    }  # fmt: skip


def running_runs(repo) -> list[str]:
    return [r.info.run_name for runs in runs_by_name(repo).values() for r in runs
            if r.info.status == "RUNNING"]  # fmt: skip


def test_an_evaluate_change_reruns_only_the_evaluations_which_tidy_a_killed_training(study):
    """evaluate.* edited: every evaluation reruns (no training, no cross-validation, no
    search), each logging new child runs beside the old ones; the first stage that runs
    ends a killed training's RUNNING run KILLED and removes its backup."""
    run_id, backup = killed_training_debris(study, "baseline")
    set_params(study, lambda p: p["evaluate"].update(batch_size=512))
    out = dvc(study, "repro")
    evaluations = [f"evaluate@{name}" for name in STUDY_VARIANTS] + ["evaluate_searched"]
    # compare reruns only if a metric changed with the batch size (float sums' order)
    assert set(ran(out)) - {"compare"} == set(evaluations)
    assert store(study).get_run(run_id).info.status == "KILLED"
    assert not backup.exists() and not running_runs(study)
    *old, new = sorted(runs_by_name(study)["thoracic_bce/best"], key=lambda r: r.info.start_time)
    assert old and all(r.data.params["evaluate.batch_size"] == "1024" for r in old)
    assert new.data.params["evaluate.batch_size"] == "512"
    assert (
        new.data.metrics["test_accuracy"] == metrics_of(study, "thoracic_bce")["best"]["accuracy"]
    )
    # Result-neutral settings are no stage's dependency: their edit leaves every stage fresh.
    set_params(
        study,
        lambda p: (
            p["train"].update(threads=2, backup_every_s=5),
            p["mlflow"].update(system_metrics_s=5),
        ),
    )
    assert json.loads(dvc(study, "status", "--json")) == {}
    # The searched variant's own fields are its training's, not the search's.
    set_params(study, lambda p: p["search"]["variant_fields"].update(epochs=7))
    assert set(json.loads(dvc(study, "status", "--json"))) == {"train_searched"}
    # Which edit makes which stage stale (a param's own stages; `dvc status` names the
    # stages whose own deps changed): the search's and a variant's are theirs only.
    set_params(
        study,
        lambda p: (p["search"].update(trials=3), p["variants"]["baseline"].update(patience=3)),
    )
    stale = json.loads(dvc(study, "status", "--json"))
    # variants (then train@baseline, once variants/baseline.json changed) and compare (the
    # list of variants): `variants`; the search: `search`
    assert set(stale) == {"search", "variants", "compare", "train_searched"}, stale


def test_a_killed_training_dvc_restores_from_its_cache_is_tidied_by_the_next_stage(study):
    """kill -9 of `dvc repro` while train@dropout trains: `dvc repro` then restores the stage
    from DVC's run-cache, running nothing of ours, so its RUNNING run and backup stay
    (`make repro` runs tools.tidy for that); the next stage that runs (after an edit of
    baseline: the variants stage, train@baseline) ends the run KILLED and removes the
    backup."""
    before = (study / "models/dropout/train.json").read_text()
    cmd = [dvc_bin(), "repro", "-f", "-s", "train@dropout"]
    proc = subprocess.Popen(
        cmd, cwd=study, env=pipeline_env(DATA_MIRRORS=""), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("train dropout: epoch 1/"):
            break
    else:
        pytest.fail("no epoch line:\n" + "".join(lines))
    working = working_in(study)  # dvc, tools.prefork and the stage it forked
    # Held mid-training: under load, the training could end, and remove its backup, before
    # the kill of its caller reached it. (SIGKILL ends a stopped process.)
    for held in working:
        with suppress(psutil.NoSuchProcess):
            if not is_fork_server(held):
                held.suspend()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the forked stage dies with its caller (tools/forkserver.py kills it)
    _, alive = psutil.wait_procs(working, timeout=60)
    assert not alive, [p.pid for p in alive]
    (backup,) = (study / ".backup" / "dropout" / "seed42").iterdir()
    assert running_runs(study) == ["dropout"]

    out = dvc(study, "repro")
    assert ran(out) == [] and "'train@dropout' is cached" in out, out
    assert (study / "models/dropout/train.json").read_text() == before
    assert backup.is_dir() and running_runs(study) == ["dropout"]  # nothing of ours ran

    # The next `dvc repro`, as MLproject's main entry point runs it (`mlflow run .`, which
    # exports MLFLOW_RUN_ID): each stage's runs nest under the project's run.
    set_params(study, lambda p: p["variants"]["baseline"].update(patience=3))
    uri = f"sqlite:///{study / 'mlflow.db'}"
    out = sh(study, MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name",
             EXPERIMENT, env=pipeline_env(DATA_MIRRORS="", MLFLOW_TRACKING_URI=uri))  # fmt: skip
    assert ran(out) == ["compare", "evaluate@baseline", "train@baseline", "variants"], out
    assert not backup.exists() and not running_runs(study)
    by_name = runs_by_name(study)
    killed = [r for r in by_name["dropout"] if r.info.status == "KILLED"]
    assert len(killed) == 1 and backup.name == json.loads(before)["key"]
    (project,) = [r for runs in by_name.values() for r in runs
                  if r.data.tags.get("mlflow.project.entryPoint") == "main"]  # fmt: skip
    assert project.info.status == "FINISHED"
    for name in ("baseline", "compare"):
        newest = max(by_name[name], key=lambda r: r.info.start_time)
        assert newest.data.tags["mlflow.parentRunId"] == project.info.run_id, name
    assert newest.info.status == "FINISHED"
