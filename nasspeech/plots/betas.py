"""PC-DARTS edge weights (each edge's share of its node, softmax of beta) over the search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nasspeech.plots._common import plt, save

BetaHistory = Sequence[Mapping[str, Sequence[float]]]


def _stack(history: BetaHistory) -> dict[str, np.ndarray]:
    """edge set -> array (epochs, edges); checks every epoch has the same sets and lengths."""
    if len(history) == 0:
        raise ValueError("beta history is empty: no epoch was recorded")
    keys = list(history[0])
    if not keys:
        raise ValueError("beta history epoch 1 holds no edge set")
    out = {}
    for key in keys:
        rows = []
        for e, record in enumerate(history, start=1):
            if set(record) != set(keys):
                raise ValueError(f"beta history epoch {e} has edge sets {sorted(record)}, "
                                 f"epoch 1 has {sorted(keys)}")
            w = np.asarray(record[key], dtype=float)
            if w.ndim != 1 or w.size == 0 or (rows and w.shape != rows[0].shape):
                raise ValueError(f"edge set {key!r} in epoch {e} must be a list of "
                                 f"{rows[0].size if rows else 'one or more'} edge weights, "
                                 f"got shape {w.shape}")
            rows.append(w)
        out[key] = np.stack(rows)
    return out


def plot_beta_history(history: BetaHistory, path: str | Path,
                      edge_labels: Mapping[str, Sequence[str]] | None = None,
                      title: str | None = None) -> Path:
    """One heat map per alpha set with edge normalisation (y = edge, x = epoch): each edge's
    share of its node. ``history`` is one dict per epoch: set -> [weight per edge];
    ``edge_labels`` maps set -> edge names (``edge 0..`` without it)."""
    stacked = _stack(history)
    fig, axes = plt.subplots(len(stacked), 1, squeeze=False,
                             figsize=(8, sum(max(2.0, 0.3 * w.shape[1] + 1.0)
                                             for w in stacked.values())))
    for (key, w), (ax,) in zip(stacked.items(), axes):
        epochs, edges = w.shape
        labels = list(edge_labels[key]) if edge_labels and key in edge_labels else \
            [f"edge {i}" for i in range(edges)]
        if len(labels) != edges:
            raise ValueError(f"edge set {key!r} has {edges} edges but edge_labels[{key!r}] "
                             f"lists {len(labels)}")
        im = ax.imshow(w.T, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0.0,
                       vmax=1.0, extent=(0.5, epochs + 0.5, edges - 0.5, -0.5))
        ax.set_yticks(range(edges), labels=labels, fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_title(f"{key}: edge share of its node (softmax of beta)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
