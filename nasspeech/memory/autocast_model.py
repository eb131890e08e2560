"""A model of torch's autocast for tensors that have none (meta tensors; fake CPU tensors
standing in for CUDA ones): what CUDA's bf16 autocast casts, where, and what it keeps.

The estimator traces CUDA-target steps on meta tensors, but torch's autocast acts on CUDA
(or CPU) tensors only. :class:`AutocastModel` applies an autocast policy table at the level
of torch functions, above autograd as the real autocast does (so the casts are recorded in
the autograd graph and the backward pass sees the same dtypes):

- ``lower``: floating tensor arguments cast to bf16 (``conv2d``, ``linear``, ``matmul``,
  ``bmm``, attention...); casts of fp32 leaf tensors that require grad (the weights) are
  cached until the outermost autocast region ends, as torch's cast cache does;
- ``fp32``: cast to fp32 (``layer_norm``, the losses, ``exp``, ``log``...);
- ``fp32_out``: reductions given ``dtype=float32`` when their first argument is floating
  (``softmax``, ``log_softmax``, ``sum``, ``cumsum``...);
- ``promote``: every floating argument cast to the widest among them (``addcmul``,
  ``index_put``...); an fp16 tensor next to bf16 ones raises what CUDA raises
  ("Unexpected floating ScalarType in at::autocast::prioritize");
- recurrent layers (``lstm``, ``gru``, ``rnn_*``): run in fp16 whatever the autocast dtype,
  as cuDNN's autocast wrapper does (:mod:`nasspeech.memory.cudnn_rnn` allocates its buffers).

:data:`CUDA_POLICY` is torch 2.13's CUDA table (``aten/src/ATen/autocast_mode.h``),
:data:`CPU_POLICY` the part of the CPU table the built-in ops reach; the tests check the
model against torch's own CPU autocast with the latter. A Python function that hands itself
to ``__torch_function__`` (``F.multi_head_attention_forward``...) and is not in the table runs
with its torch functions seen one by one, as torch's autocast sees its aten ops; a C++
composite is modelled at its outer call only (its inner aten ops are not seen).
"""

from __future__ import annotations

import contextlib
import types
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_LOWER = ("_convolution conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d "
          "conv_transpose3d convolution prelu addmm addmv addr matmul einsum mm mv "
          "linalg_vecdot linear addbmm baddbmm bmm chain_matmul linalg_multi_dot "
          "_thnn_fused_lstm_cell _thnn_fused_gru_cell lstm_cell gru_cell rnn_tanh_cell "
          "rnn_relu_cell _scaled_dot_product_flash_attention scaled_dot_product_attention")
_FP32 = ("acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan pow "
         "softplus layer_norm native_layer_norm rms_norm group_norm frobenius_norm "
         "nuclear_norm cosine_similarity poisson_nll_loss cosine_embedding_loss nll_loss "
         "nll_loss2d hinge_embedding_loss kl_div l1_loss smooth_l1_loss huber_loss mse_loss "
         "margin_ranking_loss multilabel_margin_loss soft_margin_loss triplet_margin_loss "
         "multi_margin_loss binary_cross_entropy_with_logits dist pdist cdist renorm "
         "logsumexp upsample_nearest1d upsample_nearest2d upsample_nearest3d "
         "upsample_linear1d upsample_bilinear2d upsample_trilinear3d upsample_bicubic2d "
         "interpolate cross_entropy __pow__ __rpow__")
_FP32_OUT = "prod softmax log_softmax cumprod cumsum linalg_vector_norm linalg_matrix_norm sum"
_PROMOTE = "addcdiv addcmul atan2 bilinear cross dot vdot grid_sampler index_put tensordot " \
           "scatter_add"
_FP16 = "lstm gru rnn_tanh rnn_relu"


def _table(**groups: str) -> dict[str, str]:
    return {name: policy for policy, names in groups.items() for name in names.split()}


#: CUDA's autocast policy by function name (torch 2.13).
CUDA_POLICY: dict[str, str] = _table(lower=_LOWER, fp32=_FP32, fp32_out=_FP32_OUT,
                                     promote=_PROMOTE, fp16=_FP16)
#: The CPU autocast policy for the functions the built-in ops call (to check the model
#: against torch's own CPU autocast): matmuls, convolutions and attention in bf16, the
#: losses in fp32, ``cat``/``stack`` promoting; layer norm and softmax are not cast on CPU.
CPU_POLICY: dict[str, str] = _table(
    lower="conv1d conv2d conv3d bmm mm baddbmm addmm addbmm linear matmul conv_tbc "
          "conv_transpose1d conv_transpose2d conv_transpose3d prelu "
          "scaled_dot_product_attention",
    fp32="nll_loss cross_entropy mse_loss l1_loss smooth_l1_loss huber_loss kl_div "
         "binary_cross_entropy_with_logits cdist prod",
    promote="cat stack index_copy")

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _name(func: Any) -> str:
    name = getattr(func, "__name__", "")
    return name.split(".")[0] if isinstance(func, torch._ops.OpOverload) else name


