"""Shared fixtures: tiny synthetic data files, params like params.yaml, the tiny study (built
once per test session and copied by the tests that run DVC or MLflow on it). The warm stage
runner's stand-in stage and its helpers are in tests/prefork_probe.py.

The tests mirror the packages: tests/config, tests/data, tests/training, tests/tracking,
tests/evaluation, tests/reports, tests/search for study/, tests/stages for the pipeline end to
end, tests/tools for the runners. Test module names are unique across them (pytest's default
import mode puts each test's folder on sys.path; this folder too, for `from conftest import`
and the helper modules here: prefork_probe, dvc_projects, processes, inprocess)."""

from __future__ import annotations

import copy
import gzip
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock

from bench.workspace import commit, copy_repo, dvc_bin, pipeline_env
from study.config.raw import read_params
from tools.prefork import stop_servers

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The Ctrl-C tests need SIGINT handled as under a terminal. `make test &` from a script starts
# with it ignored, which exec keeps; a handler is reset at exec: the children get the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# The suite runs on two xdist workers, a module at a time each (pyproject.toml: -n 2 --dist
# loadfile). More did not pay on 2 cores (`python -m pytest` on one machine: -n 2 437-480 s in
# three runs, -n 3 401-522 s in five, -n 4 512 s). A worker takes the next module in this
# order, the rest in file order after them: the slowest first (those over ~20 s), so that small
# ones are left to even out the end. The first module builds the tiny study (~1 min); the next
# two do not need it, so the other worker does not sit waiting for it (xdist hands a worker two
# modules at first); test_docs (the longest, ~2 min) comes next: left to the end, it ended last.
SLOWEST_FIRST = (
    "test_team_e2e", "test_search_cluster", "test_runner_failures", "test_docs",
    "test_runner_cluster", "test_pipeline_e2e", "test_ray_repro", "test_resume", "test_run",
    "test_runner_resume", "test_runner_matches_dvc", "test_team_server", "test_search",
    "test_xla", "test_ray_auth", "test_fitting", "test_train",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: a module's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def tf_threads():
    """TF's thread pools as the train stage sets them (train.threads), before any test starts
    TF's runtime: they cannot change afterwards, and stage code sets them again."""
    import tensorflow as tf

    threads = read_params()["train"]["threads"]
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def warm_servers(tmp_path_factory):
    """Stage runs in this session share private warm servers (tools/prefork), stopped at the end."""
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("run"))
    yield
    stop_servers()


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def fashion_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake Fashion-MNIST: class k lights up row band k of a noisy image."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for i, k in enumerate(labels):
        images[i, 2 * k + 4 : 2 * k + 7, :] = 220
    return images.astype(np.uint8), labels.astype(np.uint8)


def tiny_fashion(n: int = 240):
    """(train, val) of scaled synthetic images: 200 train, the rest validation."""
    x, y = fashion_arrays(n, 3)
    x = x.astype(np.float32) / 255
    return (x[:200], y[:200].astype(np.int64)), (x[200:], y[200:].astype(np.int64))


