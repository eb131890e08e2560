"""Figures of a run (matplotlib, Agg backend); each function saves a PNG and returns its Path.

- :func:`plot_confusion` — confusion matrix (rows true, columns predicted).
- :func:`plot_alpha_history` — softmax alpha weights per alpha set over the search epochs.
- :func:`plot_beta_history` — PC-DARTS edge weights (softmax of beta per node) over the epochs.
- :func:`plot_scope_scatter` — search scopes, mean UA vs its std, marker area ∝ params (Fig. 7).
- :func:`plot_training_curves` — per-epoch loss / accuracy from the log records.
"""

from nasspeech.plots.alphas import plot_alpha_history
from nasspeech.plots.betas import plot_beta_history
from nasspeech.plots.confusion import plot_confusion
from nasspeech.plots.curves import plot_training_curves
from nasspeech.plots.scatter import plot_scope_scatter

__all__ = ["plot_alpha_history", "plot_beta_history", "plot_confusion", "plot_scope_scatter",
           "plot_training_curves"]
