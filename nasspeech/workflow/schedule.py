"""The learning-rate schedule and optimiser settings, applied from the config every epoch, so
that a resume may change them (a checkpoint restores the optimiser's state, not its settings).
"""

from __future__ import annotations

import math

import torch


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """Cosine annealing from ``lr`` (epoch 0) towards ``lr_min`` over ``epochs`` (as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max=epochs``, in closed form)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2


def set_hyper(optimizer: torch.optim.Optimizer, **settings: object) -> None:
    """Set ``settings`` (lr, momentum, betas, weight_decay...) on every parameter group."""
    for group in optimizer.param_groups:
        group.update(settings)
