"""What MLflow's system metrics cost a training (issue 24): one sample's work, as its monitor
thread does it every `mlflow.system_metrics_s` seconds, against that interval.

  python -m bench.system_metrics [--samples 200]

One sample: read CPU, memory, disk and network (psutil), check that the run still runs, and
log the figures to a SQLite store like the study's (flushed at once: the worst case). The
thread holds the GIL for at most this long per interval, so sample / interval bounds what it
takes from a training's wall time. Prints the figures and a last `system_metrics:` line.
Changes nothing in the pipeline; the store is a temporary one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from study.config.params import load_params


def sample_seconds(samples: int, store: Path) -> list[float]:
    """Wall seconds of each of `samples` samples, collected and logged for one run."""
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    uri = f"sqlite:///{store}"
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("bench")).info.run_id
    monitor = SystemMetricsMonitor(run_id, tracking_uri=uri)
    monitor.collect_metrics()  # psutil's first CPU reading has no interval to average over
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        monitor.collect_metrics()
        client.get_run(run_id)  # the monitor checks the run still runs
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    interval = load_params().mlflow.system_metrics_s
    if interval is None:
        raise SystemExit("params.yaml: mlflow.system_metrics_s is null (system metrics off)")
    with tempfile.TemporaryDirectory() as tmp:
        times = sample_seconds(args.samples, Path(tmp) / "mlflow.db")
    median, worst = statistics.median(times), max(times)
    print(f"{args.samples} samples: median {median * 1e3:.2f} ms, max {worst * 1e3:.2f} ms")
    print(
        f"system_metrics: interval_s={interval} sample_ms={median * 1e3:.2f} "
        f"share_of_training={median / interval:.4%} worst_share={worst / interval:.4%}"
    )


if __name__ == "__main__":
    main()
