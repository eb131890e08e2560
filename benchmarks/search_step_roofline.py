"""Roofline of the CNN yardstick search step: per op type, time, achieved GFLOP/s and bytes
moved, against this machine's measured peaks.

    python benchmarks/search_step_roofline.py                  # cnn setting, first order
    python benchmarks/search_step_roofline.py --threads 1 --markdown

Peaks are measured here, at the same thread count: FLOP/s with a 4096^3 fp32 matmul and with
a large dense convolution (oneDNN's kernels, which the step runs, can beat the BLAS on some
CPUs; the higher of the two is the peak), memory bandwidth with a stream-like copy of 512 MB
(out of cache) and of 8 MB (one activation of the yardstick's first cell, which stays in the
last-level cache). Every ATen op of one search step
is timed (wall clock) under a dispatch mode; FLOPs come from PyTorch's FLOP formulas
(convolutions, matmuls), bytes are the sizes of the op's tensor inputs and outputs (each
counted once: the least traffic the op can have). The "bound" column is the time the op type
would take at the peak it is closest to (max of FLOPs/peak FLOP/s and bytes/peak bandwidth):
time / bound is how far from the limit it runs.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).parent))
from search_step import SETTINGS, run_context, setup

aten = torch.ops.aten


def peak_flops(threads: int, n: int = 4096, reps: int = 3) -> float:
    """FLOP/s of an n^3 fp32 matmul (best of ``reps``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best


def peak_conv_flops(threads: int, reps: int = 3) -> float:
    """FLOP/s of a 3x3, 64 -> 64 channel convolution of a 16 x 64 x 64 x 64 channels-last
    batch (oneDNN; best of ``reps``)."""
    torch.set_num_threads(threads)
    x = torch.randn(16, 64, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3).contiguous(memory_format=torch.channels_last)
    conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)
    conv()
    best = min(_timed(conv) for _ in range(reps))
    return 2 * x.numel() * 64 * 9 / best


