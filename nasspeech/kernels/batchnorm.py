"""BatchNorm for search cells: no affine parameters (as in DARTS) and half the saved memory.

A BatchNorm without affine parameters outputs ``y = (x - mean) * invstd``, from which its
backward can be computed without ``x``: ``dx = invstd * (dy - mean(dy) - y * mean(dy * y))``.
:class:`SearchBatchNorm2d` therefore keeps its *output* for the backward pass instead of its
input. The next consumer (the mixed op's weighted sum, a ReLU, a convolution) keeps that
output anyway, so the input (a convolution's output) is freed right away: one activation
fewer per candidate op. Forward results and running statistics are those of
``nn.BatchNorm2d(affine=False)``.

On real channels-last fp32 CPU tensors in training, the forward (statistics in one read of
the input, then ``y`` and the weighted sum in one pass) and the backward without a graph run
compiled kernels (``csrc/batchnorm.cpp``, :mod:`nasspeech.kernels.native`); elsewhere (bf16,
other layouts, fake tensors, :func:`~nasspeech.kernels.dispatch.reference_kernels`, ONNX
export and tracing, a double backward, no compiler) PyTorch's.
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.kernels.dispatch import compiled_ops, fast_cpu_path

_native_bn = torch.ops.aten.native_batch_norm.default
_native_bn_backward = torch.ops.aten.native_batch_norm_backward.default


class _OutputSavingBatchNorm(torch.autograd.Function):
    """``(y, invstd)`` of a training-mode BatchNorm without affine parameters; the backward
    needs only these two (both outputs, so a double backward differentiates through them)."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, momentum, eps):  # type: ignore[override]
        if (ops := _compiled(x)) is not None and _stats_fit(running_mean, running_var):
            y, invstd = ops.batch_norm_forward(x, running_mean, running_var, momentum, eps)
        else:
            y, _, invstd = _native_bn(x, None, None, running_mean, running_var, True, momentum,
                                      eps)
        ctx.save_for_backward(y, invstd)
        ctx.set_materialize_grads(False)
        return y, invstd

    @staticmethod
    def backward(ctx, grad, grad_invstd):  # type: ignore[override]
        y, invstd = ctx.saved_tensors
        if grad is None and grad_invstd is None:
            return None, None, None, None, None
        if grad is not None and grad_invstd is None and not torch.is_grad_enabled():
            return _fast_grad(grad, y, invstd, False)[0], None, None, None, None
        return _differentiable_grad(grad, grad_invstd, y, invstd), None, None, None, None


class _WeightedBatchNormSum(torch.autograd.Function):
    """``acc + w * y`` with ``(y, invstd)`` a training-mode BatchNorm without affine
    parameters of ``z``: the BatchNorm that ends a candidate op and its term of the mixed
    op's weighted sum, in one autograd node.

    The sum is accumulated in place, and the backward needs no product ``w * grad`` and no
    separate ``sum(grad * y)`` for the gradient of ``w``: the native BatchNorm backward with
    ``weight = w * invstd`` gives ``dz`` and, as its weight gradient, the per-channel
    ``sum(grad * y)`` whose total is ``dw``. ``y`` and ``invstd`` are outputs too, so that a
    double backward differentiates through them.
    """

    @staticmethod
    def forward(ctx, acc, z, w, running_mean, running_var, momentum, eps):  # type: ignore[override]
        ops = _compiled(z)
        if (ops is not None and _stats_fit(running_mean, running_var)
                and w.dtype == torch.float32 and w.numel() == 1 and (acc is None or _fits(acc, z))):
            if acc is None:
                out, y, invstd = ops.batch_norm_weighted(z, w, running_mean, running_var,
                                                         momentum, eps)
            else:
                y, invstd = ops.batch_norm_weighted_sum_(acc, z, w, running_mean, running_var,
                                                         momentum, eps)
                out = acc
        else:
            y, _, invstd = _native_bn(z, None, None, running_mean, running_var, True, momentum,
                                      eps)
            out = y * w if acc is None else acc.addcmul_(y, w)
        ctx.save_for_backward(y, invstd, w)
        ctx.set_materialize_grads(False)
        if acc is not None:
            ctx.mark_dirty(acc)
        return out, y, invstd

    @staticmethod
    def backward(ctx, grad, grad_y, grad_invstd):  # type: ignore[override]
        y, invstd, w = ctx.saved_tensors
        need_acc, need_z, need_w = ctx.needs_input_grad[:3]
        grad_acc = grad if need_acc else None
        grad_z = grad_w = None
        if grad is not None and grad_y is None and grad_invstd is None \
                and not torch.is_grad_enabled():
            if need_z:
                grad_z, per_channel = _fast_grad(grad, y, invstd * w, need_w)
                grad_w = per_channel.sum() if need_w else None
            elif need_w:
                grad_w = _sum_grad_y(grad, y)
        else:
            if need_w and grad is not None:
                grad_w = (grad * y).sum()
            if need_z:
                dy = None if grad is None else grad * w
                if grad_y is not None:
                    dy = grad_y if dy is None else dy + grad_y
                grad_z = _differentiable_grad(dy, grad_invstd, y, invstd)
        return grad_acc, grad_z, grad_w, None, None, None, None


def _compiled(x: torch.Tensor) -> object | None:
    """The compiled kernels where they apply to ``x`` (a real channels-last fp32 CPU tensor
    with more than one value per channel, no ONNX export or tracing), else None."""
    ops = compiled_ops(x)  # first: no size checks inside a trace
    if (ops is None or x.dim() != 4 or x.numel() <= x.shape[1]
            or not x.is_contiguous(memory_format=torch.channels_last)):
        return None
    return ops


