"""PC-DARTS edge weights (each edge's share of its node, softmax of beta) over the search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nasspeech.plots._common import plt, save
from nasspeech.plots.alphas import stack_history

BetaHistory = Sequence[Mapping[str, Sequence[float]]]


def plot_beta_history(history: BetaHistory, path: str | Path,
                      edge_labels: Mapping[str, Sequence[str]] | None = None,
                      title: str | None = None) -> Path:
    """One heat map per alpha set with edge normalisation (y = edge, x = epoch): each edge's
    share of its node. ``history`` is one dict per epoch: set -> [weight per edge];
    ``edge_labels`` maps set -> edge names (``edge 0..`` without it)."""
    stacked = stack_history(history, "beta", 1, "list of edge weights")
    fig, axes = plt.subplots(len(stacked), 1, squeeze=False,
                             figsize=(8, sum(max(2.0, 0.3 * w.shape[1] + 1.0)
                                             for w in stacked.values())))
    for (key, w), (ax,) in zip(stacked.items(), axes):
        epochs, edges = w.shape
        labels = list(edge_labels[key]) if edge_labels and key in edge_labels else \
            [f"edge {i}" for i in range(edges)]
        if len(labels) != edges:
            raise ValueError(f"alpha set {key!r} has {edges} edges but edge_labels[{key!r}] "
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
