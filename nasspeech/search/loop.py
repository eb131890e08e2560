"""The training steps, in one place: the search step (alphas, then weights) and the weight
step used for retraining. The CLI workflows and the memory estimator both call these."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.kernels.precision import at_least_fp32, autocast
from nasspeech.search.architect import Architect, Batch, GradSync, LossFn


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the caller keeps its last good checkpoint."""


@dataclass
class StepResult:
    loss: float
    correct: int
    count: int
    alpha_loss: float | None = None
    aux_loss: float | None = None


def _check_finite(loss: torch.Tensor, where: str) -> None:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{where} loss is {value}; stopping (lower the learning rate?)")


@contextlib.contextmanager
def frozen(params: list[torch.Tensor]) -> Iterator[None]:
    """Temporarily exclude ``params`` from autograd: nothing is saved or computed for them."""
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def weight_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    grad_clip: float | None = 5.0,
    params: list[torch.Tensor] | None = None,
    aux_weight: float = 0.0,
    loss_fn: LossFn = F.cross_entropy,
    grad_sync: GradSync | None = None,
    precision: str = "fp32",
) -> StepResult:
    """One optimiser step on ``batch`` with gradient-norm clipping over ``params``; the
    forward pass in ``precision`` (:mod:`nasspeech.kernels.precision`).

    ``aux_weight`` > 0 adds that times the loss of the model's auxiliary logits
    (``model.aux_logits``, DARTS's auxiliary head) to the loss; ``loss`` reports the main one.
    ``grad_sync`` sums the gradients over data-parallel processes before clipping."""
    x, y = batch
    optimizer.zero_grad(set_to_none=True)
    with autocast(x.device.type, precision):
        logits = at_least_fp32(model(x))
    loss = loss_fn(logits, y)
    total, aux_loss = loss, None
    if aux_weight:
        aux_logits = getattr(model, "aux_logits", None)
        if aux_logits is None:
            raise ValueError("aux_weight is set but the model left no auxiliary logits "
                             "(build it with its auxiliary head, in training mode)")
        aux_loss = F.cross_entropy(at_least_fp32(aux_logits), y)
        total = loss + aux_weight * aux_loss
    _check_finite(total, "training")
    total.backward()
    if grad_sync is not None:
        used = [p for p in (params if params is not None else model.parameters())
                if p.grad is not None]
        for p, g in zip(used, grad_sync([p.grad for p in used])):
            p.grad = g
    if grad_clip:
        nn.utils.clip_grad_norm_(params if params is not None else model.parameters(), grad_clip)
    optimizer.step()
    correct = int((logits.detach().argmax(dim=1) == y).sum())
    return StepResult(float(loss.detach()), correct, int(y.numel()),
                      aux_loss=None if aux_loss is None else float(aux_loss.detach()))


def search_step(
    model: nn.Module,
    architect: Architect,
    w_optimizer: torch.optim.Optimizer,
    train_batch: Batch,
    val_batch: Batch,
    lr: float,
    grad_clip: float | None = 5.0,
    update_alphas: bool = True,
) -> StepResult:
    """One DARTS search step: the alpha step on ``val_batch``, then the weight step."""
    model.train()
    alpha_loss = None
    weights = model.weight_parameters()
    if update_alphas:
        # first order needs no weight gradients: freezing the weights saves their backward
        with frozen(weights) if architect.order == 1 else contextlib.nullcontext():
            alpha_loss = architect.step(train_batch, val_batch, eta=lr, w_optimizer=w_optimizer)
        if not math.isfinite(alpha_loss):
            raise NonFiniteLossError(f"validation loss is {alpha_loss}; stopping")
    # the weight step treats the op weights softmax(alpha) as constants, so the op outputs
    # need not be kept for an alpha gradient
    with frozen(architect.alphas):
        result = weight_step(model, w_optimizer, train_batch, grad_clip, params=weights,
                             loss_fn=architect.loss_fn, grad_sync=architect.grad_sync,
                             precision=architect.precision)
    result.alpha_loss = alpha_loss
    return result


@torch.no_grad()
def predict(model: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true labels over every batch (no sample is dropped)."""
    model.eval()
    preds, labels = [], []
    for x, y in batches:
        preds.append(model(x).argmax(dim=1).cpu())
        labels.append(y.cpu())
    return torch.cat(preds), torch.cat(labels)
