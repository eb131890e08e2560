"""Bad inputs of the compiled dense weight gradient (``torch.ops.nasspeech.dense_weight_grad``,
an internal op of :mod:`nasspeech.kernels.dense`): each names the argument and its value."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasspeech.kernels.native import native_ops

from .table import Case, check, params

ops = native_ops()
pytestmark = pytest.mark.skipif(ops is None, reason="compiled kernels unavailable here")


def _call(go=(2, 8, 10, 10), x=(2, 8, 10, 10), kernel=(1, 1), stride=(1, 1), padding=(0, 0),
          dilation=(1, 1), dtype=torch.float32):
    def run(_tmp: Path):
        return ops.dense_weight_grad(torch.zeros(go, dtype=dtype), torch.zeros(x), list(kernel),
                                     list(stride), list(padding), list(dilation))
    return run


CASES = [
    Case("grad-size-mismatch", _call(go=(2, 8, 9, 10)),
         r"grad_out's size \[2, 8, 9, 10\] does not match the convolution of input "
         r"\[2, 8, 10, 10\] \(batch 2, output 10x10\)", error=RuntimeError),
    Case("batch-mismatch", _call(go=(3, 8, 10, 10)),
         r"grad_out's size \[3, 8, 10, 10\] does not match .* \(batch 2", error=RuntimeError),
    Case("float64-grad", _call(dtype=torch.float64),
         r"float32 grad_out and input expected, got Double and Float", error=RuntimeError),
    Case("3-d-input", _call(go=(8, 10, 10), x=(8, 10, 10)),
         r"4-d grad_out and input expected, got 3-d and 3-d", error=RuntimeError),
    Case("zero-stride", _call(stride=(1, 0)),
         r"kernel, stride and dilation must be positive, padding >= 0; got kernel \[1, 1\], "
         r"stride \[1, 0\]", error=RuntimeError),
]


@params(CASES)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
