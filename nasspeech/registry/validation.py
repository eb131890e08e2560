"""Shape-contract checks for candidate ops (used on plugin ops and in tests)."""

from __future__ import annotations

import torch

from nasspeech.registry.operation import Operation


def expected_shape(family: str, shape: tuple[int, ...], stride: int = 1) -> tuple[int, ...]:
    """The output shape an op of ``family`` must produce for an input of ``shape``."""
    if family == "cnn":
        b, c, h, w = shape
        return (b, c, -(-h // stride), -(-w // stride))
    return tuple(shape)


def check_op(op: Operation, channels: int = 4, batch: int = 2) -> str | None:
    """Build and run ``op`` on tiny inputs; return a description of what is wrong, or None.

    Besides ``batch`` x ``channels`` it tries batch 1 at an odd width (and odd spatial sizes
    for cnn), since every op must work for any batch size and width.
    """
    odd = channels + 1 if channels % 2 == 0 else channels
    cases = [((batch, channels, 8, 8), 1), ((batch, channels, 8, 8), 2), ((1, odd, 7, 5), 2)]
    if op.family == "seq":
        cases = [((batch, 5, channels), 1), ((1, 3, odd), 1)]
    try:
        for shape, stride in cases:
            module = op.build(shape[-1] if op.family == "seq" else shape[1], stride)
            module.eval()
            with torch.no_grad():
                out = module(torch.randn(*shape))
            if not isinstance(out, torch.Tensor):
                return f"returned {type(out).__name__} instead of a tensor"
            want = expected_shape(op.family, shape, stride)
            if tuple(out.shape) != want:
                return (
                    f"input {tuple(shape)} at stride {stride} gave output {tuple(out.shape)}, "
                    f"expected {want}"
                )
    except Exception as exc:  # noqa: BLE001  (any failure rejects the op)
        return f"raised {type(exc).__name__}: {exc}"
    return None
