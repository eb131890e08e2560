"""Saved-tensor recipes: what a pack hook keeps instead of a tensor it can recompute.

:mod:`nasspeech.kernels.relu` and :mod:`nasspeech.kernels.recompute` install
``saved_tensors_hooks`` that replace some saved tensors by a :class:`SavedRecipe` and pass
every other one on to the hooks that were active before (e.g. the memory estimator's),
wrapped in :class:`Outer`. :func:`unpack_saved` is the one unpack hook for all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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
