"""Trace records, below both tracers: the storages of a step (:class:`Alloc`), the step's
events in order (:class:`Trace`), and the aten-level helpers both tracers share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

CATEGORIES = (
    "weights", "alphas", "optimizer_state", "inputs", "gradients", "saved_activations",
    "transient",
)
LOCAL_SCALAR_DENSE = torch.ops.aten._local_scalar_dense.default
BN_BACKWARD = torch.ops.aten.native_batch_norm_backward.default


Owner = tuple[str, "str | None"]  # (component, candidate op or None)


@dataclass(slots=True)
class Alloc:
    """One storage: its size and where it comes from."""

    nbytes: int
    category: str
    component: str
    op: str | None
    aten: str
    task: int = -1  # autograd graph task that allocated it (-1: not in a backward pass)


@dataclass
class Trace:
    """Storages alive before the step (``initial``) and the step's events in order.

    ``events[i] >= 0`` allocates ``allocs[events[i]]``; ``events[i] < 0`` frees
    ``allocs[~events[i]]``. ``initial`` holds indices of storages alive at the start.
    A sizes-only trace (traced without attribution in another process) has ``nbytes``
    (the size of every storage) and no ``allocs``.
    """

    allocs: list[Alloc] = field(default_factory=list)
    initial: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    batch_size: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    nbytes: list[int] | None = None

    def initial_bytes(self) -> int:
        return sum(self.allocs[i].nbytes for i in self.initial)

    def live_curve(self) -> list[int]:
        """Live bytes after each event, starting from the initial storages."""
        live = self.initial_bytes()
        curve = []
        for e in self.events:
            live += self.allocs[e].nbytes if e >= 0 else -self.allocs[~e].nbytes
            curve.append(live)
        return curve

    def sizes(self) -> list[int]:
        if self.nbytes is not None:
            return self.nbytes
        return [a.nbytes for a in self.allocs]

    def signed_sequence(self, initial_frees: bool = True) -> list[int]:
        """``+nbytes`` per allocation, ``-nbytes`` per free (optionally without the frees of
        storages that existed before the step)."""
        skip = set() if initial_frees else set(self.initial)
        out = []
        for e in self.events:
            i = e if e >= 0 else ~e
            if i not in skip:
                n = self.allocs[i].nbytes
                out.append(n if e >= 0 else -n)
        return out

    def summary(self) -> dict[str, Any]:
        counts = Counter(self.allocs[e].category for e in self.events if e >= 0)
        return {"events": len(self.events), "allocations": dict(counts)}


def dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: some permutation of the dims is contiguous."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def bn_backward_layout(out: Any, args: tuple) -> Any:
    """The CPU and CUDA batch-norm backward kernels lay the input gradient out like the
    input (e.g. channels-last); PyTorch's fake kernel copies the output gradient's strides."""
    grad_input, x = out[0], args[1]
    if grad_input is None or grad_input.stride() == x.stride() or not dense(x):
        return out
    return (torch.empty_like(x), *out[1:])


def scalar_value(t: torch.Tensor) -> Any:
    if t.dtype.is_floating_point:
        return 1.0
    return False if t.dtype == torch.bool else 0
