"""Shape-contract checks for candidate ops, and errors of ops that fail inside a network."""

from __future__ import annotations

import torch

from nasspeech.registry.family import FAMILIES
from nasspeech.registry.operation import Operation

#: Batch sizes the smoke test runs: an op must work for one sample and for several.
PROBE_BATCHES = (5, 1)


class OpContractError(ValueError):
    """A registered op that breaks its family's shape contract (it is not registered)."""


def expected_shape(family: str, shape: tuple[int, ...], stride: int = 1) -> tuple[int, ...]:
    """The output shape an op of ``family`` must produce for an input of ``shape``."""
    return FAMILIES.get(family).expected_shape(tuple(shape), stride)


def probe_cases(family: str, channels: int = 4) -> list[tuple[tuple[int, ...], int]]:
    """(input shape, stride) pairs of the smoke test (:meth:`Family.probe_cases`)."""
    return FAMILIES.get(family).probe_cases(channels)


def check_op(op: Operation, channels: int = 4) -> str | None:
    """Build and run ``op`` on tiny inputs (:func:`probe_cases`, eval mode); return a
    description of what is wrong, or None."""
    try:
        family = FAMILIES.get(op.family)
        for shape, stride in family.probe_cases(channels):
            module = op.build(family.channels_of(shape), stride)
            module.eval()
            with torch.no_grad():
                out = module(torch.randn(*shape))
            if not isinstance(out, torch.Tensor):
                return f"returned {type(out).__name__} instead of a tensor"
            want = family.expected_shape(shape, stride)
            if tuple(out.shape) != want:
                return (
                    f"input {tuple(shape)} at stride {stride} gave output {tuple(out.shape)}, "
                    f"expected {want}"
                )
    except Exception as exc:  # noqa: BLE001  (any failure rejects the op)
        return f"raised {type(exc).__name__}: {_first_line(exc)}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def name_failed_op(exc: BaseException, op_key: str, source: str, x: object) -> None:
    """Add a note naming the op to ``exc``, raised by candidate op ``op_key`` inside a network.

    The exception keeps its type (callers may catch it, e.g. out-of-memory), only the note
    is added: Python prints it under the error (3.11+).
    """
    if getattr(exc, "_nasspeech_op", None) or not hasattr(exc, "add_note"):
        return
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else "?"
    exc.add_note(f"in candidate op {op_key} (source {source}) on an input of shape {shape}")
    exc._nasspeech_op = op_key  # type: ignore[attr-defined]  (the innermost op is named)
