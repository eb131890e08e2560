"""What PyTorch's CPU backend would choose for a call, asked with storage-less CPU tensors.

The tracers run the step on meta tensors but must follow the code path a CPU tensor (a fake
CPU tensor, in the reference tracer) takes where PyTorch picks by device: the memory format
of a convolution's outputs, and the scaled-dot-product attention kernel. :func:`cpu_like`
gives a CPU tensor with a meta tensor's metadata and no memory of its own to ask with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.fx.operator_schemas import normalize_function
from torch.nn.attention import SDPBackend
from torch.utils._python_dispatch import _disable_current_modes

_SDP_FLASH_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default


def arg_key(a: Any) -> Any:
    """The metadata of an op argument that its result depends on (a cache key part)."""
    t = type(a)
    if t is Tensor or isinstance(a, Tensor):
        return (a.shape, a.stride(), a.dtype, a.is_meta, a.requires_grad)
    if t is float or t is bool:
        return (t, a)  # 1, 1.0 and True are equal and hash alike, but promote differently
    if t is list or t is tuple:
        return (t, *[x if type(x) is int else arg_key(x) for x in a])
    return a


#: the address every probe tensor of :func:`cpu_like` points at; nothing ever reads it
_PROBE_ADDRESS = torch.empty(8, dtype=torch.float64)
_CPU = torch.device("cpu")


def cpu_like(t: Tensor | None, contiguous: bool = False) -> Tensor | None:
    """A CPU tensor with ``t``'s metadata (``contiguous``: contiguous strides) and no memory
    of its own, to ask PyTorch what a CPU backend does: backend choices read metadata only.
    Its storage borrows the address of a small buffer, so a trace allocates no host memory
    the size of the model's tensors (an emoDARTS-sized conv input is gigabytes)."""
    if t is None:
        return None
    shape = tuple(t.shape)
    stride = _contiguous_strides(shape) if contiguous else t.stride()
    span = 0 if 0 in shape else 1 + sum((n - 1) * s for n, s in zip(shape, stride))
    storage = torch._C._construct_storage_from_data_pointer(
        _PROBE_ADDRESS.data_ptr(), _CPU, span * t.element_size())
    out = torch.empty(0, dtype=t.dtype, device=_CPU).set_(storage, 0, shape, stride)
    return out.requires_grad_() if t.requires_grad else out


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def cpu_conv_layout(func: Any, args: tuple, kwargs: dict | None, out: Any) -> Any:
    """Lay the convolution outputs out in the memory format the CPU backend picks (what
    FakeTensor's convolution rule does for fake CPU tensors)."""
    _, kw = normalize_function(func, args, kwargs or {}, normalize_to_only_use_kwargs=True)
    inp, weight = cpu_like(kw["input"]), cpu_like(kw["weight"])
    select = {k: kw[k] for k in ("stride", "padding", "dilation", "transposed",
                                 "output_padding", "groups")}
    select["bias"] = cpu_like(kw.get("bias"))
    if select["bias"] is None:
        select["bias_sizes"] = kw.get("bias_sizes")
    backend = torch._C._select_conv_backend(inp, weight, **select)
    if weight.ndim == 3 and not inp.is_mkldnn:  # a copy would read the probe's memory
        inp, weight = cpu_like(kw["input"], contiguous=True).unsqueeze(2), weight.unsqueeze(2)
    fmt = torch._C._conv_determine_backend_memory_format(inp, weight, backend)

    def convert(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        if t.dim() == 3 and fmt == torch.channels_last:
            return t.unsqueeze(2).to(memory_format=fmt).squeeze(2)
        return t.to(memory_format=fmt)

    if isinstance(out, Tensor):
        return convert(out)
    return (convert(out[0]), convert(out[1]), out[2])


_SDP_CHOICES: dict[tuple, int] = {}


@contextlib.contextmanager
def cpu_attention() -> Iterator[None]:
    """Within the block, ``F.scaled_dot_product_attention`` on meta tensors runs the kernel
    PyTorch picks for CPU tensors of the same shapes (its C++ backend choice goes by device
    and would take the math fallback for meta tensors), as the fake trace does."""
    original = F.scaled_dot_product_attention

    def sdpa(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
             dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
             enable_gqa: bool = False) -> Tensor:
        if query.device.type == "meta":
            if attn_mask is not None:
                raise NotImplementedError("attention masks on meta tensors")
            k = (arg_key(query), arg_key(key), arg_key(value), dropout_p, is_causal, scale,
                 enable_gqa, torch.is_grad_enabled())
            if k not in _SDP_CHOICES:
                with _disable_current_modes():  # the probe tensors are not the step's
                    _SDP_CHOICES[k] = int(torch._fused_sdp_choice(
                        cpu_like(query), cpu_like(key), cpu_like(value), None, dropout_p, is_causal,
                        scale=scale, enable_gqa=enable_gqa))
            if _SDP_CHOICES[k] == int(SDPBackend.FLASH_ATTENTION):
                return _SDP_FLASH_CPU(query, key, value, dropout_p, is_causal, scale=scale)[0]
            if _SDP_CHOICES[k] != int(SDPBackend.MATH):
                raise NotImplementedError(f"attention backend {_SDP_CHOICES[k]} on meta tensors")
        return original(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                        enable_gqa=enable_gqa)

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
