"""Copy or download the raw data files, checksum-verified (the fetch stage).

Sources are tried in order: each directory in $DATA_MIRRORS, the params' local
directories, then the params' URLs. A file is accepted only when the sha256 of its
(decompressed) content matches the pinned value, whatever the source.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from study.config.errors import DataError, StageError
from study.config.paths import project_root
from study.config.sections import Fetch
from study.data.raw import decompress_if_gzip
from study.io.files import write_atomic

MIRRORS_ENV = "DATA_MIRRORS"
HOW_TO_GET = (
    "To get the data offline: `sudo apt-get install dataset-fashion-mnist` (Fashion-MNIST), "
    f"or put the files in a directory and set {MIRRORS_ENV}=/that/dir (colon-separated list)."
)


class FetchError(StageError):
    """No source delivered a file with the pinned checksum."""


def sources_for(name: str, dirs: Iterable[str], urls: Iterable[str]) -> list[str]:
    """Candidate locations of `name`: directories first (in order), then URLs."""
    return [str(Path(d) / name) for d in dirs if d] + [u.rstrip("/") + "/" + name for u in urls]


def read_source(source: str, timeout_s: float) -> bytes:
    """Read a local path or download a URL, with a progress bar for downloads."""
    if "://" not in source:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError("not found")
        return path.read_bytes()
    from tqdm import tqdm

    with urllib.request.urlopen(source, timeout=timeout_s) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc=source, file=sys.stderr) as bar:
            while chunk := resp.read(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


def fetch_file(name: str, sha256: str, sources: list[str], timeout_s: float) -> bytes:
    """Return the content of the first source whose decompressed sha256 matches."""
    tried = []
    for source in sources:
        try:
            content = decompress_if_gzip(read_source(source, timeout_s), source)
        except (OSError, DataError, ValueError) as exc:
            tried.append(f"  {source}: {exc}")
            continue
        digest = hashlib.sha256(content).hexdigest()
        if digest == sha256:
            return content
        tried.append(f"  {source}: sha256 mismatch (got {digest}, expected {sha256})")
    listing = "\n".join(tried)
    raise FetchError(f"could not fetch {name}; sources tried:\n{listing}\n{HOW_TO_GET}")


def raw_name(name: str) -> str:
    """Files are stored decompressed, so one name and one checksum fit every source."""
    return name[: -len(".gz")] if name.endswith(".gz") else name


def fetch(cfg: Fetch, mirrors: list[str], out_dir: Path) -> dict[str, Path]:
    """Fetch every file of every dataset in `cfg` into out_dir/<dataset>/."""
    dirs = [*mirrors, *cfg.local_dirs]
    written = {}
    for dataset, spec in cfg.datasets.items():
        for name, sha256 in spec.files.items():
            sources = sources_for(name, dirs, spec.urls)
            content = fetch_file(name, sha256, sources, cfg.timeout_s)
            target = out_dir / dataset / raw_name(name)
            write_atomic(target, content)
            written[f"{dataset}/{name}"] = target
    return written


def env_mirrors() -> list[str]:
    """The directories in $DATA_MIRRORS; relative ones are relative to the user's repository,
    also under `dvc exp run --temp`."""
    return [str(project_root() / d) for d in os.environ.get(MIRRORS_ENV, "").split(":") if d]
