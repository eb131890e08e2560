"""Device memory a CPU trace cannot see, and CPU-vs-CUDA kernel differences.

Every constant says where it comes from. ``calibrated`` is True where a measurement on a
device (``benchmarks/gpu_session.sh``: ``gpu_constants.py`` measures each of these) replaced
the public figure: on an H200, 2026-11-29 (all but the pre-Hopper cuBLAS workspace).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

MiB = 1024**2
KiB = 1024


@dataclass(frozen=True)
class Constant:
    value: int | float
    source: str
    calibrated: bool = False


#: where the calibrated constants were measured
H200_RUN = ("benchmarks/gpu_constants.py on an NVIDIA H200 (torch 2.11.0+cu130, cuDNN 9.19, "
            "driver 580.159.04), 2026-11-29")

#: CUDA context + PyTorch kernels loaded lazily (CUDA_MODULE_LOADING=LAZY, default since CUDA
#: 11.7) + library handles: device memory outside ``max_memory_reserved``. Measured as
#: ``total - free - reserved`` after a whole emoDARTS-like search step (every library and
#: most kernels loaded): 806,158,336 B = 768.8 MiB (619 MiB right after initialisation).
#: Public reports for A100/H100 with older CUDA put it at 300-500 MiB; other GPUs, drivers
#: and CUDA versions differ.
CUDA_CONTEXT = Constant(806_158_336, f"measured: {H200_RUN}", calibrated=True)

#: cuBLAS workspace, allocated through the caching allocator on the first matmul and kept:
#: PyTorch's CublasHandlePool default CUBLAS_WORKSPACE_CONFIG ":4096:2:16:8" (2 x 4 MiB +
#: 8 x 16 KiB) before Hopper, ":4096:8" (8 x 4 MiB) on sm_90+ (measured: 32 MiB on the
#: H200, and nothing more for bf16 matmuls).
CUBLAS_WORKSPACE = Constant(2 * 4096 * KiB + 8 * 16 * KiB, "PyTorch CublasHandlePool.cpp default")
CUBLAS_WORKSPACE_HOPPER = Constant(8 * 4096 * KiB, f"measured: {H200_RUN}", calibrated=True)
#: The forward pass (the caller's thread) and the backward pass (autograd's device thread)
#: each get a cuBLAS handle with its own workspace, and 1 MiB more stays allocated: after a
#: search step 2 x 32 MiB + 1 MiB = 68,157,440 B stayed allocated between steps on the H200
#: (gpu_memory_validation.py, ``allocated_at_start``; 1 MiB assumed before Hopper too).
CUBLAS_HANDLES = 2
PERSISTENT_EXTRA = Constant(MiB, f"measured: {H200_RUN}", calibrated=True)

#: cuDNN RNN training reserve space of one whole (multi-layer) ``_cudnn_rnn`` call:
#: ``(k x layers - 1) x T x B x H x directions`` float32 values + 256 B, with k = 6 (LSTM),
#: 7 (GRU), 2 (RNN): exact on 48 shapes (T 37-128, B 5-64, H 24-256, 1/2/4 layers, one or
#: two directions). (It was taken as 6/5/2 values per layer from the cuDNN documentation.)
RNN_RESERVE_PER_LAYER = {
    "lstm": Constant(6, f"measured: {H200_RUN}", calibrated=True),
    "gru": Constant(7, f"measured: {H200_RUN}", calibrated=True),
    "rnn": Constant(2, f"measured: {H200_RUN}", calibrated=True),
}
RNN_RESERVE_EXTRA = Constant(256, f"measured: {H200_RUN}", calibrated=True)

#: cuDNN convolution workspace (transient, per conv call, inside the caching allocator) as a
#: range: 0 up to this factor x the largest convolution output. Measured at emoDARTS's
#: shapes (batch 64, heuristic algorithm choice, ``cudnn.benchmark=False``): none for the
#: depthwise, pointwise and stride-2 1x1 convolutions, 2.0-2.13 x the input for the 1x7 and
#: 7x1 convolutions (forward and backward), 1.13-1.25 x for the 2x2 stride-2 backward;
#: 2.13 rounded up.
CONV_WORKSPACE_MAX_FACTOR = Constant(2.2, f"measured: {H200_RUN}", calibrated=True)


def conv_workspace_high(largest_conv_bytes: int) -> int:
    """The upper end of the conv workspace range for a step whose largest conv tensor has
    ``largest_conv_bytes`` bytes (rounded to the allocator's 512 B)."""
    high = int(CONV_WORKSPACE_MAX_FACTOR.value * largest_conv_bytes)
    return (high + 511) // 512 * 512 if high else 0


def cublas_workspace(hopper: bool) -> list[int]:
    """The allocations a search step leaves for cuBLAS: one workspace per handle (forward
    and backward threads) and the 1 MiB measured beside them."""
    one = (CUBLAS_WORKSPACE_HOPPER if hopper else CUBLAS_WORKSPACE).value
    return [one] * CUBLAS_HANDLES + [PERSISTENT_EXTRA.value]


def cudnn_rnn_reserve_bytes(
    mode: str, seq_len: int, batch: int, hidden: int, dirs: int = 1, elem: int = 4,
    layers: int = 1,
) -> int:
    """cuDNN's training reserve space of one RNN call (``mode`` lstm/gru/rnn) over
    ``layers`` layers."""
    units = RNN_RESERVE_PER_LAYER[mode].value * layers - 1
    return units * seq_len * batch * hidden * dirs * elem + RNN_RESERVE_EXTRA.value


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
