"""Saved-tensor recipes: what a pack hook keeps instead of a tensor it can recompute.

:mod:`nasspeech.kernels.relu` and :mod:`nasspeech.kernels.recompute` install
hooks that replace one tensor's saves by a :class:`SavedRecipe` and pass every other saved
tensor on to the hooks that were active before (e.g. the memory estimator's), wrapped in
:class:`Outer`: :func:`saving_recipe`. :func:`unpack_saved` is the one unpack hook for all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.graph import saved_tensors_hooks

from nasspeech.kernels.dispatch import outer_saved_tensor_hooks


class SavedRecipe:
    """A saved tensor kept as a way to compute it again: :meth:`get` returns it."""

    __slots__ = ()

    def get(self) -> torch.Tensor:
        raise NotImplementedError


class Outer(SavedRecipe):
    """A tensor packed by the hooks that were active before ours, with their unpack hook."""

    __slots__ = ("packed", "unpack")

    def __init__(self, packed: object, unpack: Callable[[object], torch.Tensor]) -> None:
        self.packed, self.unpack = packed, unpack

    def get(self) -> torch.Tensor:
        return self.unpack(self.packed)


def pack_outer(t: torch.Tensor, outer: tuple | None) -> object:
    """``t`` as the ``outer`` hooks (``(pack, unpack)`` or None) would keep it."""
    return t if outer is None else Outer(outer[0](t), outer[1])


def unpack_saved(packed: object) -> torch.Tensor:
    """The unpack hook: a recipe's tensor, or the tensor itself."""
    return packed.get() if isinstance(packed, SavedRecipe) else packed  # type: ignore[return-value]


def saving_recipe(target: torch.Tensor, make_recipe: Callable[[torch.Tensor, tuple | None], object],
                  fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn(target)``, where each save of ``target`` keeps ``make_recipe(target, outer)``
    instead (``outer``: the hooks active before, for what the recipe itself keeps) and every
    other saved tensor goes to ``outer``. Autograd keeps the pack hook as long as anything it
    packed, so the hook refers to ``target`` only while ``fn`` runs, and ``make_recipe``
    must not hold it either."""
    current = [target]
    outer = outer_saved_tensor_hooks()

    def pack(t: torch.Tensor) -> object:
        if current and t is current[0]:
            return make_recipe(t, outer)
        return pack_outer(t, outer)

    try:
        with saved_tensors_hooks(pack, unpack_saved):
            return fn(current[0])
    finally:
        current.clear()

