"""Hand-overs: how one component's output becomes the next component's (or the head's) input.

A hand-over is registered like an op: ``@register_handover("name")`` on a factory
``factory(in_shape, **options) -> nn.Module`` where ``in_shape`` excludes the batch axis.
Hand-overs must act on each sample independently. They live in a
:class:`~nasspeech.registry.Registry` (:data:`HANDOVERS`); which one ``handover: auto``
picks is the families' choice (:attr:`~nasspeech.registry.Family.handover_to`).

Shapes (batch axis omitted): a ``cnn`` tensor is (C, H=frequency, W=time); a ``seq`` tensor is
(T, F); the classifier head takes a flat (F,) vector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasspeech.registry import FAMILIES, Registry, UnknownNameError, source_of
from nasspeech.registry.context import current_source

HandoverFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class Handover:
    name: str
    factory: HandoverFactory
    description: str
    source: str

    def build(self, in_shape: tuple[int, ...], **options: Any) -> tuple[nn.Module, tuple[int, ...]]:
        """Build the module and return it with its output shape (batch axis omitted)."""
        module = self.factory(tuple(in_shape), **options)
        with torch.no_grad():
            out = module(torch.zeros(1, *in_shape))
        return module, tuple(out.shape[1:])


class UnknownHandoverError(UnknownNameError):
    """A hand-over name no one registered."""


#: The process-wide hand-over registry.
HANDOVERS: Registry[Handover] = Registry("hand-over", unknown_error=UnknownHandoverError)
_HANDOVERS = HANDOVERS._entries  # the live dict (tests remove what they registered)


def register_handover(
    name: str, *, description: str | None = None, override: bool = False
) -> Callable[[HandoverFactory], HandoverFactory]:
    """Register ``factory(in_shape, **options) -> nn.Module`` as hand-over ``name``."""

    def make(factory: HandoverFactory) -> Handover:
        doc = (factory.__doc__ or "").strip().splitlines()
        return Handover(name, factory, description or (doc[0] if doc else ""),
                        current_source() or source_of(factory))

    return HANDOVERS.register(name, override=override, make=make)


def get_handover(name: str) -> Handover:
    """The hand-over ``name``; :class:`UnknownHandoverError` (a ``KeyError``) lists them."""
    return HANDOVERS.get(name)


def list_handovers() -> list[Handover]:
    return sorted(HANDOVERS.list(), key=lambda h: h.name)


def default_handover(in_rank: int, target: str, source: str | None = None) -> str:
    """The hand-over used when a component says ``handover: auto``.

    ``in_rank`` is the rank of the output (without batch), ``source`` the family that
    produced it (None: the space's input); ``target`` is the next component's family, or
    ``"head"`` for the classifier. The source family's :attr:`~Family.handover_to` decides,
    else the target family's :attr:`~Family.handover_from_rank`; a flat vector goes to the
    head as it is.
    """
    if source is not None and source in FAMILIES:
        chosen = FAMILIES.get(source).handover_to.get(target)
        if chosen is not None:
            return chosen
    if target == "head" and in_rank == 1:
        return "identity"
    if target in FAMILIES:
        chosen = FAMILIES.get(target).handover_from_rank.get(in_rank)
        if chosen is not None:
            return chosen
    raise ValueError(f"no default hand-over from a rank-{in_rank} output to {target!r}")


class FoldFrequency(nn.Module):
    """(B, C, H, W) -> (B, W, C*H): time (W) becomes the sequence axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.permute(0, 3, 1, 2).reshape(b, w, c * h)


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class MeanOverTime(nn.Module):
    """(B, T, F) -> (B, F)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class SequenceToImage(nn.Module):
    """(B, T, F) -> (B, 1, F, T): features become the frequency axis of a 1-channel image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).unsqueeze(1)


@register_handover("identity")
def identity(in_shape: tuple[int, ...]) -> nn.Module:
    """Pass the tensor on unchanged."""
    return nn.Identity()


@register_handover("fold_frequency")
def fold_frequency(in_shape: tuple[int, ...]) -> nn.Module:
    """CNN -> seq: keep the time axis, fold channels x frequency into features."""
    if len(in_shape) != 3:
        raise ValueError(f"fold_frequency needs a (C, H, W) input, got {in_shape}")
    return FoldFrequency()


@register_handover("global_avg_pool")
def global_avg_pool(in_shape: tuple[int, ...]) -> nn.Module:
    """CNN -> head: average over frequency and time."""
    if len(in_shape) != 3:
        raise ValueError(f"global_avg_pool needs a (C, H, W) input, got {in_shape}")
    return GlobalAvgPool()


@register_handover("mean_over_time")
def mean_over_time(in_shape: tuple[int, ...]) -> nn.Module:
    """seq -> head: average over time."""
    if len(in_shape) != 2:
        raise ValueError(f"mean_over_time needs a (T, F) input, got {in_shape}")
    return MeanOverTime()


@register_handover("sequence_to_image")
def sequence_to_image(in_shape: tuple[int, ...]) -> nn.Module:
    """seq -> CNN: a 1-channel (F, T) image."""
    if len(in_shape) != 2:
        raise ValueError(f"sequence_to_image needs a (T, F) input, got {in_shape}")
    return SequenceToImage()
