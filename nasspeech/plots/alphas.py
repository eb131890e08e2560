"""Architecture weights (softmax of the alphas) over the search epochs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasspeech.plots._common import plt, save

AlphaHistory = Sequence[Mapping[str, Sequence[Sequence[float]]]]


def stack_history(history: Sequence[Mapping[str, Any]], what: str = "alpha", ndim: int = 2,
                  form: str = "[edges][ops] matrix") -> dict[str, np.ndarray]:
    """alpha set -> array (epochs, edges, ops) (``ndim`` 2; the beta history: 1, (epochs,
    edges)); checks every epoch has the same sets/shapes."""
    if len(history) == 0:
        raise ValueError(f"{what} history is empty: no epoch was recorded")
    keys = list(history[0])
    if not keys:
        raise ValueError(f"{what} history epoch 1 holds no alpha set")
    out = {}
    for key in keys:
        epochs = []
        for e, record in enumerate(history, start=1):
            if set(record) != set(keys):
                raise ValueError(f"{what} history epoch {e} has alpha sets {sorted(record)}, "
                                 f"epoch 1 has {sorted(keys)}")
            w = np.asarray(record[key], dtype=float)
            if w.ndim != ndim or w.size == 0:
                raise ValueError(f"alpha set {key!r} in epoch {e} must be a non-empty "
                                 f"{form}, got shape {w.shape}")
            if epochs and w.shape != epochs[0].shape:
                raise ValueError(f"alpha set {key!r} changes shape from {epochs[0].shape} "
                                 f"to {w.shape} in epoch {e}")
            epochs.append(w)
        out[key] = np.stack(epochs)
    return out


def _names(key: str, n_ops: int, op_names: Mapping[str, Sequence[str]] | None) -> list[str]:
    if op_names is None:
        return [f"op {i}" for i in range(n_ops)]
    if key not in op_names:
        raise ValueError(f"op_names has no entry for alpha set {key!r} "
                         f"(it has {sorted(op_names)})")
    names = list(op_names[key])
    if len(names) != n_ops:
        raise ValueError(f"alpha set {key!r} has {n_ops} ops per edge but op_names[{key!r}] "
                         f"lists {len(names)}: {names}")
    return names


def plot_alpha_history(history: AlphaHistory, path: str | Path,
                       op_names: Mapping[str, Sequence[str]] | None = None,
                       title: str | None = None) -> Path:
    """One row per alpha set (e.g. ``cnn.normal``, ``cnn.reduce``, ``seq.cell``).

    ``history`` is one dict per epoch: alpha set -> softmax weights [edge][op]. Left panel:
    the mean weight of each op over the edges (y = op, x = epoch). Right panel: the final
    epoch's weight per edge (y = op, x = edge). ``op_names`` maps alpha set -> op names
    (``op 0..`` without it)."""
    stacked = stack_history(history)
    rows = [(key, w, _names(key, w.shape[2], op_names)) for key, w in stacked.items()]
    height = sum(max(2.0, 0.32 * len(n) + 1.0) for _, _, n in rows)
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, height), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    for (key, w, names), (left, right) in zip(rows, axes):
        epochs, edges, n_ops = w.shape
        mean = w.mean(axis=1).T  # (ops, epochs)
        im = left.imshow(mean, aspect="auto", cmap="viridis", interpolation="nearest",
                         extent=(0.5, epochs + 0.5, n_ops - 0.5, -0.5))
        left.set_yticks(range(n_ops), labels=names, fontsize=8)
        left.set_xlabel("epoch")
        left.set_title(f"{key}: mean weight over {edges} edges", fontsize=9)
        fig.colorbar(im, ax=left, fraction=0.03, pad=0.02)
        im = right.imshow(w[-1].T, aspect="auto", cmap="viridis", interpolation="nearest")
        right.set_yticks(range(n_ops), labels=names, fontsize=8)
        right.set_xticks(range(edges))
        right.set_xlabel("edge")
        right.set_title(f"{key}: per-edge weights, epoch {epochs}", fontsize=9)
        fig.colorbar(im, ax=right, fraction=0.04, pad=0.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
