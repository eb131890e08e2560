"""The compiled 3x3 max pooling (nasspeech.kernels.pooling) against PyTorch's, per yardstick
shape: forward and backward time at one thread, and the bytes the backward keeps.

    PYTHONPATH=$PWD python benchmarks/max_pool_kernel.py

Batch 16, channels-last fp32: C=8 at 128x128, C=16 at 64x64, C=32 at 32x32, stride 1 and 2.
Each time is the lower quartile of ``--reps`` calls in a row, the best of 3 such blocks.
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = [(8, 128), (16, 64), (32, 32)]


def _quartile_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 4] * 1e3


def measure(ops, channels: int, size: int, stride: int, reps: int, rounds: int = 3) -> str:
    """One table row: PyTorch's and the compiled kernels, in alternating blocks of calls."""
    aten = torch.ops.aten
    x = torch.randn(16, channels, size, size).relu().contiguous(memory_format=torch.channels_last)
    ref_out, indices = aten.max_pool2d_with_indices(x, [3, 3], [stride] * 2, [1, 1])
    _, taps = ops.max_pool3x3_forward(x, stride)
    go = torch.randn_like(ref_out)
    runs = {
        "fwd_ref": lambda: aten.max_pool2d_with_indices(x, [3, 3], [stride] * 2, [1, 1]),
        "fwd": lambda: ops.max_pool3x3_forward(x, stride),
        "bwd_ref": lambda: aten.max_pool2d_with_indices_backward(
            go, x, [3, 3], [stride] * 2, [1, 1], [1, 1], False, indices),
        "bwd": lambda: ops.max_pool3x3_backward(go, taps, size, size, stride),
    }
    q = {k: min(_quartile_ms(fn, reps) for _ in range(rounds)) for k, fn in runs.items()}
    return (f"| C={channels} {size}x{size} | {stride} | {q['fwd_ref']:.2f} | {q['fwd']:.2f} | "
            f"{q['fwd_ref'] / q['fwd']:.1f}x | {q['bwd_ref']:.2f} | {q['bwd']:.2f} | "
            f"{q['bwd_ref'] / q['bwd']:.1f}x | {indices.numel() * 8 / 2**20:.1f} | "
            f"{taps.numel() / 2**20:.1f} |")


def main() -> None:
    from nasspeech.kernels.native import native_ops

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ops = native_ops()
    if ops is None:
        raise SystemExit("compiled kernels unavailable here")
    print("| shape | stride | fwd PyTorch (ms) | fwd ours (ms) | speed-up | bwd PyTorch (ms) "
          "| bwd ours (ms) | speed-up | indices kept (MiB) | taps kept (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for channels, size in SHAPES:
        for stride in (1, 2):
            print(measure(ops, channels, size, stride, a.reps))


if __name__ == "__main__":
    main()
