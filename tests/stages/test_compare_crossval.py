"""The compare stage reads cross-validation results only for the variants crossval.variants
lists: a metrics/crossval/<variant>.json left behind by a variant taken off that list feeds
neither the report nor the champion."""

from __future__ import annotations

import yaml
from inprocess import run_main

import stages.compare
from study.config.paths import METRICS_DIR, PARAMS_FILE, REPORTS_DIR


def test_a_stale_crossval_file_is_ignored(study, monkeypatch, capsys):
    stale = study / METRICS_DIR / "crossval" / "thoracic_bce.json"
    assert stale.is_file()  # the tiny study cross-validates thoracic_bce
    params = yaml.safe_load((study / PARAMS_FILE).read_text())
    params["crossval"]["variants"]["thoracic"] = []  # taken off the list; its file stays
    (study / PARAMS_FILE).write_text(yaml.safe_dump(params, sort_keys=False))
    run_main(stages.compare, study, monkeypatch)
    capsys.readouterr()
    report = (study / REPORTS_DIR / "compare.md").read_text()
    assert "# Cross-validated" not in report and "cv_auc_mean" not in report
    # thoracic is no longer cross-validated, and it has no variant without hidden layers to
    # stand as reference: no champion, not one chosen on the stale file's AUC.
    assert "| champion | thoracic_bce |" not in report
    assert "- thoracic: no champion: no reference to beat (not cross-validated" in report
