"""tools/ray_repro.py's start: the Ray instance or cluster it runs stages on, and a thread for
work that overlaps that start (the MLflow store)."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Ray dedups identical log lines across workers ("[repeated 2x across cluster]"): not here.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def start_ray(settings: dict[str, Any]) -> bool:
    """Join RAY_ADDRESS's cluster, or start a local instance; True if this process started it."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return False
    ray.init(
        address="local",  # not a cluster a `ray start` left in /tmp/ray/ray_current_cluster
        num_cpus=settings["num_cpus"],
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    return True


def background(function: Any, *args: Any) -> Future:
    """function(*args) in a thread of its own; .result() waits for it and raises its error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=function.__name__)
    future = pool.submit(function, *args)
    pool.shutdown(wait=False)  # the thread ends with the call
    return future
