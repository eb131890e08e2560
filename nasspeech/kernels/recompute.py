"""Recompute depthwise outputs in the backward pass instead of keeping them (an option).

In a DARTS separable or dilated convolution (ReLU -> depthwise -> 1x1 -> BatchNorm) the 1x1
convolution keeps its input, the depthwise output, for its weight gradient: a third of what
the yardstick's search step keeps (1.45 of 4.23 GB). Inside :func:`recompute_depthwise` a
:class:`~nasspeech.kernels.depthwise.DepthwiseConv2d` records on its output how to compute
it again (its input and its weight as used), and a
:class:`~nasspeech.kernels.dense.DenseConv2d` that takes such an output keeps that recipe
instead (:func:`saving_recipe_of`): the depthwise convolution runs again when the backward
pass needs the 1x1 weight gradient, one more depthwise forward per block in every pass that
computes weight gradients. Its input costs nothing: the depthwise convolution keeps it for
its own weight gradient (a recomputed ReLU, :mod:`nasspeech.kernels.relu`, where it is one).

The recomputation is the same function of the same tensors, so the gradients are those of
the kept path; inside a backward that builds a graph (the exact Hessian) it is
differentiable; under bf16 autocast the recomputation runs in the forward pass's autocast
region again. Search and training runs switch it on with ``search.recompute_depthwise`` /
``train.recompute_depthwise``; the memory estimator traces it the same way.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import torch

from nasspeech.kernels.saved import SavedRecipe, pack_outer, saving_recipe, unpack_saved

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nasspeech_recompute_depthwise", default=False)
_MARK = "_nasspeech_recompute"


@contextlib.contextmanager
def recompute_depthwise(enabled: bool = True) -> Iterator[None]:
    """Inside the block, depthwise outputs that a 1x1 convolution consumes are recomputed in
    the backward pass instead of kept (``enabled=False``: kept, as outside)."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def recompute_depthwise_enabled() -> bool:
    """Whether :func:`recompute_depthwise` is on here."""
    return _ENABLED.get()


def mark_recomputable(out: torch.Tensor, inp: torch.Tensor,
                      recompute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Record on ``out`` that ``recompute(inp)`` gives it again, when recomputation is on and
    a graph is being recorded; returns ``out``."""
    if _ENABLED.get() and torch.is_grad_enabled():
        setattr(out, _MARK, (inp, recompute))
    return out


def saving_recipe_of(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                     values_needed: bool = True) -> torch.Tensor:
    """``fn(x)``; where ``x`` is marked (:func:`mark_recomputable`), a backward that keeps
    ``x`` keeps its recipe instead. Every other saved tensor goes to the hooks active before.

    ``values_needed=False``: ``fn``'s backward reads only ``x``'s shape and strides (a
    convolution whose weight needs no gradient: autograd still keeps and unpacks its input);
    it then gets an uninitialised tensor of that layout instead of a recomputation, except
    inside a backward that builds a graph."""
    if not hasattr(x, _MARK) or not torch.is_grad_enabled():
        return fn(x)

    def make_recipe(t: torch.Tensor, outer: tuple | None) -> object:
        inp, recompute = getattr(t, _MARK)
        return _Recomputed(recompute, pack_outer(inp, outer),
                           None if values_needed else _layout(t))

    return saving_recipe(x, make_recipe, fn)


def _layout(t: torch.Tensor) -> tuple:
    return (t.shape, t.stride(), t.dtype, t.device)


class _Recomputed(SavedRecipe):
    """``recompute(input)``, the input as the outer hooks packed it; computed at each unpack
    (only the layout where the values are not needed and no graph is being built)."""

    __slots__ = ("layout", "packed_input", "recompute")

    def __init__(self, recompute: Callable[[torch.Tensor], torch.Tensor],
                 packed_input: object, layout: tuple | None) -> None:
        self.recompute, self.packed_input, self.layout = recompute, packed_input, layout

    def get(self) -> torch.Tensor:
        if self.layout is not None and not torch.is_grad_enabled():
            size, stride, dtype, device = self.layout
            return torch.empty_strided(size, stride, dtype=dtype, device=device)
        return self.recompute(unpack_saved(self.packed_input))
