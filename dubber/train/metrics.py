"""The run's ``metrics.csv``: one row per train step and per validation, kept across resumes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from dubber.train.corpus import atomic_write

METRICS = "metrics.csv"


class MetricsCSV:
    """``RUN/metrics.csv``: one row per logged train step and per validation.

    Columns: step, epoch, split, seconds, then the loss/figure names in first-seen order.
    On resume, rows after the checkpoint's step are dropped (they will be redone).
    """

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.columns = ["step", "epoch", "split", "seconds"]
        for r in self.rows:
            for k in r:
                if k not in self.columns:
                    self.columns.append(k)
        self._flush()

    def add(
        self, step: int, epoch: int, split: str, seconds: float, values: dict[str, float]
    ) -> None:
        row = {"step": step, "epoch": epoch, "split": split, "seconds": round(seconds, 2)}
        row.update({k: f"{v:.6g}" for k, v in values.items()})
        for k in row:
            if k not in self.columns:
                self.columns.append(k)
        self.rows.append(row)

    def _flush(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.columns)
                w.writeheader()
                w.writerows(self.rows)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, write)

    def flush(self) -> None:
        self._flush()
