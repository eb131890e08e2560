"""The search step, built once from a run config's ``search:`` section: the weight optimiser
(SGD), the :class:`~nasspeech.search.architect.Architect` and the step that uses both. The
workflow (``nasspeech search``) and the memory estimator build it here alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nasspeech.config import SearchConfig
from nasspeech.search.architect import Architect, Batch
from nasspeech.search.loop import StepResult, search_step


@dataclass
class SearchRecipe:
    """A supernet with its two optimisers and the search step's settings."""

    model: nn.Module
    w_optimizer: torch.optim.Optimizer
    architect: Architect
    config: SearchConfig

    def step(self, train_batch: Batch, val_batch: Batch, lr: float | None = None,
             update_alphas: bool = True) -> StepResult:
        """One search step (alpha step, then weight step) at ``lr`` (default: ``search.lr``)."""
        return search_step(
            self.model, self.architect, self.w_optimizer, train_batch, val_batch,
            self.config.lr if lr is None else lr, self.config.grad_clip, update_alphas,
        )

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The alpha optimiser (Adam) and the weight optimiser (SGD)."""
        return [self.architect.optimizer, self.w_optimizer]


def build_search(search: SearchConfig, model: nn.Module, foreach: bool | None = None
                 ) -> SearchRecipe:
    """SGD over ``model``'s weights and an Architect over its alphas, as ``search`` says.

    ``foreach`` sets both optimisers' ``foreach`` flag (``None``: PyTorch decides from the
    parameters' device; the memory estimator sets ``True``, CUDA's default, on fake tensors).
    """
    w_optimizer = torch.optim.SGD(
        model.weight_parameters(), lr=search.lr, momentum=search.momentum,
        weight_decay=search.weight_decay, foreach=foreach,
    )
    architect = Architect(
        model, order=search.order, lr=search.alpha_lr, betas=tuple(search.alpha_betas),
        weight_decay=search.alpha_weight_decay, w_momentum=search.momentum,
        w_weight_decay=search.weight_decay, hvp=search.hvp, precision=search.precision,
    )
    if foreach is not None:
        for group in architect.optimizer.param_groups:
            group["foreach"] = foreach
    return SearchRecipe(model, w_optimizer, architect, search)
