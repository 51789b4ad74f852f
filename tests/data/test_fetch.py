"""stages.fetch: ordered sources, checksum on decompressed content, one listing error."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from functools import partial

import pytest

from stages.fetch import FetchError, fetch, fetch_file, raw_name, sources_for


def test_sources_order_dirs_then_urls():
    got = sources_for("a.gz", ["/m1", "/m2"], ["https://h/x/", "http://h2/y"])
    assert got == ["/m1/a.gz", "/m2/a.gz", "https://h/x/a.gz", "http://h2/y/a.gz"]


def test_fetch_from_mirror_decompresses_and_verifies(mirror, params, tmp_path):
    cfg = params["fetch"]
    cfg["local_dirs"] = []
    for spec in cfg["datasets"].values():
        spec["urls"] = []
        spec["files"] = {n: mirror["sha256"][n] for n in spec["files"]}
    written = fetch(cfg, [str(mirror["dir"])], tmp_path / "raw")
    target = tmp_path / "raw" / "fashion_mnist" / "train-images-idx3-ubyte"
    assert written["fashion_mnist/train-images-idx3-ubyte.gz"] == target
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == mirror["sha256"]["train-images-idx3-ubyte.gz"]
    assert (tmp_path / "raw" / "thoracic" / "ThoraricSurgery.csv").is_file()


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
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/f.csv"
        sha = hashlib.sha256(b"1,2,3\n").hexdigest()
        assert fetch_file("f.csv", sha, [url], 5) == b"1,2,3\n"
        with pytest.raises(FetchError, match="sha256 mismatch"):
            fetch_file("f.csv", "f" * 64, [url], 5)  # any scheme: checksum or nothing
    finally:
        server.shutdown()
        server.server_close()


def test_raw_name_drops_gz():
    assert raw_name("t10k-labels-idx1-ubyte.gz") == "t10k-labels-idx1-ubyte"
    assert raw_name("ThoraricSurgery.csv") == "ThoraricSurgery.csv"
