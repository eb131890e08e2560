"""Numeric precision of the forward passes: ``fp32``, or ``bf16`` autocast.

The one place where the toolkit enters autocast. ``bf16`` runs every forward pass of the
supernet (the search step's and the retraining's) under ``torch.autocast(dtype=bfloat16)``;
the alphas, the weights, the optimiser state, the logits handed to the loss, the loss and
the backward pass stay fp32 (the master weights), so no loss scaling is needed (bf16 has
fp32's exponent range). Recurrent layers run in fp32 inside it (:func:`full_precision`).

The memory estimator traces on meta tensors, for which torch has no autocast: it installs
a model of CUDA's autocast with :func:`modelled_autocast`, and every :func:`autocast` /
:func:`full_precision` inside uses that model instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextvars import ContextVar
from typing import Literal, Protocol

import torch

#: The precisions a search or a retraining can run in.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
Precision = Literal["fp32", "bf16"]
#: Device types with a native autocast in torch.
_NATIVE = ("cpu", "cuda")


class PrecisionError(ValueError):
    """An unknown precision name."""


class AutocastModel(Protocol):
    """What :func:`modelled_autocast` installs: autocast regions without torch's autocast."""

    def region(self, enabled: bool) -> ContextManager: ...

    def enabled(self) -> bool: ...

    @property
    def dtype(self) -> torch.dtype: ...


_MODEL: ContextVar[AutocastModel | None] = ContextVar("nasspeech_autocast_model", default=None)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`PrecisionError`."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}: choose one of "
                             f"{' | '.join(PRECISIONS)}")
    return precision


def autocast(device_type: str, precision: str) -> ContextManager:
    """The context a forward pass runs in: bf16 autocast on ``device_type`` (``precision``
    ``bf16``) or nothing (``fp32``). Wrap the model call only: the loss (on
    :func:`at_least_fp32` logits) and the backward pass belong outside."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    model = _MODEL.get()
    if model is not None:
        return model.region(True)
    if device_type not in _NATIVE:
        raise PrecisionError(f"precision bf16 needs a cpu or cuda device, not {device_type!r}")
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32 if autocast left it in a lower precision, else as it is (fp32, fp64):
    logits before the loss, inputs of layers that run in full precision."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def autocast_active(device_type: str) -> bool:
    """Whether code running now on ``device_type`` is inside an autocast region."""
    model = _MODEL.get()
    if model is not None:
        return model.enabled()
    return device_type in _NATIVE and torch.is_autocast_enabled(device_type)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on ``device_type`` now (None outside autocast): code
    that adds up op outputs takes its sums in it, so that they stay bf16 (an fp32 operand,
    such as an alpha weight, would make autocast's promoting ops compute in fp32)."""
    if not autocast_active(device_type):
        return None
    model = _MODEL.get()
    return model.dtype if model is not None else torch.get_autocast_dtype(device_type)


def full_precision(device_type: str) -> ContextManager:
    """Autocast switched off inside an autocast region (nothing outside one): for layers that
    must run in fp32. The recurrent ops use it: cuDNN's autocast casts an RNN to fp16 whatever
    the autocast dtype, and fp16 outputs cannot meet bf16 ones in autocast's promoting ops
    (``addcmul``: "Unexpected floating ScalarType in at::autocast::prioritize"); a recurrence
    also accumulates its rounding over time."""
    if not autocast_active(device_type):
        return contextlib.nullcontext()
    model = _MODEL.get()
    if model is not None:
        return model.region(False)
    return torch.autocast(device_type=device_type, enabled=False)


@contextlib.contextmanager
def modelled_autocast(model: AutocastModel) -> Iterator[None]:
    """Inside, :func:`autocast` and :func:`full_precision` enter ``model``'s regions instead
    of torch's autocast (the memory estimator's model of CUDA autocast on meta tensors)."""
    token = _MODEL.set(model)
    try:
        yield
    finally:
        _MODEL.reset(token)


__all__ = [
    "PRECISIONS",
    "AutocastModel",
    "Precision",
    "PrecisionError",
    "at_least_fp32",
    "autocast",
    "autocast_active",
    "autocast_dtype",
    "check_precision",
    "full_precision",
    "modelled_autocast",
]
