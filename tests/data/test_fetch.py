"""study.data.fetch and stages/fetch.py: ordered sources, checksum on decompressed content, one
listing error, $DATA_MIRRORS relative to the user's repository."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import threading
from functools import partial

import pytest
from stage_checkout import run_module, stage_repo

from study.config.errors import StageError
from study.config.paths import REPO_ROOT
from study.config.sections import Fetch
from study.config.validation import validate
from study.data.fetch import FetchError, env_mirrors, fetch, fetch_file, raw_name, sources_for


def test_sources_order_dirs_then_urls():
    got = sources_for("a.gz", ["/m1", "", "/m2"], ["https://h/x/", "http://h2/y"])
    assert got == ["/m1/a.gz", "/m2/a.gz", "https://h/x/a.gz", "http://h2/y/a.gz"]


def mirror_fetch(params: dict, mirror: dict, **fields) -> dict:
    """params.yaml's fetch section reading only the mirror's files (no local dir, no URL)."""
    cfg = params["fetch"]
    cfg["local_dirs"] = []
    for spec in cfg["datasets"].values():
        spec["urls"] = []
        spec["files"] = {n: mirror["sha256"][n] for n in spec["files"]}
    return {**cfg, **fields}


def test_fetch_from_mirror_decompresses_and_verifies(mirror, params, tmp_path):
    cfg = validate(Fetch, mirror_fetch(params, mirror), "fetch")
    written = fetch(cfg, [str(mirror["dir"])], tmp_path / "raw")
    target = tmp_path / "raw" / "fashion_mnist" / "train-images-idx3-ubyte"
    assert written["fashion_mnist/train-images-idx3-ubyte.gz"] == target
    assert sorted(written) == sorted(
        f"{d}/{n}" for d, spec in cfg.datasets.items() for n in spec.files
    )
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == mirror["sha256"]["train-images-idx3-ubyte.gz"]
    csv = tmp_path / "raw" / "thoracic" / "ThoraricSurgery.csv"
    assert csv.read_bytes() == (mirror["dir"] / "ThoraricSurgery.csv").read_bytes()
    assert csv.stat().st_mode & 0o777 == 0o644  # shared data files, not mkstemp's 0600


def test_local_dirs_come_after_the_mirrors(mirror, params, tmp_path):
    """fetch.local_dirs are tried after $DATA_MIRRORS: a mirror's file wins; local_dirs
    serve when no mirror has the file."""
    cfg = validate(Fetch, mirror_fetch(params, mirror, local_dirs=[str(mirror["dir"])]), "fetch")
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    assert fetch(cfg, [str(empty)], tmp_path / "raw")  # every file from local_dirs
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    (bad / "ThoraricSurgery.csv").write_text("tampered\n")  # tried first, rejected
    written = fetch(cfg, [str(bad)], tmp_path / "raw2")
    assert (
        written["thoracic/ThoraricSurgery.csv"].read_bytes()
        == (mirror["dir"] / "ThoraricSurgery.csv").read_bytes()
    )


def test_checksum_mismatch_skips_to_next_source(tmp_path):
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    (bad / "f.gz").write_bytes(gzip.compress(b"tampered"))
    (good / "f.gz").write_bytes(gzip.compress(b"payload", mtime=0))
    sha = hashlib.sha256(b"payload").hexdigest()
    assert fetch_file("f.gz", sha, [str(bad / "f.gz"), str(good / "f.gz")], 5) == b"payload"


def test_all_sources_failing_lists_each_with_reason(tmp_path):
    (tmp_path / "f.gz").write_bytes(b"\x1f\x8b garbage")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "f.gz").write_bytes(b"plain but wrong")
    sources = [str(tmp_path / "missing" / "f.gz"), str(tmp_path / "f.gz"), str(tmp_path / "g/f.gz")]
    with pytest.raises(FetchError) as err:
        fetch_file("f.gz", "0" * 64, [*sources, "http://127.0.0.1:9/f.gz"], 2)
    assert isinstance(err.value, StageError)  # a stage reports it without a traceback
    text = str(err.value)
    assert "could not fetch f.gz" in text
    assert f"{sources[0]}: not found" in text
    assert f"{sources[1]}: {sources[1]}: corrupt gzip data" in text
    assert f"{sources[2]}: sha256 mismatch" in text
    assert "http://127.0.0.1:9/f.gz: " in text
    assert "apt-get install dataset-fashion-mnist" in text and "DATA_MIRRORS" in text


def test_download_over_http_with_pinned_checksum(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    (served / "f.csv").write_bytes(b"1,2,3\n")
    (served / "g.gz").write_bytes(gzip.compress(b"4,5\n"))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        sha = hashlib.sha256(b"1,2,3\n").hexdigest()
        assert fetch_file("f.csv", sha, [f"{base}/f.csv"], 5) == b"1,2,3\n"
        with pytest.raises(FetchError, match="sha256 mismatch"):
            fetch_file("f.csv", "f" * 64, [f"{base}/f.csv"], 5)  # any scheme: checksum or nothing
        sha = hashlib.sha256(b"4,5\n").hexdigest()  # downloads are decompressed too
        assert fetch_file("g.gz", sha, sources_for("g.gz", [], [base + "/"]), 5) == b"4,5\n"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_raw_name_drops_gz():
    assert raw_name("t10k-labels-idx1-ubyte.gz") == "t10k-labels-idx1-ubyte"
    assert raw_name("ThoraricSurgery.csv") == "ThoraricSurgery.csv"


def test_env_mirrors_are_relative_to_the_users_repository(monkeypatch, tmp_path):
    """DVC_ROOT during `dvc exp run --temp`: the user's repository, not the temporary copy."""
    monkeypatch.setenv("DATA_MIRRORS", "rel/dir::/abs/dir")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert env_mirrors() == [str(tmp_path / "rel/dir"), "/abs/dir"]
    monkeypatch.delenv("DVC_ROOT")
    assert env_mirrors() == [str(REPO_ROOT / "rel/dir"), "/abs/dir"]
    monkeypatch.setenv("DATA_MIRRORS", "")
    assert env_mirrors() == []


