"""Device memory a CPU trace cannot see, and CPU-vs-CUDA kernel differences.

Every constant says where it comes from. ``calibrated`` is False until a measurement on the
device (``benchmarks/gpu_session.sh``: ``gpu_constants.py`` measures each of these) replaced
the public figure; no GPU run has measured them yet, so all of them are uncalibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

MiB = 1024**2
KiB = 1024


@dataclass(frozen=True)
class Constant:
    value: int
    source: str
    calibrated: bool = False


#: CUDA context + PyTorch kernels loaded lazily (CUDA_MODULE_LOADING=LAZY, default since CUDA
#: 11.7). It is outside ``max_memory_reserved`` but takes device memory. Public reports put it
#: at 300-500 MiB on A100/H100 with PyTorch 2.x; we take the upper end to stay on the safe side.
CUDA_CONTEXT = Constant(
    500 * MiB, "public reports of nvidia-smi minus torch reserved, PyTorch 2.x, lazy loading"
)

#: cuBLAS workspace, allocated through the caching allocator on the first matmul and kept:
#: PyTorch's CublasHandlePool default CUBLAS_WORKSPACE_CONFIG ":4096:2:16:8" (2 x 4 MiB +
#: 8 x 16 KiB) before Hopper, ":4096:8" (8 x 4 MiB) on sm_90+.
CUBLAS_WORKSPACE = Constant(2 * 4096 * KiB + 8 * 16 * KiB, "PyTorch CublasHandlePool.cpp default")
CUBLAS_WORKSPACE_HOPPER = Constant(8 * 4096 * KiB, "PyTorch CublasHandlePool.cpp default, sm_90+")

#: cuDNN RNN reserve space per layer and direction, in units of (time x batch x hidden)
#: float32 values: the gate pre-activations (4 for LSTM, 3 for GRU, 1 for RNN) plus the
#: cell/hidden states cuDNN keeps for the backward pass. cudnnGetRNNTrainingReserveSize is
#: only known at run time; these multipliers follow the cuDNN documentation's description of
#: what the reserve space holds and are uncalibrated.
RNN_RESERVE_PER_STEP = {
    "lstm": Constant(6, "cuDNN docs: 4 gates + cell + hidden per step (estimate)"),
    "gru": Constant(5, "cuDNN docs: 3 gates + 2 states per step (estimate)"),
    "rnn": Constant(2, "cuDNN docs: pre-activation + hidden per step (estimate)"),
}

#: cuDNN convolution workspace (transient, per conv call) as a range: 0 when cuDNN picks an
#: implicit-GEMM algorithm, up to about the size of the conv's input for FFT/Winograd
#: algorithms (heuristic mode, torch.backends.cudnn.benchmark=False). Uncalibrated.
CONV_WORKSPACE_MAX_FACTOR = Constant(1, "heuristic: <= one input-sized buffer per conv call")


def cublas_workspace(hopper: bool) -> int:
    return (CUBLAS_WORKSPACE_HOPPER if hopper else CUBLAS_WORKSPACE).value


def cudnn_rnn_reserve_bytes(
    mode: str, seq_len: int, batch: int, hidden: int, dirs: int = 1, elem: int = 4
) -> int:
    """Estimated cuDNN training reserve space of one RNN layer (``mode`` lstm/gru/rnn)."""
    return RNN_RESERVE_PER_STEP[mode].value * seq_len * batch * hidden * dirs * elem


_PROBE_CACHE: dict[tuple, int] = {}


def mkldnn_rnn_workspace_bytes(args: tuple[Any, ...]) -> int:
    """Bytes of the workspace ``aten.mkldnn_rnn_layer`` returns on this CPU.

    PyTorch's fake/meta kernel reports an empty workspace; the real oneDNN kernel keeps one
    for the backward pass. We run the real kernel once per shape on small zero tensors of the
    same sizes (milliseconds) and cache the answer.
    """
    shapes = tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args)
    key = repr(shapes)
    if key not in _PROBE_CACHE:
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        with unset_fake_temporarily(), torch.enable_grad():  # no workspace without grad mode
            real = [
                torch.zeros(a.shape, dtype=a.dtype) if isinstance(a, torch.Tensor) else a
                for a in args
            ]
            out = torch.ops.aten.mkldnn_rnn_layer.default(*real)
        _PROBE_CACHE[key] = out[3].untyped_storage().nbytes() if out[3] is not None else 0
    return _PROBE_CACHE[key]
