"""The search step, built once from a run config's ``search:`` section: the weight optimiser
(SGD), the :class:`~nasspeech.search.architect.Architect` and the step that uses both. The
workflow (``nasspeech search``) and the memory estimator build it here alike. Given a
:class:`~nasspeech.search.distributed.Group`, the step is data-parallel: each process takes its
slice of the global batches and the gradients are summed over the processes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.config import SearchConfig
from nasspeech.search.architect import Architect, Batch
from nasspeech.search.distributed import Group
from nasspeech.search.loop import StepResult, search_step
from nasspeech.search.sync_batchnorm import convert_sync_batchnorm


@dataclass
class SearchRecipe:
    """A supernet with its two optimisers and the search step's settings."""

    model: nn.Module
    w_optimizer: torch.optim.Optimizer
    architect: Architect
    config: SearchConfig
    group: Group | None = None

    def step(self, train_batch: Batch, val_batch: Batch, lr: float | None = None,
             update_alphas: bool = True) -> StepResult:
        """One search step (alpha step, then weight step) at ``lr`` (default: ``search.lr``).

        Data-parallel (``group``): the batches are the global ones; the result is the global
        batch's (mean loss, correct predictions, sample count)."""
        lr = self.config.lr if lr is None else lr
        if self.group is None:
            return search_step(self.model, self.architect, self.w_optimizer, train_batch,
                               val_batch, lr, self.config.grad_clip, update_alphas)
        group = self.group
        try:
            with group.sharded(train_batch, val_batch) as (train, val):
                res = search_step(self.model, self.architect, self.w_optimizer, train, val,
                                  lr, self.config.grad_clip, update_alphas)
                counted = float(group.share_of(train[1]) > 0)  # 0: a stand-in sample
            # the losses are already weighted by each process's share: sums are the means
            totals = group.all_reduce_sum([torch.tensor(
                [res.loss, res.correct * counted, res.count * counted, res.alpha_loss or 0.0],
                dtype=torch.float64, device=group.comm_device)])[0].tolist()
        except RuntimeError as exc:  # a collective inside autograd that another process broke
            err = group.failure(exc, "a search step")
            if err is None:
                raise
            raise err from None
        alpha_loss = totals[3] if res.alpha_loss is not None else None
        return StepResult(totals[0], int(totals[1]), int(totals[2]), alpha_loss)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The alpha optimiser (Adam) and the weight optimiser (SGD)."""
        return [self.architect.optimizer, self.w_optimizer]


def build_search(search: SearchConfig, model: nn.Module, foreach: bool | None = None,
                 group: Group | None = None) -> SearchRecipe:
    """SGD over ``model``'s weights and an Architect over its alphas, as ``search`` says.

    ``foreach`` sets both optimisers' ``foreach`` flag (``None``: PyTorch decides from the
    parameters' device; the memory estimator sets ``True``, CUDA's default, on fake tensors).
    ``group``: a data-parallel step; with ``search.sync_batchnorm`` the model's BatchNorms
    are replaced by :class:`~nasspeech.search.sync_batchnorm.SyncBatchNorm` (same parameters).
    """
    loss_fn, grad_sync = F.cross_entropy, None
    if group is not None:
        loss_fn, grad_sync = group.loss(F.cross_entropy), group.all_reduce_sum
        if search.sync_batchnorm:
            convert_sync_batchnorm(model, group.all_reduce_sum, group.forward_counts)
            group.count_forwards(model)
    w_optimizer = torch.optim.SGD(
        model.weight_parameters(), lr=search.lr, momentum=search.momentum,
        weight_decay=search.weight_decay, foreach=foreach,
    )
    architect = Architect(
        model, order=search.order, lr=search.alpha_lr, betas=tuple(search.alpha_betas),
        weight_decay=search.alpha_weight_decay, w_momentum=search.momentum,
        w_weight_decay=search.weight_decay, hvp=search.hvp, loss_fn=loss_fn,
        grad_sync=grad_sync, precision=search.precision,
    )
    if foreach is not None:
        for param_group in architect.optimizer.param_groups:
            param_group["foreach"] = foreach
    return SearchRecipe(model, w_optimizer, architect, search, group)
