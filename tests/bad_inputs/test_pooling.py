"""Bad inputs of the compiled max-pooling ops (``torch.ops.nasspeech.max_pool3x3_*``, called
by :class:`nasspeech.kernels.pooling.MaxPool3x3`, which only passes what they accept)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasspeech.kernels.native import native_ops

from .table import Case, check, params

ops = native_ops()
pytestmark = pytest.mark.skipif(ops is None, reason="compiled kernels unavailable here")
X = torch.zeros(2, 8, 6, 6)
TAPS = torch.zeros(2, 8, 6, 6, dtype=torch.uint8)


def _call(name: str, *args):
    def run(_tmp: Path):
        return getattr(ops, name)(*args)
    return run


CASES = [
    Case("forward-float64", _call("max_pool3x3_forward", X.double(), 1),
         r"max_pool3x3: input must be a 4-d float32 CPU tensor", error=RuntimeError),
    Case("forward-3d", _call("max_pool3x3_forward", X[0], 1),
         r"max_pool3x3: input must be a 4-d float32 CPU tensor", error=RuntimeError),
    Case("forward-stride-3", _call("max_pool3x3_forward", X, 3),
         r"max_pool3x3: stride 1 or 2 expected, got 3", error=RuntimeError),
    Case("backward-int64-taps", _call("max_pool3x3_backward", X, TAPS.long(), 6, 6, 1),
         r"max_pool3x3_backward: uint8 taps of grad_out's shape expected", error=RuntimeError),
    Case("backward-wrong-size", _call("max_pool3x3_backward", X, TAPS, 9, 6, 1),
         r"max_pool3x3_backward: input size does not match grad_out", error=RuntimeError),
    Case("gather-tap-outside", _call("max_pool3x3_gather", X, TAPS, 1),
         r"max_pool3x3_gather: tap outside the image", error=RuntimeError),
    Case("gather-wrong-taps", _call("max_pool3x3_gather", X, TAPS[:, :, :3], 2),
         r"max_pool3x3_gather: uint8 taps of the pooled shape expected", error=RuntimeError),
]


@params(CASES)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
