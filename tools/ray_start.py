"""tools/ray_repro.py's start: the Ray instance or cluster it runs stages on, its output in
whole lines, and a thread for work that overlaps that start (the MLflow store)."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

# Ray dedups identical log lines across workers ("[repeated 2x across cluster]"): not here.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


class WholeLines:
    """A text stream that passes on whole lines only, each in one write under a lock the
    process's streams share. Ray's log thread prints the stages' forwarded output while the
    runner prints its own, and print() writes a line's text and its newline apart: two lines
    could mix mid-line ("... on node d3b6fde7(task pid=13135) ..."). Anything else (fileno,
    isatty, encoding) is the wrapped stream's."""

    lock = threading.RLock()  # a signal handler that prints, in the thread holding it

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending = threading.local()  # each thread's unfinished line

    def write(self, text: str) -> int:
        lines, newline, rest = (getattr(self.pending, "text", "") + text).rpartition("\n")
        self.pending.text = rest
        if newline:
            with self.lock:
                self.stream.write(lines + newline)
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        text, self.pending.text = getattr(self.pending, "text", ""), ""
        with self.lock:
            self.stream.write(text)
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def start_ray(settings: dict[str, Any]) -> bool:
    """Join RAY_ADDRESS's cluster, or start a local instance; True if this process started it.
    From here on, stdout and stderr pass on whole lines (WholeLines)."""
    import ray

    from study.search.loopback import loopback_only

    if not isinstance(sys.stdout, WholeLines):
        sys.stdout, sys.stderr = WholeLines(sys.stdout), WholeLines(sys.stderr)

    if os.environ.get("RAY_ADDRESS"):
        loopback_only(os.environ["RAY_ADDRESS"])
        ray.init(log_to_driver=True)
        return False
    loopback_only()
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