def _stats_fit(running_mean: torch.Tensor | None, running_var: torch.Tensor | None) -> bool:
    """Whether the compiled forward can update these running statistics (fp32, contiguous)."""
    return all(t is not None and t.dtype == torch.float32 and t.is_contiguous()
               and fast_cpu_path(t) for t in (running_mean, running_var))


def _fits(t: torch.Tensor, like: torch.Tensor) -> bool:
    """Whether ``t`` can take the compiled kernels' output for ``like`` in place."""
    return (t.dtype == torch.float32 and t.shape == like.shape and fast_cpu_path(t)
            and t.is_contiguous(memory_format=torch.channels_last))


def _sum_grad_y(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum(grad * y)`` (no graph built): the compiled per-channel sums where they apply."""
    if grad.dtype == torch.float32 and (ops := _compiled(y)) is not None:
        return ops.batch_norm_backward(grad, y, y.new_ones(y.shape[1]), False)[1].sum()
    return (grad * y).sum()


def _fast_grad(grad: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, per_channel: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``scale * (grad - mean(grad) - y * mean(grad * y))`` per channel (the input gradient of
    a BatchNorm with output ``y`` times ``scale``) and, if asked, the per-channel
    ``sum(grad * y)`` (no graph built): the compiled kernel where it applies, else the native
    kernel run on the normalised input (mean 0, invstd 1) with ``scale`` as its weight."""
    if (grad.dtype == scale.dtype == torch.float32 and grad.dim() == 4
            and (ops := _compiled(y)) is not None):
        grad_x, per = ops.batch_norm_backward(grad, y, scale.contiguous(), True)
        return grad_x, per if per_channel else None
    zero, one = torch.zeros_like(scale), torch.ones_like(scale)
    grad_x, grad_scale, _ = _native_bn_backward(grad, y, scale, None, None, zero, one, True, 0.0,
                                                [True, per_channel, False])
    return grad_x, grad_scale


def _differentiable_grad(grad: torch.Tensor | None, grad_invstd: torch.Tensor | None,
                         y: torch.Tensor, invstd: torch.Tensor) -> torch.Tensor:
    """The input gradient of ``(y, invstd) = bn(x)`` in differentiable ops (double backward,
    or a gradient through ``invstd``)."""
    n = y.numel() // y.shape[1]
    dims = [0, *range(2, y.dim())]
    shape = [1, -1] + [1] * (y.dim() - 2)
    grad_x = torch.zeros_like(y)
    if grad is not None:
        mean_g = grad.sum(dims) / n
        mean_gy = (grad * y).sum(dims) / n
        grad_x = invstd.view(shape) * (grad - mean_g.view(shape) - y * mean_gy.view(shape))
    if grad_invstd is not None:  # d invstd / dx = -invstd^2 * y / n
        grad_x = grad_x - (invstd.square() * grad_invstd / n).view(shape) * y
    return grad_x


class SearchBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d(affine=False)`` that saves its output, not its input, for backward.

    In-place operations on its output (e.g. a following ``ReLU(inplace=True)``) would
    corrupt the saved output; :func:`use_search_batchnorm` switches such ReLUs off.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 track_running_stats: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine=False,
                         track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.momentum is None or not self.track_running_stats
                or not torch.is_grad_enabled() or not x.requires_grad or x.dim() != 4):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        y, _ = _OutputSavingBatchNorm.apply(x, self.running_mean, self.running_var,
                                            self.momentum, self.eps)
        return y

    def weighted_sum(self, acc: torch.Tensor | None, x: torch.Tensor, w: torch.Tensor
                     ) -> torch.Tensor:
        """``acc + w * self(x)`` (``w * self(x)`` if ``acc`` is None), ``acc`` updated in place
        where it can be: one autograd node instead of three on real CPU tensors in training
        (see :class:`_WeightedBatchNormSum`); PyTorch's own ops elsewhere."""
        if (not self.training or self.momentum is None or not self.track_running_stats
                or not torch.is_grad_enabled() or x.dim() != 4 or not fast_cpu_path(x)
                or not (x.requires_grad or w.requires_grad)):
            y = self(x)
            return w * y if acc is None else torch.addcmul(acc, w, y)
        self.num_batches_tracked.add_(1)
        out, _, _ = _WeightedBatchNormSum.apply(acc, x, w, self.running_mean, self.running_var,
                                                self.momentum, self.eps)
        return out


def use_search_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by a :class:`SearchBatchNorm2d` of
    the same size, eps and momentum; where any was replaced, in-place ReLUs are turned off
    (they would overwrite the output a SearchBatchNorm2d keeps). Returns the module (a new
    one if ``module`` itself is a BatchNorm2d)."""
    if type(module) is nn.BatchNorm2d:
        return _converted(module)
    replaced = False
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                setattr(parent, name, _converted(child))
                replaced = True
    if replaced:
        for m in module.modules():
            if isinstance(m, nn.ReLU) and m.inplace:
                m.inplace = False
    return module


def _converted(bn: nn.BatchNorm2d) -> SearchBatchNorm2d:
    new = SearchBatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.track_running_stats)
    return new.to(device=bn.running_mean.device) if bn.running_mean is not None else new


__all__ = ["SearchBatchNorm2d", "use_search_batchnorm"]