def test_the_fetch_stage_reads_relative_mirrors_from_its_repository(mirror, params, tmp_path):
    """`python -m stages.fetch`: $DATA_MIRRORS relative to the repository (not the working
    directory), files into data/raw/<dataset>/, decompressed; a failure is one error, exit 1."""
    repo = stage_repo(tmp_path / "repo", {**params, "fetch": mirror_fetch(params, mirror)})
    shutil.copytree(mirror["dir"], repo / "mirror")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_module(repo, "stages.fetch", cwd=elsewhere, DATA_MIRRORS="mirror")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted(
        f"fetch: {dataset}/{name} -> data/raw/{dataset}/{raw_name(name)}"
        for dataset, spec in params["fetch"]["datasets"].items()
        for name in spec["files"]
    )
    raw = repo / "data" / "raw"
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file()) == [
        "fashion_mnist/t10k-images-idx3-ubyte",
        "fashion_mnist/t10k-labels-idx1-ubyte",
        "fashion_mnist/train-images-idx3-ubyte",
        "fashion_mnist/train-labels-idx1-ubyte",
        "thoracic/ThoraricSurgery.csv",
    ]
    assert not list(elsewhere.iterdir())

    (repo / "mirror" / "ThoraricSurgery.csv").write_text("tampered\n")
    shutil.rmtree(raw)
    proc = run_module(repo, "stages.fetch", cwd=elsewhere, DATA_MIRRORS="mirror")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: could not fetch ThoraricSurgery.csv; sources tried:\n")
    assert f"  {repo / 'mirror' / 'ThoraricSurgery.csv'}: sha256 mismatch" in proc.stderr
