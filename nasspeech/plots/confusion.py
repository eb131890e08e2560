"""Confusion-matrix heat-map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nasspeech.plots._common import plt, save


def plot_confusion(confusion: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str],
                   path: str | Path, title: str | None = None, normalise: bool = True) -> Path:
    """Rows = true class, columns = predicted. ``normalise`` colours and labels each row by its
    share of the true class (recall on the diagonal) and adds the count; an empty row stays 0."""
    cm = np.asarray(confusion, dtype=float)
    k = len(class_names)
    if cm.ndim != 2 or cm.shape != (k, k):
        raise ValueError(f"confusion must be {k}x{k} for {k} class_names, got shape {cm.shape}")
    if k == 0:
        raise ValueError("confusion is empty: no classes")
    if np.any(cm < 0) or not np.all(np.isfinite(cm)):
        raise ValueError("confusion holds negative or non-finite counts")
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) if normalise else cm
    size = 1.2 + 0.9 * k
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else max(cm.max(), 1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="share of true class" if normalise else "samples")
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    limit = shown.max() / 2 if shown.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}\n({int(cm[i, j])})" if normalise else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > limit else "black")
    ax.set_title(title or ("confusion (row-normalised)" if normalise else "confusion"))
    return save(fig, path)
