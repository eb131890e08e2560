"""Measure the device constants the memory estimator assumes (issue #18, part 2).

    python benchmarks/gpu_constants.py --out DIR            # on a CUDA machine, alone on it
    python benchmarks/gpu_constants.py --out DIR --dry-run  # CPU: code paths only

Run it in a fresh process with no other process on the device (the CUDA context is read as
``total - free - reserved``, device-wide). Measures, in this order:

- the CUDA context after initialisation, after the first matmul (cuBLAS), the first
  convolution (cuDNN), the first LSTM, and after a whole search step of a small emoDARTS-like
  space (every library and most kernels loaded): ``overheads.CUDA_CONTEXT``;
- the cuBLAS workspace the first fp32 and bf16 matmuls take from the caching allocator:
  ``overheads.CUBLAS_WORKSPACE*``;
- the cuDNN RNN training reserve space of LSTM/GRU/RNN over a grid of sequence lengths,
  batches, widths, layers and directions (read off the autograd node's saved tensors), and
  whether the weights are copied into a new buffer when they are not one flat chunk (the
  second-order step's ``functional_call``): ``overheads.RNN_RESERVE_PER_LAYER``;
- the transient workspace of each kind of convolution the CNN ops run, at emoDARTS's shapes
  (batch 64): ``overheads.CONV_WORKSPACE_MAX_FACTOR``.

Writes ``DIR/constants.json``.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import Device, build_setup, emodarts_space, env_info, start


def _round(n: int) -> int:
    return max(512, (n + 511) // 512 * 512)


def context_stages(dev: Device) -> dict[str, Any]:
    d = dev.torch_device
    out: dict[str, Any] = {}
    torch.zeros(1, device=d)
    dev.sync()
    out["after_init"] = dev.used_outside_allocator()
    x = torch.randn(256, 256, device=d)
    dev.sync()
    before = dev.allocated()
    y = x @ x
    dev.sync()
    out["cublas_workspace_fp32"] = dev.allocated() - before - _round(y.nbytes)
    out["after_matmul"] = dev.used_outside_allocator()
    xb = x.to(torch.bfloat16)
    dev.sync()
    before = dev.allocated()
    yb = xb @ xb
    dev.sync()
    out["cublas_workspace_bf16_extra"] = dev.allocated() - before - _round(yb.nbytes)
    c = torch.randn(8, 16, 32, 32, device=d)
    F.conv2d(c, torch.randn(16, 16, 3, 3, device=d), padding=1)
    dev.sync()
    out["after_conv"] = dev.used_outside_allocator()
    lstm = nn.LSTM(32, 32, batch_first=True).to(d)
    lstm(torch.randn(4, 8, 32, device=d))[0].sum().backward()
    dev.sync()
    out["after_lstm"] = dev.used_outside_allocator()
    del x, y, xb, yb, c, lstm
    size = 8 if dev.dry else 32  # every op of emoDARTS, small
    setup = build_setup(emodarts_space(dry=True).model_copy(
        update={"input_shape": (1, size, size)}), 8, 2, dev)
    setup.run()
    setup.run()
    dev.sync()
    out["after_search_step"] = dev.used_outside_allocator()
    del setup
    dev.cleanup()
    out["after_search_step_empty_cache"] = dev.used_outside_allocator()
    return out


def _reserve_and_weight_buf(out: torch.Tensor) -> tuple[int, int | None]:
    """(reserve bytes, new weight-buffer bytes or None) saved by the cuDNN RNN node."""
    todo, seen = [out.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if "CudnnRnn" in type(fn).__name__:
            reserve = getattr(fn, "_saved_result3", None)
            wbuf = getattr(fn, "_saved_result4", None)
            if reserve is None:  # another naming: the saved byte tensor is the reserve
                saved = [getattr(fn, n) for n in dir(fn) if n.startswith("_saved_")]
                reserve = next(t for t in saved if isinstance(t, torch.Tensor)
                               and t.dtype == torch.uint8)
            wbytes = wbuf.untyped_storage().nbytes() if isinstance(wbuf, torch.Tensor) \
                and wbuf.numel() else None
            return reserve.untyped_storage().nbytes(), wbytes
        todo.extend(n for n, _ in fn.next_functions)
    raise RuntimeError("no cuDNN RNN node in the graph (is cuDNN enabled?)")


def rnn_reserve(dev: Device) -> list[dict[str, Any]]:
    """The reserve space of ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (batch_first, as the toolkit's
    ops) per shape; ``per_unit`` = bytes / (T x B x H x layers x dirs x 4)."""
    d = dev.torch_device
    grid = [(128, 64, 128), (128, 8, 128), (64, 64, 128), (128, 64, 64), (37, 5, 24),
            (128, 64, 256)]
    if dev.dry:
        grid = [(4, 2, 4)]
    rows = []
    for (kind, cls), (t, b, h), layers, bidir in itertools.product(
            [("lstm", nn.LSTM), ("gru", nn.GRU), ("rnn", nn.RNN)], grid, (1, 2, 4),
            (False, True)):
        if (t, b, h) != grid[0] and (layers, bidir) not in ((1, False), (2, True)):
            continue  # the whole layer/direction grid at the first shape only
        m = cls(h, h, num_layers=layers, batch_first=True, bidirectional=bidir).to(d)
        x = torch.randn(b, t, h, device=d, requires_grad=True)
        row = {"mode": kind, "T": t, "B": b, "H": h, "layers": layers,
               "dirs": 2 if bidir else 1}
        if dev.dry:
            rows.append({**row, "reserve_bytes": 0, "per_unit": 0.0})
            continue
        out = m(x)[0]
        reserve, _ = _reserve_and_weight_buf(out)
        units = t * b * h * layers * row["dirs"] * 4
        row.update(reserve_bytes=reserve, per_unit=round(reserve / units, 4))
        if (t, b, h) == grid[0] and layers == 2:
            # not one flat chunk (functional_call with w', second order): a copied buffer?
            params = {k: v.detach().clone().requires_grad_() for k, v in m.named_parameters()}
            out2 = torch.func.functional_call(m, params, (x,))[0]
            _, wbuf = _reserve_and_weight_buf(out2)
            row["weight_buf_copy_bytes"] = wbuf
            row["weights_bytes"] = sum(p.nbytes for p in m.parameters())
            del out2, params
        rows.append(row)
        del out, x, m
    dev.cleanup()
    return rows


def conv_workspace(dev: Device) -> list[dict[str, Any]]:
    """Transient bytes of one convolution's forward and backward beyond its outputs and
    gradients, for the convolutions the CNN ops run at emoDARTS's shapes (batch 64)."""
    d = dev.torch_device
    b = 2 if dev.dry else 64
    shapes = [(16, 128), (32, 64), (64, 32)] if not dev.dry else [(4, 8)]
    rows = []
    for c, hw in shapes:
        cases = [  # name, c_in, c_out, kernel, stride, padding, dilation, groups
            ("depthwise 3x3", c, c, (3, 3), 1, 1, 1, c),
            ("depthwise 5x5", c, c, (5, 5), 1, 2, 1, c),
            ("depthwise 3x3 dil 2", c, c, (3, 3), 1, 2, 2, c),
            ("depthwise 5x5 dil 2", c, c, (5, 5), 1, 4, 2, c),
            ("depthwise 3x3 stride 2", c, c, (3, 3), 2, 1, 1, c),
            ("pointwise 1x1", c, c, (1, 1), 1, 0, 1, 1),
            ("1x7", c, c, (1, 7), 1, (0, 3), 1, 1),
            ("7x1", c, c, (7, 1), 1, (3, 0), 1, 1),
            ("1x1 stride 2 (reduce)", c, c // 2, (1, 1), 2, 0, 1, 1),
            ("2x2 stride 2 (reduce)", c, c // 2, (2, 2), 2, 0, 1, 1),
        ]
        if c == shapes[0][0]:
            cases.append(("stem 3x3 1->3C", 1, 3 * c, (3, 3), 1, 1, 1, 1))
        for name, cin, cout, k, s, p, dil, g in cases:
            x = torch.randn(b, cin, hw, hw, device=d, requires_grad=True)
            w = torch.randn(cout, cin // g, *k, device=d, requires_grad=True)
            row = {"conv": name, "B": b, "C_in": cin, "C_out": cout, "HW": hw,
                   "input_bytes": x.nbytes}
            for _ in range(2):  # the second call is measured (algorithm choice cached)
                x.grad = w.grad = None
                dev.reset_peaks()
                base = dev.allocated()
                y = F.conv2d(x, w, None, s, p, dil, g)
                dev.sync()
                fwd = dev.peaks()[0] - base - _round(y.nbytes)
                grad = torch.randn_like(y)
                dev.reset_peaks()
                base = dev.allocated()
                y.backward(grad)
                dev.sync()
                bwd = dev.peaks()[0] - base - _round(x.grad.nbytes) - _round(w.grad.nbytes)
                del y, grad
            row.update(fwd_workspace=fwd, bwd_workspace=bwd,
                       max_over_input=round(max(fwd, bwd) / x.nbytes, 4))
            rows.append(row)
            del x, w
        dev.cleanup()
    return rows


def main(argv: list[str] | None = None) -> int:
    started = start("gpu_constants", __doc__, "constants.json", argv)
    if started is None:
        return 0
    _, dev, results = started
    for name, fn in (("context", context_stages), ("env", env_info),
                     ("rnn_reserve", rnn_reserve), ("conv_workspace", conv_workspace)):
        t0 = time.perf_counter()
        try:
            results.add({"kind": name, "value": fn(dev)})
        except Exception as exc:  # noqa: BLE001 - recorded; the next measurement goes on
            results.add({"kind": name, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        print(f"gpu_constants: {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