class AutocastModel:
    """Autocast regions with ``policy`` (default :data:`CUDA_POLICY`) to ``dtype``; installed
    with :func:`nasspeech.kernels.precision.modelled_autocast`."""

    def __init__(self, policy: dict[str, str] | None = None,
                 dtype: torch.dtype = torch.bfloat16) -> None:
        self.policy = CUDA_POLICY if policy is None else policy
        self.dtype = dtype
        self._stack: list[bool] = []
        self._cache: dict[int, tuple[weakref.ref, torch.Tensor]] = {}
        self._mode: _Mode | None = None

    def enabled(self) -> bool:
        return bool(self._stack) and self._stack[-1]

    @contextlib.contextmanager
    def region(self, enabled: bool) -> Iterator[None]:
        """An autocast region (``enabled``) or a region with autocast off inside one."""
        self._stack.append(enabled)
        outermost = self._mode is None
        if outermost:
            self._mode = _Mode(self)
            self._mode.__enter__()
        try:
            yield
        finally:
            self._stack.pop()
            if outermost:
                mode, self._mode = self._mode, None
                self._cache.clear()  # as torch does when the outermost region ends
                mode.__exit__(None, None, None)

    # -- casts -------------------------------------------------------------------------
    def cast(self, t: Any, dtype: torch.dtype, memo: dict[int, Any] | None = None) -> Any:
        """``t`` cast to ``dtype`` the way autocast casts an argument (lists item by item;
        within one call (``memo``), one tensor passed twice is cast once, as an op that
        decomposes into one call per distinct input does: self-attention's q = k = v)."""
        if isinstance(t, (list, tuple)):
            return type(t)(self.cast(v, dtype, memo) for v in t)
        if not isinstance(t, torch.Tensor) or t.dtype not in _FLOATS or t.dtype == dtype:
            return t
        if memo is not None:
            if id(t) not in memo:
                memo[id(t)] = self.cast(t, dtype)
            return memo[id(t)]
        if (dtype == self.dtype and t.dtype == torch.float32 and t.requires_grad
                and t.is_leaf and not t._is_view()):
            hit = self._cache.get(id(t))
            if hit is not None and hit[0]() is t:
                return hit[1]
            out = t.to(dtype)
            self._cache[id(t)] = (weakref.ref(t), out)
            return out
        return t.to(dtype)

    def promoted(self, values: Any) -> torch.dtype:
        """The dtype autocast's ``promote`` policy picks for these arguments."""
        current = self.dtype
        for v in _tensors(values):
            if v.dtype not in _FLOATS:
                continue
            if current == torch.float32 or v.dtype == torch.float32:
                current = torch.float32
            elif v.dtype != self.dtype:
                raise RuntimeError("Unexpected floating ScalarType in at::autocast::prioritize")
        return current

    def call(self, func: Any, args: tuple, kwargs: dict) -> Any:
        policy = self.policy.get(_name(func)) if self.enabled() else None
        if policy is None:
            body = _unguarded(func) if self.enabled() else None
            if body is None:
                return func(*args, **kwargs)
            with self._mode:  # the function's own torch functions pass through the mode
                return body(*args, **kwargs)
        if policy == "fp32_out":
            first = next(iter(_tensors(args)), None)
            if (first is not None and first.dtype in _FLOATS and "dtype" not in kwargs
                    and not any(isinstance(a, torch.dtype) for a in args)
                    and not isinstance(func, torch._ops.OpOverload)):
                kwargs = {**kwargs, "dtype": torch.float32}
            return func(*args, **kwargs)
        dtype = {"lower": self.dtype, "fp32": torch.float32, "fp16": torch.float16}.get(policy)
        if dtype is None:  # promote
            dtype = self.promoted((args, list(kwargs.values())))
        # C++ evaluates the casts of an op's arguments last to first (GCC): keyword
        # arguments (the later ones) first, then the positional ones backwards
        memo: dict[int, Any] = {}
        kw = {k: self.cast(v, dtype, memo) for k, v in reversed(kwargs.items())}
        cast = [self.cast(a, dtype, memo) for a in reversed(args)][::-1]
        return func(*cast, **kw)


_GUARDS = ("has_torch_function", "has_torch_function_unary", "has_torch_function_variadic")
_GUARDED: dict[Any, bool] = {}


def _unguarded(func: Any) -> Any:
    """A copy of a module-level Python function that hands itself to ``__torch_function__``
    (the ``has_torch_function`` check of ``torch.nn.functional``), without that check, so
    that it runs under the mode; None for anything else (methods such as
    ``Tensor.unflatten`` hand their C++ call back as themselves). Made per call: the copy
    sees the module's globals as they are now (a tracer may have patched one)."""
    guarded = _GUARDED.get(func)
    if guarded is None:
        code = getattr(func, "__code__", None)
        guarded = _GUARDED[func] = (
            isinstance(func, types.FunctionType) and "." not in func.__qualname__
            and any(g in code.co_names for g in _GUARDS))
    if not guarded:
        return None
    scope = dict(func.__globals__)
    scope.update(dict.fromkeys(_GUARDS, _never))
    body = types.FunctionType(func.__code__, scope, func.__name__, func.__defaults__,
                              func.__closure__)
    body.__kwdefaults__ = func.__kwdefaults__
    return body


def _never(*_args: Any) -> bool:
    return False


def _tensors(values: Any) -> Iterator[torch.Tensor]:
    stack = [values]
    while stack:
        v = stack.pop(0)
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            stack[:0] = list(v)


class _Mode(TorchFunctionMode):
    def __init__(self, model: AutocastModel) -> None:
        super().__init__()
        self.model = model

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.model.call(func, args, kwargs or {})
