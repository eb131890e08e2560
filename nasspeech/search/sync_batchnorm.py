"""BatchNorm over the whole global batch of a data-parallel search (``search.sync_batchnorm``).

``torch.nn.SyncBatchNorm`` runs on CUDA only; this one runs wherever the group's all-reduce
does (gloo on CPU, NCCL on CUDA). Each training forward all-reduces, per channel, the sum and
the sum of squares of its input (shifted by the running mean, which every process holds
alike, against cancellation) and the sample count: one collective per BatchNorm. It is built
from differentiable operations, the all-reduce included, so its backward and double backward
are those of a one-process BatchNorm over the global batch. It keeps its input for backward
(not its output, as :class:`~nasspeech.kernels.batchnorm.SearchBatchNorm2d` does).

The BatchNorms are converted in place (their class becomes a synchronised subclass of their
own): mixed ops also reach their candidates' modules through plain lists
(:class:`~nasspeech.space.mixed_op.MixedOp`), which replacing child modules would miss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

Reduce = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]


class SyncBatchNorm(_BatchNorm):
    """Mixed into a BatchNorm's class by :func:`convert_sync_batchnorm`: training statistics
    over the global batch. ``_sync_reduce`` sums tensors over the processes
    (differentiably); ``_sync_counts()`` says whether this process's current input is real
    data (a stand-in sample contributes nothing)."""

    _sync_reduce: Reduce
    _sync_counts: Callable[[], bool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.dim() < 2:  # evaluation is local (one process may run it)
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        c = x.shape[1]
        shift = (self.running_mean.detach().float() if self.running_mean is not None
                 else x.new_zeros(c, dtype=torch.float32))
        xs = x.float() - shift.view(shape)
        weight = 1.0 if self._sync_counts() else 0.0
        stats = torch.cat([xs.sum(dims) * weight, (xs * xs).sum(dims) * weight,
                           xs.new_full((1,), weight * (x.numel() // c))])
        total = self._sync_reduce([stats])[0]
        n = total[2 * c]
        mean_s = total[:c] / n
        var = (total[c:2 * c] / n - mean_s * mean_s).clamp_min(0.0)
        y = (xs - mean_s.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running(shift + mean_s.detach(), var.detach(), float(n.detach()))
        return y.to(x.dtype)

    def weighted_sum(self, acc: torch.Tensor | None, x: torch.Tensor, w: torch.Tensor
                     ) -> torch.Tensor:
        """``acc + w * self(x)`` through the synchronised forward (a mixed op's fused
        BatchNorm-and-sum kernel would take per-process statistics)."""
        y = self(x)
        return w * y if acc is None else torch.addcmul(acc, w, y)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        running_mean, running_var = self.running_mean, self.running_var
        tracked = self.num_batches_tracked
        assert running_mean is not None and running_var is not None and tracked is not None
        tracked.add_(1)
        momentum = 1.0 / float(tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / max(n - 1.0, 1.0))
        running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        running_var.lerp_(unbiased.to(running_var.dtype), momentum)


_SYNC_CLASSES: dict[type, type] = {}


def _sync_class(cls: type) -> type:
    if cls not in _SYNC_CLASSES:
        _SYNC_CLASSES[cls] = type(f"Sync{cls.__name__}", (SyncBatchNorm, cls),
                                  {"__module__": __name__})
    return _SYNC_CLASSES[cls]


def convert_sync_batchnorm(module: nn.Module, reduce: Reduce, counts: Callable[[], bool]
                           ) -> int:
    """Make every BatchNorm inside ``module`` synchronised, in place (same object, same
    parameters and buffers); returns how many were converted."""
    converted = 0
    for m in module.modules():
        if isinstance(m, _BatchNorm) and not isinstance(m, SyncBatchNorm):
            m.__class__ = _sync_class(type(m))
            setattr(m, "_sync_reduce", reduce)  # noqa: B010 - plain attributes, not modules
            setattr(m, "_sync_counts", counts)  # noqa: B010
            converted += 1
    return converted


__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]
