"""compare: one table and one chart of every variant's last vs best test metrics, and each
dataset's registered model pointed at its champion and challenger (chosen on validation:
study/reports/champions.py).

Usage: python -m stages.compare
Reads metrics/ (every variant's, and the cross-validated ones' metrics/crossval/) and the
trainings' summaries models/<variant>/train.json (their logged models); writes
reports/compare.md, reports/compare.csv (DVC plot data) and reports/compare.png, logs them to
an MLflow run named "compare", and registers each chosen variant's best checkpoint as a
version (tagged with its commit, experiment, variant, checkpoint and validation figure). Only
a workspace run (`dvc repro`) moves the aliases; under `dvc exp run` (DVC_EXP_NAME set) the
versions are registered, tagged with the experiment's name, and no alias moves.
"""

from __future__ import annotations

import json

from study.config.cli import run_stage
from study.config.params import load_params
from study.config.paths import METRICS_DIR, MODELS_DIR, REPO_ROOT, REPORTS_DIR
from study.io.files import write_atomic
from study.reports import champions
from study.reports.chart import plot_chart
from study.reports.compare import collect, read_metrics, to_markdown, write_plot_csv
from study.reports.crossval import read_crossval, references
from study.tracking.registry import describe_aliases, model_name, register_chosen
from study.tracking.store import setup_mlflow
from study.tracking.tags import project_run_id, provenance_tags
from study.training.backups import tidy


def main() -> None:
    params = load_params()
    variants = params.study_variants()  # the listed variants, then the searched one
    metrics = read_metrics(variants, REPO_ROOT / METRICS_DIR)
    # Only the variants crossval.variants lists: a removed one's stale file is no result.
    cross_validated = [v for listed in params.crossval.variants.values() for v in listed]
    crossval = read_crossval(cross_validated, REPO_ROOT / METRICS_DIR)
    trained = {
        v: json.loads((REPO_ROOT / MODELS_DIR / v / "train.json").read_text()) for v in variants
    }
    frame = collect(metrics, crossval, {v: t["train_time_s"] for v, t in trained.items()})
    # The softmax regressions (no hidden layer) as trained (models/<v>/train.json's config):
    # a dataset's reference where it is not cross-validated.
    linear = [v for v in params.variants if trained[v]["config"]["depth"] == 0]
    choices = champions.choose(
        metrics, crossval, list(params.variants), params.search.variant, linear
    )
    names = {c.dataset: model_name(params.mlflow.experiment, c.dataset) for c in choices}
    report = to_markdown(frame, references(crossval)) + "\n".join(
        champions.to_markdown(choices, names)
    )
    out = REPO_ROOT / REPORTS_DIR
    write_atomic(out / "compare.md", (report.rstrip("\n") + "\n").encode())
    write_plot_csv(frame, out / "compare.csv")
    plot_chart(frame, out / "compare.png", params.compare.chart_dpi)

    mlflow = setup_mlflow(params.mlflow)
    client = mlflow.MlflowClient()
    tidy(client, set(variants), REPO_ROOT / MODELS_DIR)
    parent = project_run_id()  # under `mlflow run`: a child of the project's run
    with mlflow.start_run(run_name="compare", parent_run_id=parent, tags={"stage": "compare"}):
        for name in ("compare.md", "compare.csv", "compare.png"):
            mlflow.log_artifact(str(out / name))
    for choice in choices:  # the best checkpoint of each chosen variant
        name = names[choice.dataset]
        versions = register_chosen(client, name, choice.rows(), trained, provenance_tags())
        print(f"compare: {name}: {describe_aliases(client, name, versions)}")
    print(report)


if __name__ == "__main__":
    run_stage(main)
