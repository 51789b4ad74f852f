"""tools.report: the cross-DVC/MLflow comparison row of a variant."""

from __future__ import annotations

import json

from tools.report import variant_row


def test_variant_row_gap_at_last_and_best_epoch():
    files = {
        "metrics/v.json": json.dumps(
            {
                "last": {"accuracy": 0.8, "loss": 0.5},
                "best": {"accuracy": 0.82, "loss": 0.45},
                "best_epoch": 2,
                "epochs_run": 3,
            }
        ),
        "models/v/train.json": json.dumps({"train_time_s": 12.5, "run_id": "abc"}),
        "plots/history/v.csv": "epoch,loss,accuracy,val_loss,val_accuracy\n"
        "1,1.0,0.70,0.9,0.69\n2,0.8,0.80,0.7,0.78\n3,0.6,0.90,0.8,0.75\n",
    }
    row = variant_row("v", files.__getitem__)
    assert row == {
        "variant": "v",
        "last_acc": 0.8,
        "best_acc": 0.82,
        "best_epoch": 2,
        "epochs_run": 3,
        "gap_last": 0.15,
        "gap_best": 0.02,
        "train_time_s": 12.5,
        "mlflow_run_id": "abc",
    }
