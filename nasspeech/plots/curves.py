"""Per-epoch training curves from the JSONL log records."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nasspeech.plots._common import plt, save


def _series(rows: Sequence[Mapping[str, Any]], word: str) -> dict[str, tuple[list, list]]:
    """Every numeric key containing ``word`` -> (epochs, values), skipping missing/None."""
    out: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if word in key and isinstance(value, numbers.Real) and not isinstance(value, bool):
                xs, ys = out.setdefault(key, ([], []))
                xs.append(row["epoch"])
                ys.append(value)
    return out


def plot_training_curves(rows: Sequence[Mapping[str, Any]], path: str | Path,
                         title: str | None = None) -> Path:
    """Two panels over ``epoch``: every key containing ``loss`` (e.g. ``loss``, ``train_loss``,
    ``val_loss``) and every key containing ``acc`` (``acc``, ``train_acc``, ``val_acc``), as
    logged per epoch; keys missing from some epochs are drawn where present."""
    if len(rows) == 0:
        raise ValueError("no training records to plot: rows is empty")
    for i, row in enumerate(rows):
        if "epoch" not in row:
            raise ValueError(f"training record {i} has no 'epoch' key: {sorted(row)}")
    losses, accs = _series(rows, "loss"), _series(rows, "acc")
    if not losses and not accs:
        raise ValueError(f"training records hold no '*loss*' or '*acc*' values "
                         f"(keys: {sorted(rows[0])})")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, series, label in ((axes[0], losses, "loss"), (axes[1], accs, "accuracy")):
        for key, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {label} logged", ha="center", va="center",
                    transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
