"""BatchNorm for search cells: no affine parameters (as in DARTS) and half the saved memory.

A BatchNorm without affine parameters outputs ``y = (x - mean) * invstd``, from which its
backward can be computed without ``x``: ``dx = invstd * (dy - mean(dy) - y * mean(dy * y))``.
:class:`SearchBatchNorm2d` therefore keeps its *output* for the backward pass instead of its
input. The next consumer (the mixed op's weighted sum, a ReLU, a convolution) keeps that
output anyway, so the input (a convolution's output) is freed right away: one activation
fewer per candidate op. Forward results and running statistics are those of
``nn.BatchNorm2d(affine=False)``.
"""

from __future__ import annotations

import torch
from torch import nn

from nasspeech.kernels.dispatch import fast_cpu_path

_native_bn = torch.ops.aten.native_batch_norm.default
_native_bn_backward = torch.ops.aten.native_batch_norm_backward.default


class _OutputSavingBatchNorm(torch.autograd.Function):
    """``(y, invstd)`` of a training-mode BatchNorm without affine parameters; the backward
    needs only these two (both outputs, so a double backward differentiates through them)."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, momentum, eps):  # type: ignore[override]
        y, _, invstd = _native_bn(x, None, None, running_mean, running_var, True, momentum, eps)
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
        y, _, invstd = _native_bn(z, None, None, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(y, invstd, w)
        ctx.set_materialize_grads(False)
        if acc is None:
            return y * w, y, invstd
        ctx.mark_dirty(acc)
        return acc.addcmul_(y, w), y, invstd

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
                grad_w = (grad * y).sum()
        else:
            if need_w and grad is not None:
                grad_w = (grad * y).sum()
            if need_z:
                dy = None if grad is None else grad * w
                if grad_y is not None:
                    dy = grad_y if dy is None else dy + grad_y
                grad_z = _differentiable_grad(dy, grad_invstd, y, invstd)
        return grad_acc, grad_z, grad_w, None, None, None, None


def _fast_grad(grad: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, per_channel: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``scale * (grad - mean(grad) - y * mean(grad * y))`` per channel (the input gradient of
    a BatchNorm with output ``y`` times ``scale``) and, if asked, the per-channel
    ``sum(grad * y)``: the native kernel run on the normalised input (mean 0, invstd 1) with
    ``scale`` as its weight."""
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