def thoracic_rows(n: int, seed: int) -> np.ndarray:
    """Fake ThoracicSurgery rows: 17 numeric features, ~15% positive labels."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 17)).round(2)
    labels = (np.arange(n) % 7 == 0).astype(int)
    features[:, 3] += labels * 1.5  # some signal
    return np.column_stack([features, labels])


def write_csv(path: Path, rows: np.ndarray) -> None:
    lines = [",".join(f"{v:g}" for v in row[:-1]) + f",{int(row[-1])}" for row in rows]
    path.write_text("\n".join(lines) + "\n")


def make_mirror(root: Path) -> dict:
    """A directory holding tiny gzip IDX files and a CSV, plus their content sha256."""
    root.mkdir()
    train = fashion_arrays(300, 0)
    test = fashion_arrays(100, 1)
    contents = {
        "train-images-idx3-ubyte.gz": idx_bytes(train[0]),
        "train-labels-idx1-ubyte.gz": idx_bytes(train[1]),
        "t10k-images-idx3-ubyte.gz": idx_bytes(test[0]),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(test[1]),
    }
    sums = {}
    for name, content in contents.items():
        (root / name).write_bytes(gzip.compress(content))
        sums[name] = hashlib.sha256(content).hexdigest()
    write_csv(root / "ThoraricSurgery.csv", thoracic_rows(140, 2))
    sums["ThoraricSurgery.csv"] = hashlib.sha256(
        (root / "ThoraricSurgery.csv").read_bytes()
    ).hexdigest()
    return {"dir": root, "sha256": sums}


@pytest.fixture
def mirror(tmp_path: Path) -> dict:
    return make_mirror(tmp_path / "mirror")


@pytest.fixture(scope="module")
def mirror_module(tmp_path_factory) -> dict:
    return make_mirror(tmp_path_factory.mktemp("data") / "mirror")


@pytest.fixture
def params() -> dict:
    """A fresh copy of the repository's params.yaml, as plain data (study.config.params
    validates it: `validate(Params, params, "")`)."""
    return copy.deepcopy(read_params())


def tiny_params(
    params: dict, mirror: dict, variants: list[str], epochs: int = 2, search_trials: int = 2
) -> dict:
    """params.yaml reduced to a fast study on the mirror's synthetic files."""
    p = copy.deepcopy(params)
    p["fetch"]["local_dirs"] = [str(mirror["dir"])]
    for spec in p["fetch"]["datasets"].values():
        spec["urls"] = []
        spec["files"] = {name: mirror["sha256"][name] for name in spec["files"]}
    # A backup every epoch: tests kill trainings whose epochs take ~0.1 s after a given epoch.
    p["train"]["backup_every_s"] = 0
    p["train"]["defaults"]["epochs"] = epochs
    p["train"]["defaults"]["steps_per_execution"] = 4
    p["variants"] = {name: p["variants"][name] for name in variants}
    p["crossval"]["variants"] = {
        dataset: [name for name in listed if name in variants]
        for dataset, listed in p["crossval"]["variants"].items()
    }
    # The search stage: a few trials of a few epochs, one at a time (deterministic with the
    # seed); val_loss, which ties less than the accuracy of a tiny validation split. Two
    # trials unless a test looks at the search itself (tests/search/test_search.py: five).
    p["search"].update(
        trials=search_trials, startup_trials=2, max_epochs=epochs, grace_period=1,
        reduction_factor=2, concurrent=1, time_limit_s=120, metric="val_loss",
        variant_fields={"epochs": epochs + 1},  # the searched variant trains longer
    )  # fmt: skip
    return p


# The tiny study: every stage kind (a cross-validated thoracic variant, a Fashion-MNIST variant
# with two seeds, the search and its searched variant) on the synthetic mirror.
STUDY_VARIANTS = ["thoracic_bce", "baseline", "dropout"]


def build_study(dest: Path) -> Path:
    """A committed repo copy whose tiny study `dvc repro` has run once (results committed)."""
    mirror = make_mirror(dest / "mirror")
    repo = copy_repo(dest / "repo")
    params = tiny_params(read_params(repo), mirror, STUDY_VARIANTS)
    params["variants"]["dropout"]["seeds"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # main's dvc.lock records the real study's 56 stages: DVC keeps entries of stages that no
    # longer exist and parses and rewrites the whole file after every stage (and every
    # `dvc status` parses it), which made each `dvc exp run` on the tiny study ~5 CPU-s slower
    (repo / "dvc.lock").unlink()
    commit(repo, "tiny study")
    dvc(repo, "repro")
    commit(repo, "tiny study results")
    return repo


@pytest.fixture(scope="session")
def built_study(tmp_path_factory, worker_id) -> Path:
    """The tiny study, built once for the whole session: by the first xdist worker that asks,
    under a lock in the directory the workers share; the others wait for it."""
    if worker_id == "master":  # not under xdist
        return build_study(tmp_path_factory.mktemp("study"))
    shared = tmp_path_factory.getbasetemp().parent / "study"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "repo" / "reports" / "compare.md").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            build_study(shared)
    return shared / "repo"


def study_copy(built: Path, dest: Path) -> Path:
    """A private copy of the built study (its git history, DVC cache, MLflow store and
    outputs) at dest. Runs logged in the copy keep their artifacts in the original's
    mlartifacts/ (the store's experiment points there), under their own run ids."""
    shutil.copytree(built, dest, symlinks=True)
    return dest


@pytest.fixture
def study(built_study, tmp_path) -> Path:
    """A private copy of the tiny study, for a test that changes it."""
    return study_copy(built_study, tmp_path / "repo")


# Running the pipeline's commands in a repo copy (end-to-end tests).
def sh(repo: Path, *cmd: str, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    proc = subprocess.run(
        list(cmd),
        cwd=repo,
        env=env or pipeline_env(DATA_MIRRORS=""),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def dvc(repo: Path, *args: str, **kw) -> str:
    return sh(repo, dvc_bin(), *args, **kw)


def ran(out: str) -> list[str]:
    return sorted(line.split("'")[1] for line in out.splitlines() if "Running stage" in line)
