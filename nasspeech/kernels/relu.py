"""``body(relu(x))`` without keeping ``relu(x)`` for the backward pass.

In DARTS ops a ReLU feeds a convolution, which keeps its input (the ReLU's output) for its
weight gradient; the ReLU's own backward keeps it too. :func:`relu_then` computes the ReLU
with a backward that needs only ``x`` (which the graph keeps anyway: it is a node of the
cell) and lets ``body`` save a *recipe* instead of the ReLU's output: whenever ``body``'s
backward needs it, ``relu(x)`` is recomputed (one cheap pass). One activation fewer per
ReLU -> conv pair, on every device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.autograd.graph import saved_tensors_hooks

from nasspeech.kernels.dispatch import outer_saved_tensor_hooks


def relu_then(x: torch.Tensor, body: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``body(relu(x))``; ``relu(x)`` is recomputed in the backward pass instead of kept."""
    # threshold's backward keeps its input; relu's keeps its output
    relu_x = F.threshold(x, 0.0, 0.0)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return body(relu_x)

    # autograd keeps the pack hook as long as anything it packed: hold relu(x) only
    # while ``body`` runs, or it would stay alive through the backward pass
    current = [relu_x]
    # hooks already active (e.g. the memory estimator's) still see every other saved tensor
    outer = outer_saved_tensor_hooks()

    def pack(t: torch.Tensor) -> object:
        if current and t is current[0]:
            return _Recompute(x)
        return t if outer is None else _Outer(outer[0](t), outer[1])

    try:
        with saved_tensors_hooks(pack, _unpack):
            return body(current[0])
    finally:
        current.clear()


class _Outer:
    __slots__ = ("packed", "unpack")

    def __init__(self, packed: object, unpack) -> None:
        self.packed, self.unpack = packed, unpack


class _Recompute:
    __slots__ = ("source",)

    def __init__(self, source: torch.Tensor) -> None:
        self.source = source


def _unpack(packed: object) -> torch.Tensor:
    if isinstance(packed, _Recompute):
        return torch.relu(packed.source)
    if isinstance(packed, _Outer):
        return packed.unpack(packed.packed)
    return packed  # type: ignore[return-value]
