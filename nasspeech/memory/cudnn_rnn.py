"""What cuDNN allocates for ``nn.LSTM``/``nn.GRU``/``nn.RNN`` training, on fake tensors.

On CUDA, PyTorch runs a whole multi-layer RNN as one ``_cudnn_rnn`` call: it returns the
output sequence, the final hidden (and cell) state and a *reserve space* that keeps what
the backward pass needs (all layers, all steps), and saves the input, weights, initial states,
output and reserve for backward (plus a copy of the weights in one buffer when they are not
already one flat chunk: the module's own weights are, after ``.to(device)``; the weights
``functional_call`` substitutes, as the second-order step does, are not); ``_cudnn_rnn_backward`` returns the input, state and weight
gradients. The CPU kernels a fake trace would run instead (oneDNN per layer, or a Python-level
loop over time steps for ``nn.RNN``) keep different buffers, and PyTorch's fake kernels count
the reserve space as 0. :func:`emulate_cudnn_rnns` swaps each RNN module's forward, for the
duration of a CUDA-target trace, for an autograd function with exactly cuDNN's tensors; the
reserve size comes from :mod:`nasspeech.memory.overheads` (measured on an H200).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from nasspeech.kernels.precision import autocast_active
from nasspeech.memory import overheads


class _CudnnRnn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, meta: dict, x: torch.Tensor, hx: torch.Tensor,
                cx: torch.Tensor | None, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t, b = meta["seq_len"], meta["batch"]
        out = x.new_empty(t, b, meta["hidden"] * meta["dirs"])
        hy = hx.new_empty(hx.shape)
        cy = cx.new_empty(cx.shape) if cx is not None else hx.new_empty(0)
        reserve_bytes = overheads.cudnn_rnn_reserve_bytes(
            meta["mode"], t, b, meta["hidden"], meta["dirs"], layers=meta["layers"])
        reserve = x.new_empty(reserve_bytes // x.element_size())
        # weights that are not the module's own (one flat chunk after .to(device)), e.g.
        # w' under functional_call: cuDNN copies them into a buffer it keeps for backward
        copied = x.new_empty(sum(w.numel() for w in weights)) if meta["copy_weights"] \
            else x.new_empty(0)
        ctx.meta = meta
        ctx.has_cx = cx is not None
        ctx.save_for_backward(x, hx, cx if cx is not None else hx.new_empty(0), out, reserve,
                              copied, *weights)
        ctx.mark_non_differentiable(reserve)
        return out, hy, cy, reserve

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor, d_hy: torch.Tensor, d_cy: torch.Tensor,
                 _d_reserve: torch.Tensor) -> tuple[Any, ...]:
        x, hx, cx, _out, _reserve, _copied, *weights = ctx.saved_tensors
        dx = torch.empty_like(x)
        dhx = torch.empty_like(hx)
        dcx = torch.empty_like(cx) if ctx.has_cx else None
        dws = [torch.empty_like(w) for w in weights]
        return (None, dx, dhx, dcx, *dws)


def _forward(module: nn.RNNBase, x: torch.Tensor, hx: Any = None) -> tuple[Any, Any]:
    if getattr(module, "_weights_have_changed", lambda: False)():
        module._init_flat_weights()  # as RNNBase.forward: e.g. weights from functional_call
    if module.batch_first:
        x = x.transpose(0, 1)
    x = x.contiguous()
    t, b = x.shape[0], x.shape[1]
    dirs = 2 if module.bidirectional else 1
    shape = (module.num_layers * dirs, b, module.hidden_size)
    is_lstm = isinstance(module, nn.LSTM)
    if hx is None:
        h0 = x.new_zeros(shape)
        c0 = x.new_zeros(shape) if is_lstm else None
    elif is_lstm:
        h0, c0 = hx
    else:
        h0, c0 = hx, None
    mode = "lstm" if is_lstm else "gru" if isinstance(module, nn.GRU) else "rnn"
    own = getattr(module, "_nasspeech_own_weights", None)
    weights = module._flat_weights
    copy = own is not None and own != [id(w) for w in weights]
    if autocast_active(x.device.type):
        # cuDNN's autocast runs the RNN in fp16 (whatever the autocast dtype): fp16 copies of
        # the input, the states and the weights (the latter in one flat buffer, kept)
        x, h0 = x.half(), h0.half()
        c0 = c0.half() if c0 is not None else None
        weights, copy = [w.half() for w in weights], False
    meta = {"seq_len": t, "batch": b, "hidden": module.hidden_size, "dirs": dirs,
            "layers": module.num_layers, "mode": mode, "copy_weights": copy}
    out, hy, cy, _reserve = _CudnnRnn.apply(meta, x, h0, c0, *weights)
    if module.batch_first:
        out = out.transpose(0, 1)
    return out, ((hy, cy) if is_lstm else hy)


@contextlib.contextmanager
def emulate_cudnn_rnns(model: nn.Module) -> Iterator[int]:
    """Within the block, every plain ``nn.LSTM``/``nn.GRU``/``nn.RNN`` of ``model`` allocates
    what cuDNN would. Yields how many modules were swapped."""
    swapped = []
    for m in model.modules():
        if isinstance(m, nn.RNNBase) and not getattr(m, "proj_size", 0):
            m.forward = _forward.__get__(m)
            m._nasspeech_own_weights = [id(w) for w in m._flat_weights]
            swapped.append(m)
    try:
        yield len(swapped)
    finally:
        for m in swapped:
            del m.forward, m._nasspeech_own_weights
