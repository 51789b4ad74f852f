"""`dvc plots show` with the template `make vega` writes (tools.vega_template) draws every plot
in headless Chromium with the network blocked; DVC's default page, whose scripts come from a
CDN, draws none there (so this test can fail)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.workspace import dvc_bin, pipeline_env
from study.config.paths import REPO_ROOT
from tools import vega_template

# Plots of three templates: DVC's linear and confusion, and the repository's own one.
DVC_YAML = """
plots:
  - loss:
      template: linear
      x: epoch
      y:
        history.csv: [loss, val_loss]
  - confusion:
      template: confusion
      x: actual
      y:
        confusion.csv: predicted
  - last_vs_best:
      template: bar_horizontal_grouped
      x: variant
      y:
        compare.csv: [last_accuracy, best_accuracy]
"""
PLOTS = 3
DATA = {
    "history.csv": "epoch,loss,val_loss\n1,0.9,1.0\n2,0.6,0.8\n3,0.4,0.7\n",
    "confusion.csv": "actual,predicted\n0,0\n0,1\n1,1\n1,1\n",
    "compare.csv": "variant,last_accuracy,best_accuracy\nbaseline,0.84,0.86\ndropout,0.85,0.85\n",
}

# Every request refused: sent to a proxy on the unused discard port (loopback requests too:
# '<-loopback>' drops Chromium's implicit bypass), and no host name resolves.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000", "--dump-dom",
]  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A DVC repository (no git) with the plots above and the repository's plot templates."""
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    for name, text in DATA.items():
        (repo / name).write_text(text)
    return repo


def offline_template(dest: Path) -> Path:
    try:
        dest.write_text(vega_template.template(), encoding="utf8")
    except FileNotFoundError as e:  # the npm packages are not installed
        pytest.fail(str(e))
    return dest


def run_all(commands: list[list[str]], **kwargs) -> list[str]:
    """Each command's stdout; they run side by side (DVC and Chromium take a second each)."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(command, **pipes, **kwargs) for command in commands]
    outs = [p.communicate(timeout=120) for p in procs]
    for command, proc, (_, err) in zip(commands, procs, outs, strict=True):
        assert proc.returncode == 0, f"{command[:3]}: {err[-2000:]}"
    return [out for out, _ in outs]


class DrawnPlots(HTMLParser):
    """Ids of the divs that hold a chart Vega drew: its <canvas> or <svg> of class "marks"
    with a non-zero size (an empty spec leaves a 0x0 canvas)."""

    def __init__(self, dom: str):
        super().__init__()
        self.divs: list[str | None] = []
        self.drawn: set[str] = set()
        self.feed(dom)  # script text is data to the parser: its "<svg" strings don't count

    def handle_starttag(self, tag, attrs):
        attr = dict(attrs)
        if tag == "div":
            self.divs.append(attr.get("id"))
        marks = tag in ("canvas", "svg") and "marks" in (attr.get("class") or "").split()
        if marks and float(attr.get("width") or 0) > 0 and float(attr.get("height") or 0) > 0:
            self.drawn.update(i for i in self.divs if i)

    def handle_endtag(self, tag):
        if tag == "div":  # Chromium's DOM dump closes every div
            self.divs.pop()


def test_plots_render_offline_only_with_the_local_scripts(repo, tmp_path):
    template = offline_template(tmp_path / "offline.html")
    dvc = [dvc_bin(), "plots", "show"]
    run_all([[*dvc, "-o", "offline", "--html-template", str(template)], [*dvc, "-o", "cdn"]],
            cwd=repo, env=pipeline_env())  # fmt: skip

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    pages = [repo / "offline" / "index.html", repo / "cdn" / "index.html"]
    doms = run_all([[chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / f'profile{i}'}",
                     page.as_uri()] for i, page in enumerate(pages)])  # fmt: skip

    offline, cdn = (re.findall(r"vegaEmbed\('#([^']+)'", page.read_text()) for page in pages)
    assert len(offline) == len(cdn) == PLOTS, (offline, cdn)
    # The offline page loads no script from anywhere; the default one from the CDN.
    assert not re.search(r"<script[^>]+src=", pages[0].read_text())
    assert re.search(r"<script src=\"https://", pages[1].read_text())
    assert DrawnPlots(doms[0]).drawn >= set(offline), "not every plot drew offline"
    assert not DrawnPlots(doms[1]).drawn, "the CDN page drew plots with the network blocked"
