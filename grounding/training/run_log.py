"""The run folder's ``log.csv``: one row per epoch, rebuilt from ``metrics/epoch_NNN.json`` after every epoch.

Rebuilding (instead of appending) means a resumed run never repeats or loses a row, whatever the moment it was
killed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from grounding.eval.metrics import moment_metric_keys
from grounding.files import write_text_atomic

LOSS_PARTS = ("total", "span", "boundary", "inside", "contrastive", "ranking")


def csv_columns(splits: list[str]) -> list[str]:
    """log.csv's header: epoch, step, lr, seconds, loss parts, then ``<split>/<metric>`` for every split."""
    columns = ["epoch", "step", "lr", "seconds"] + [f"loss_{part}" for part in LOSS_PARTS]
    for split in splits:
        columns += [f"{split}/{metric}" for metric in moment_metric_keys()]
    return columns


def write_csv_log(run_dir: Path, splits: list[str]) -> None:
    """Rebuild ``log.csv`` from ``metrics/epoch_*.json`` (so a resumed run never repeats or loses a row)."""
    rows = []
    for path in sorted((run_dir / "metrics").glob("epoch_*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        row: dict[str, Any] = {
            "epoch": record["epoch"], "step": record["step"], "lr": record["lr"], "seconds": record["seconds"],
        }
        row.update({f"loss_{part}": value for part, value in record["loss"].items()})
        for split, metrics in record.get("metrics", {}).items():
            row.update({f"{split}/{metric}": value for metric, value in metrics.items()})
        rows.append(row)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(splits), extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / "log.csv", buffer.getvalue())


