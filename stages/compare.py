"""compare: one table and one chart of every variant's last vs best test metrics.

Usage: python -m stages.compare
Reads metrics/ (every variant's, and the cross-validated ones' metrics/crossval/); writes
reports/compare.md, reports/compare.csv (DVC plot data) and reports/compare.png, and logs them
to an MLflow run named "compare" (study/reports/).
"""

from __future__ import annotations

from study.config.cli import run_stage
from study.config.params import load_params
from study.config.paths import METRICS_DIR, MODELS_DIR, REPO_ROOT, REPORTS_DIR
from study.data.formats import write_atomic
from study.reports.chart import plot_chart
from study.reports.compare import collect, read_metrics, to_markdown, write_plot_csv
from study.reports.crossval import read_crossval, references
from study.tracking.store import setup_mlflow
from study.tracking.tags import project_run_id
from study.training.backups import tidy


def main() -> None:
    params = load_params()
    variants = params.study_variants()  # the listed variants, then the searched one
    metrics = read_metrics(variants, REPO_ROOT / METRICS_DIR)
    crossval = read_crossval(variants, REPO_ROOT / METRICS_DIR)
    frame = collect(metrics, crossval)
    out = REPO_ROOT / REPORTS_DIR
    write_atomic(out / "compare.md", to_markdown(frame, references(crossval)).encode())
    write_plot_csv(frame, out / "compare.csv")
    plot_chart(frame, out / "compare.png", params.compare.chart_dpi)

    mlflow = setup_mlflow(params.mlflow)
    tidy(mlflow.MlflowClient(), set(variants), REPO_ROOT / MODELS_DIR)
    parent = project_run_id()  # under `mlflow run`: a child of the project's run
    with mlflow.start_run(run_name="compare", parent_run_id=parent, tags={"stage": "compare"}):
        for name in ("compare.md", "compare.csv", "compare.png"):
            mlflow.log_artifact(str(out / name))
    print((out / "compare.md").read_text())


if __name__ == "__main__":
    run_stage(main)