def peak_bandwidth(threads: int, nbytes: int, reps: int = 5) -> float:
    """Bytes/s of ``dst.copy_(src)`` (read + write counted) for ``nbytes``-sized tensors."""
    torch.set_num_threads(threads)
    src = torch.randn(nbytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    inner = max(1, (64 << 20) // nbytes)  # small copies repeated to time them well
    best = min(_timed(lambda: [dst.copy_(src) for _ in range(inner)]) for _ in range(reps))
    return 2 * nbytes * inner / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@dataclass
class OpStats:
    seconds: float = 0.0
    calls: int = 0
    flops: int = 0
    nbytes: int = 0
    shapes: collections.Counter = field(default_factory=collections.Counter)


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _conv_kind(w: torch.Tensor, groups: int, dilation) -> str:
    k = "x".join(str(s) for s in w.shape[-2:])
    if groups > 1 and w.shape[1] == 1:
        return f"depthwise {k}" + (" dilated" if max(dilation) > 1 else "")
    return f"dense {k}"


def op_type(func, args) -> str:
    """A coarse op type: convolutions by kind and pass, the rest by ATen name."""
    if func is aten.convolution.default:
        return f"conv fwd {_conv_kind(args[1], args[8], args[5])}"
    if func is aten.convolution_backward.default:
        mask = args[10]
        part = "+".join(p for p, m in zip(("input", "weight", "bias"), mask) if m)
        return f"conv bwd-{part} {_conv_kind(args[2], args[9], args[6])}"
    name = func.overloadpacket.__name__
    if name == "depthwise_weight_grad":  # nasspeech's compiled kernel
        kernel, dilation = args[2], args[5]
        k = "x".join(str(s) for s in kernel)
        return f"conv bwd-weight depthwise {k}" + (" dilated" if max(dilation) > 1 else "")
    if name == "dense_weight_grad":  # nasspeech's compiled kernel
        return "conv bwd-weight dense " + "x".join(str(s) for s in args[2])
    if name in ("native_batch_norm", "_native_batch_norm_legit", "_batch_norm_impl_index"):
        return "batch_norm fwd"
    if name.startswith("native_batch_norm_backward"):
        return "batch_norm bwd"
    return name


class OpTimer(TorchDispatchMode):
    """Times every ATen op (wall clock) and counts its FLOPs and bytes, by op type."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, OpStats] = collections.defaultdict(OpStats)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        dt = time.perf_counter() - t0
        s = self.stats[op_type(func, args)]
        s.seconds += dt
        s.calls += 1
        s.flops += op_flops(func, args, kwargs, out)
        if not func.is_view:  # a view moves no data
            s.nbytes += _unique_bytes(_tensors(args) + _tensors(kwargs)) + _unique_bytes(
                _tensors(out))
        return out


def op_flops(func, args, kwargs, out) -> int:
    """FLOPs of a convolution (each requested pass of its backward costs what the forward
    does) or of an op with a PyTorch FLOP formula; 0 for the rest."""
    if func is aten.convolution.default:
        w = args[1]  # (C_out, C_in / groups, kh, kw): groups are in its shape
        return 2 * out.numel() * w.shape[1] * w.shape[-2] * w.shape[-1]
    if func is aten.convolution_backward.default:
        grad, w, mask = args[0], args[2], args[10]
        passes = int(mask[0]) + int(mask[1])
        return 2 * grad.numel() * w.shape[1] * w.shape[-2] * w.shape[-1] * passes
    if func.overloadpacket.__name__ == "depthwise_weight_grad":
        grad, kernel = args[0], args[2]
        return 2 * grad.numel() * kernel[0] * kernel[1]
    if func.overloadpacket.__name__ == "dense_weight_grad":
        grad, x, kernel = args[0], args[1], args[2]
        return 2 * grad.numel() * x.shape[1] * kernel[0] * kernel[1]
    formula = flop_registry.get(func.overloadpacket)
    return int(formula(*args, **kwargs, out_val=out)) if formula is not None else 0


def _unique_bytes(tensors: list[torch.Tensor]) -> int:
    seen, nbytes = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.device.type == "cpu" and key not in seen:
            seen.add(key)
            nbytes += t.numel() * t.element_size()
    return nbytes


def profile_step(setting: str, order: int, threads: int, warmup: int = 2):
    """Op times of one step after ``warmup`` steps, inside the CPU tensor cache the search
    runs use (older checkouts: PyTorch's allocator)."""
    from nasspeech.search import search_step

    with run_context():
        return _profile_step(search_step, setting, order, threads, warmup)


def _profile_step(search_step, setting: str, order: int, threads: int, warmup: int):
    net, arch, opt, train, val = setup(setting, order, threads)
    for _ in range(warmup):
        search_step(net, arch, opt, train, val, lr=0.025)
    t0 = time.perf_counter()
    search_step(net, arch, opt, train, val, lr=0.025)
    plain = time.perf_counter() - t0
    timer = OpTimer()
    t0 = time.perf_counter()
    with timer:
        search_step(net, arch, opt, train, val, lr=0.025)
    return timer.stats, plain, time.perf_counter() - t0


ELEMENTWISE = {"add", "add_", "mul", "mul_", "addcmul", "addcmul_", "relu", "threshold",
               "threshold_backward", "zero_", "fill_", "sub", "div", "copy_", "clone", "sum",
               "cat", "neg", "where"}


def kind(op: str) -> str:
    """The op types grouped into the kinds the step is made of."""
    if op.startswith("conv fwd depthwise"):
        return "depthwise conv, forward (and input gradient, run as a forward conv)"
    if op.startswith("conv bwd-weight depthwise"):
        return "depthwise conv, weight gradient"
    if op.startswith("conv"):
        return "dense conv (1x1, 1x7, 7x1, 2x2, stem), forward and backward"
    if op.startswith("batch_norm"):
        return "BatchNorm, forward and backward"
    if op.startswith("max_pool"):
        return "max pooling, forward and backward"
    if op in ELEMENTWISE:
        return "elementwise and reductions (add, mul, addcmul, relu, ...)"
    return "other (views, small ops, optimizer)"


def grouped(stats: dict[str, OpStats]) -> dict[str, OpStats]:
    out: dict[str, OpStats] = collections.defaultdict(OpStats)
    for name, s in stats.items():
        g = out[kind(name)]
        g.seconds += s.seconds
        g.calls += s.calls
        g.flops += s.flops
        g.nbytes += s.nbytes
    return out


def table(stats: dict[str, OpStats], flops_peak: float, bw_dram: float, bw_cache: float,
          rows: int = 25) -> list[str]:
    total = sum(s.seconds for s in stats.values())
    lines = [("| op type | calls | time (s) | share | GFLOP/s | % of peak FLOP/s | GB moved | "
             "GB/s | % of copy BW (DRAM / cache) | bound (s) | time / bound |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in sorted(stats.items(), key=lambda kv: -kv[1].seconds)[:rows]:
        gflops = s.flops / s.seconds / 1e9 if s.flops and s.seconds else None
        gbs = s.nbytes / s.seconds / 1e9
        bound = max(s.flops / flops_peak, s.nbytes / bw_dram)
        far = f"{bound:.3f} | {s.seconds / bound:.1f}" if bound else "- | -"  # views: no bytes
        lines.append(
            f"| {name} | {s.calls} | {s.seconds:.3f} | {100 * s.seconds / total:.1f} % | "
            + (f"{gflops:.1f} | {100 * gflops * 1e9 / flops_peak:.1f} %" if gflops else "- | -")
            + f" | {s.nbytes / 1e9:.2f} | {gbs:.1f} | {100 * gbs * 1e9 / bw_dram:.0f} % / "
            f"{100 * gbs * 1e9 / bw_cache:.0f} % | {far} |")
    rest = sum(s.seconds for _, s in sorted(stats.items(), key=lambda kv: -kv[1].seconds)[rows:])
    if rest:
        lines.append(f"| (other op types) | | {rest:.3f} | {100 * rest / total:.1f} % "
                     "| | | | | | | |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--setting", default="cnn", choices=list(SETTINGS))
    p.add_argument("--order", type=int, default=1, choices=(1, 2))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rows", type=int, default=25)
    a = p.parse_args()
    load0 = os.getloadavg()
    flops_mm, flops_conv = peak_flops(a.threads), peak_conv_flops(a.threads)
    flops_peak = max(flops_mm, flops_conv)
    bw_dram = peak_bandwidth(a.threads, 512 << 20)
    bw_cache = peak_bandwidth(a.threads, 8 << 20)
    stats, plain, timed = profile_step(a.setting, a.order, a.threads)
    total_flops = sum(s.flops for s in stats.values())
    total_bytes = sum(s.nbytes for s in stats.values())
    in_ops = sum(s.seconds for s in stats.values())
    print(f"setting {a.setting}, order {a.order}, {a.threads} threads; load average "
          f"{load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"peak: {flops_mm / 1e9:.1f} GFLOP/s (fp32 matmul), {flops_conv / 1e9:.1f} GFLOP/s "
          f"(3x3 conv, oneDNN), copy {bw_dram / 1e9:.1f} GB/s "
          f"(512 MB, DRAM) / {bw_cache / 1e9:.1f} GB/s (8 MB, cache)")
    print(f"step {plain:.2f} s; under the op timer {timed:.2f} s, of which {in_ops:.2f} s in ATen "
          f"ops; {total_flops / 1e9:.1f} GFLOP, {total_bytes / 1e9:.1f} GB moved (at least); "
          f"the step at peak: {max(total_flops / flops_peak, total_bytes / bw_dram):.2f} s\n")
    print("\n".join(table(grouped(stats), flops_peak, bw_dram, bw_cache, a.rows)
                    ).replace("| op type |", "| kind |"))
    print()
    print("\n".join(table(stats, flops_peak, bw_dram, bw_cache, a.rows)))


if __name__ == "__main__":
    main()
