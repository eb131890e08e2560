"""``body(relu(x))`` without keeping ``relu(x)`` for the backward pass.

In DARTS ops a ReLU feeds a convolution, which keeps its input (the ReLU's output) for its
weight gradient; the ReLU's own backward keeps it too. :func:`relu_then` computes the ReLU
with a backward that needs only ``x`` (which the graph keeps anyway: it is a node of the
cell) and lets ``body`` save a *recipe* instead of the ReLU's output: whenever ``body``'s
backward needs it, ``relu(x)`` is recomputed (one cheap pass). One activation fewer per
ReLU -> conv pair, on every device. Where several ops of the edge keep ``relu(x)`` (the
weight gradients of all its first convolutions), the recomputed tensor is shared: computed
at the first unpack, dropped after the last.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nasspeech.kernels.saved import SavedRecipe, saving_recipe


def relu_then(x: torch.Tensor, body: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``body(relu(x))``; ``relu(x)`` is recomputed in the backward pass instead of kept."""
    # threshold's backward keeps its input; relu's keeps its output
    relu_x = F.threshold(x, 0.0, 0.0)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return body(relu_x)

    # relu(x) is held only while ``body`` runs, or it would stay alive through the backward
    recipe = _Recompute(x)

    def keep_recipe(_relu_x: torch.Tensor, _outer: tuple | None) -> object:
        recipe.pending += 1
        return recipe

    return saving_recipe(relu_x, keep_recipe, body)


class _Recompute(SavedRecipe):
    """``relu(source)``, recomputed at the first unpack and kept until every op that saved it
    has unpacked it (``pending``); recomputed again if unpacked more often."""

    __slots__ = ("pending", "source", "value")

    def __init__(self, source: torch.Tensor) -> None:
        self.source = source
        self.pending = 0
        self.value: torch.Tensor | None = None

    def get(self) -> torch.Tensor:
        value = self.value if self.value is not None else torch.relu(self.source)
        self.pending -= 1
        self.value = value if self.pending > 0 else None
        return value
