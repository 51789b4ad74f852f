"""The benchmark's targets and its report (reports/bench.md): each figure judged against its
limit, and the report of a run with its date, commit and machine (bench/run.py writes it).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from study.config.paths import REPO_ROOT, REPORTS_DIR

REPORT = REPO_ROOT / REPORTS_DIR / "bench.md"
MIB_PER_GIB = 1024
# (figure, limit, what it measures): each must be <= its limit. Issue 33's targets.
TARGETS = (
    ("lock_lines_default", 4000, "dvc.lock lines at the default study"),
    ("ratio_vs_bare", 1.10, "sequential `dvc repro` / bare"),
    ("ratio_vs_notebook", 0.45, "sequential `dvc repro` / notebook"),
    ("noop_vs_floor", 1.5, "no-op `dvc repro` / DVC's own no-op (floor)"),
    ("ratio_parallel_vs_bare", 0.7, "`make repro` (parallel runner) / bare"),
    ("ratio_parallel_vs_notebook", 0.30, "`make repro` (parallel runner) / notebook"),
    ("xla_vs_plain", 0.80, "bare with `train.jit_compile: true` / bare without"),
    ("tiny_train_s", 3.0, "the smallest training stage's wall time (s)"),
    ("peak_rss_mb", 2 * MIB_PER_GIB, "peak RSS of the pipeline's processes (MiB)"),
    # not a target of the code: the ratios above hold only if the machine kept its speed
    ("probe_drift", 1.10, "machine speed, a fixed workload at the run's end vs its start"),
)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def machine() -> dict[str, Any]:
    """nproc (the CPUs this process may use), the CPU model and the total memory."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gib": round(kib / 1024**2, 1),
    }


def judged(figures: dict[str, float]) -> list[tuple[str, float, float, bool]]:
    """(what, value, limit, met) per target."""
    return [(what, figures[key], limit, figures[key] <= limit) for key, limit, what in TARGETS]


def report(
    figures: dict[str, float],
    runs: list[dict[str, Any]],
    quick_epochs: int | None,
    started: datetime.datetime,
    bench_line: str,
    costs: dict[str, dict[str, float]] | None = None,
) -> str:
    """reports/bench.md: when, which code, which machine, the figures and the targets;
    quick_epochs: the epochs of a --quick run (None: a full run); costs: the parts of a
    small training and evaluate stage (bench/stage_costs.py)."""
    changed = git("status", "--porcelain")
    dirty = (
        f"dirty ({len(changed.splitlines())} files changed or untracked)" if changed else "clean"
    )
    host = machine()
    lines = [
        "# Benchmark (`make bench`, bench/run.py)",
        "",
        f"- date (UTC): {started:%Y-%m-%d %H:%M} to {datetime.datetime.now(datetime.UTC):%H:%M}",
        f"- git commit: {git('rev-parse', 'HEAD')} (working tree {dirty})",
        f"- machine: nproc {host['nproc']}, {host['cpu']}, {host['memory_gib']} GiB of memory",
        "- study: the seed study (thoracic and Fashion-MNIST variants) and the searched variant"
        " (main's search/best.yaml), no search, no cross-validation"
        + (
            f"; --quick: {quick_epochs} epochs each, not comparable with the targets"
            if quick_epochs is not None
            else ""
        ),
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {fmt(v)} |" for k, v in figures.items()),
        "",
        "| target | value | limit | result |",
        "|---|---|---|---|",
        *(
            f"| {what} | {fmt(value)} | ≤ {fmt(limit)} | {'pass' if met else 'FAIL'} |"
            for what, value, limit, met in judged(figures)
        ),
        "",
        "Stage processes of the sequential `dvc repro` (forks of the warm server):",
        "",
        "| stage | wall s | peak RSS MiB |",
        "|---|---|---|",
        *(f"| {r['run']} | {r['s']:.1f} | {r['maxrss_kb'] // 1024} |" for r in runs),
        "",
        *cost_table(costs or {}),
        "```",
        bench_line,
        "```",
        "",
    ]
    return "\n".join(lines)


def cost_table(costs: dict[str, dict[str, float]]) -> list[str]:
    """Each stage's parts, largest first, in seconds (medians; bench/stage_costs.py)."""
    if not costs:
        return []
    stages = list(costs)
    parts = sorted(
        {p for c in costs.values() for p in c}, key=lambda p: -costs[stages[0]].get(p, 0)
    )
    return [
        "Where a small stage's seconds go (`python -m bench.stage_costs`, medians of its runs;"
        " each part without the parts it calls; `dvc`: DVC's own bookkeeping, `fork`: the"
        " command's start and the warm server's fork):",
        "",
        f"| part | {' | '.join(stages)} |",
        "|---|" + "---|" * len(stages),
        *(f"| {p} | {' | '.join(f'{costs[s].get(p, 0.0):.2f}' for s in stages)} |" for p in parts),
        f"| total | {' | '.join(f'{sum(costs[s].values()):.2f}' for s in stages)} |",
        "",
    ]


def fmt(value: float) -> str:
    """A figure as the report and the target lines show it: whole numbers with thousands
    separators, others to two decimals."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.2f}"
