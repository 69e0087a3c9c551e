"""The per-epoch training curve of a train-dnn / distill exp dir (``train_curve.csv``):
its columns, and reading it by column name (without importing torch)."""

from __future__ import annotations

import csv
from pathlib import Path

from asr_distill.errors import InputError

CURVE_FILE = "train_curve.csv"
CURVE_FIELDS = ["epoch", "step", "lr", "train_loss", "train_frame_acc", "dev_loss",
                "dev_frame_acc", "seconds"]  # fmt: skip


def read_train_curve(exp_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a train-dnn / distill exp dir's ``train_curve.csv``, by column name,
    as numbers (epoch and step as ints); an :class:`InputError` naming the file if it is
    missing or malformed."""
    path = Path(exp_dir) / CURVE_FILE
    if not path.is_file():
        raise InputError("missing (not a train-dnn exp dir, or no epoch finished)", path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return [{k: (int(v) if k in ("epoch", "step") else float(v)) for k, v in r.items()}
                    for r in csv.DictReader(f)]  # fmt: skip
    except (ValueError, TypeError) as e:
        raise InputError(f"malformed train curve ({e})", path) from None


def best_dev_frame_acc(exp_dir: str | Path) -> tuple[float, int]:
    """The best dev frame accuracy (%) in an exp dir's curve and its epoch."""
    rows = read_train_curve(exp_dir)
    if not rows:
        raise InputError("no epoch in the train curve", Path(exp_dir) / CURVE_FILE)
    best = best_row(rows)
    return best["dev_frame_acc"], int(best["epoch"])


def best_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """The epoch of a train curve with the best dev frame accuracy (the first of ties)."""
    return max(rows, key=lambda r: r["dev_frame_acc"])
