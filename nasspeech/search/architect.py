"""The Architect: bi-level optimisation of the alphas (DARTS), first or second order.

Second order follows Liu et al. (2019): a virtual SGD step on the training batch
``w' = w - eta * (momentum * buf + dL_train/dw + wd * w)``, the validation gradient at ``w'``,
and the implicit term ``- eta * (grad_a L_train(w+) - grad_a L_train(w-)) / (2 * eps)`` with
``w+- = w +- eps * v``, ``v = dL_val/dw'`` and ``eps = 0.01 / ||v||``. The virtual step is
evaluated with :func:`torch.func.functional_call`, so no copy of the supernet is made.

``hvp="exact"`` replaces the finite difference by double backward: the virtual step is kept in
the autograd graph (``create_graph=True``), so the alpha gradient of the validation loss at
``w'`` flows through ``w'`` and holds ``- eta * d2L_train/(da dw) . v`` exactly (still no
second copy of the net; the training graph is kept alive until the alpha gradient is taken).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from nasspeech.kernels.precision import at_least_fp32, autocast, check_precision

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Sums gradient lists over data-parallel processes (nasspeech.search.distributed).
GradSync = Callable[[list[torch.Tensor]], list[torch.Tensor]]
HVP = Literal["finite_difference", "exact"]
HVP_MODES: tuple[str, ...] = ("finite_difference", "exact")


class Architect:
    """Updates the supernet's alphas with Adam on the validation loss."""

    def __init__(
        self,
        model: nn.Module,
        order: int = 1,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        loss_fn: LossFn = F.cross_entropy,
        fd_radius: float = 0.01,
        hvp: HVP = "finite_difference",
        grad_sync: GradSync | None = None,
        precision: str = "fp32",
    ) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (first order) or 2 (second order), got {order}")
        if hvp not in HVP_MODES:
            raise ValueError(f"hvp must be one of {', '.join(HVP_MODES)}, got {hvp!r}")
        self.hvp = hvp
        self.precision = check_precision(precision)
        self.model = model
        self.order = order
        self.loss_fn = loss_fn
        self.w_momentum = w_momentum
        self.w_weight_decay = w_weight_decay
        self.fd_radius = fd_radius
        # data-parallel search: every gradient list taken below is summed over the processes
        # (their losses are pre-weighted by their share of the batch), so w', v, eps and the
        # alpha step are the same in every process
        self.grad_sync = grad_sync
        self._sync = grad_sync or (lambda grads: grads)
        self.alphas = list(model.alpha_parameters())
        self.optimizer = torch.optim.Adam(
            self.alphas, lr=lr, betas=betas, weight_decay=weight_decay
        )

    # -- public ------------------------------------------------------------------------
    def step(
        self,
        train_batch: Batch,
        val_batch: Batch,
        eta: float,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> float:
        """One alpha update; returns the validation loss (at w, or at w' for order 2)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            loss = self.loss_fn(self._call(None, val_batch[0]), val_batch[1])
            grads = self._sync(_grad(loss, self.alphas))
        else:
            loss, grads = self.second_order_gradient(train_batch, val_batch, eta, w_optimizer)
        for a, g in zip(self.alphas, grads):
            a.grad = g
        self.optimizer.step()
        return float(loss.detach())

    def second_order_gradient(
        self,
        train_batch: Batch,
        val_batch: Batch,
        eta: float,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The unrolled alpha gradient: finite-difference or exact Hessian-vector product."""
        names, weights = self._named_weights()
        if self.hvp == "exact":
            # the fused attention kernels have no double backward; the math one does
            with sdpa_kernel(SDPBackend.MATH):
                unrolled = self._virtual_step(names, weights, train_batch, eta, w_optimizer,
                                              True)
                val_loss = self.loss_fn(self._call(unrolled, val_batch[0]), val_batch[1])
                # data-parallel: w' holds the summed training gradient (a differentiable sum,
                # see _virtual_step), so this alpha gradient is the process's share of the
                # global one, second-order term included; summing it is enough. Summing only
                # this one would not be: with a per-process w', the mean of the processes'
                # Hessian-vector products is not the product of the means.
                return val_loss, self._sync(_grad(val_loss, self.alphas))
        unrolled = self._virtual_step(names, weights, train_batch, eta, w_optimizer)
        val_loss = self.loss_fn(self._call(unrolled, val_batch[0]), val_batch[1])
        grads = self._sync(_grad(val_loss, self.alphas + list(unrolled.values())))
        d_alpha = grads[: len(self.alphas)]
        vector = grads[len(self.alphas) :]
        implicit = self.hessian_vector_product(names, weights, vector, train_batch)
        return val_loss, [g - eta * h for g, h in zip(d_alpha, implicit)]

    def hessian_vector_product(
        self,
        names: list[str],
        weights: list[torch.Tensor],
        vector: tuple[torch.Tensor, ...],
        batch: Batch,
    ) -> list[torch.Tensor]:
        """(grad_a L(w + eps v) - grad_a L(w - eps v)) / (2 eps), eps = fd_radius / ||v||.

        ``fd_radius`` is 0.01 as in DARTS. Batch-norm in training mode makes the loss
        strongly curved at that radius in very small networks; tests check the formula
        against double backward with a smaller radius in float64. The two passes run in
        fp32 whatever the step's precision: bf16 would round the shift away.
        """
        norm = torch.linalg.vector_norm(torch.stack([v.norm() for v in vector]))
        eps = self.fd_radius / norm.clamp_min(1e-12)
        grads = []
        for sign in (1.0, -1.0):
            shifted = {n: _strided_like(w, w.detach() + sign * eps * v)
                       for n, w, v in zip(names, weights, vector)}
            loss = self.loss_fn(self._call(shifted, batch[0], "fp32"), batch[1])
            grads.append(self._sync(_grad(loss, self.alphas)))
        return [(gp - gn) / (2 * eps) for gp, gn in zip(*grads)]

    # -- helpers -----------------------------------------------------------------------
    def _named_weights(self) -> tuple[list[str], list[torch.Tensor]]:
        alpha_ids = {id(a) for a in self.alphas}
        pairs = [(n, p) for n, p in self.model.named_parameters() if id(p) not in alpha_ids]
        return [n for n, _ in pairs], [p for _, p in pairs]

    def _virtual_step(
        self,
        names: list[str],
        weights: list[torch.Tensor],
        batch: Batch,
        eta: float,
        w_optimizer: torch.optim.Optimizer | None,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        """``w' = w - eta * step``: detached leaves, or (``create_graph``) differentiable in the
        alphas through the training gradient, for the exact Hessian-vector product."""
        loss = self.loss_fn(self._call(None, batch[0]), batch[1])
        grads = self._sync(_grad(loss, weights, create_graph))
        unrolled = {}
        for name, w, g in zip(names, weights, grads):
            step = g + self.w_weight_decay * w.detach()
            if w_optimizer is not None and self.w_momentum:
                buf = w_optimizer.state.get(w, {}).get("momentum_buffer")
                if buf is not None:
                    step = step + self.w_momentum * buf
            new = _strided_like(w, w.detach() - eta * step)
            unrolled[name] = new if create_graph else new.requires_grad_(True)
        return unrolled

    def _call(self, params: dict[str, torch.Tensor] | None, x: torch.Tensor,
              precision: str | None = None) -> torch.Tensor:
        """The logits of the model (with ``params`` substituted), computed in ``precision``
        (default: the step's), as the loss takes them."""
        with autocast(x.device.type, precision or self.precision):
            # alphas stay the module's own parameters, so gradients reach them
            out = self.model(x) if params is None else functional_call(
                self.model, params, (x,), strict=False)
        return at_least_fp32(out)


def _strided_like(w: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` with the strides of parameter ``w``. The arithmetic that builds virtual
    weights picks its own strides (row-major where ``w`` is channels-last and a dim has size
    1, as in depthwise and 1x1 conv weights), and oneDNN picks a convolution's layout from the
    weight's strides: the whole functional call would then run in NCHW, 2-4x slower. Strides
    that differ only where a dim has size 1 address the same memory: a view, no copy."""
    if value.stride() == w.stride():
        return value
    if all(a == b for a, b, n in zip(value.stride(), w.stride(), w.shape) if n != 1):
        return value.as_strided(w.shape, w.stride(), value.storage_offset())
    return torch.empty_like(w).copy_(value)


def _grad(loss: torch.Tensor, inputs: list[torch.Tensor],
          create_graph: bool = False) -> list[torch.Tensor]:
    """Gradients of ``loss``; zeros for inputs it does not use (e.g. an unused cell kind)."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
