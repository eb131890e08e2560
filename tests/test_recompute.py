"""search.recompute_depthwise (nasspeech.kernels.recompute): the 1x1 convolution after a
depthwise one keeps a recipe instead of its input; gradients, first- and second-order
(finite-difference and exact Hessian) search steps are those of the kept path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from nasspeech.config import SearchConfig
from nasspeech.kernels.depthwise import DepthwiseConv2d
from nasspeech.kernels.recompute import recompute_depthwise, recompute_depthwise_enabled
from nasspeech.ops.blocks import DilConv, SepConv
from nasspeech.search import Architect, search_step
from nasspeech.space import SearchSpace

CL = torch.channels_last


def _blocks():
    torch.manual_seed(0)
    return [SepConv(8, 8, 3, 1, 1), SepConv(6, 6, 5, 2, 2), DilConv(8, 8, 5, 1, 4, 2)]


def _grads(module, x, on: bool, weight_grads: bool = True):
    module = copy.deepcopy(module)
    for p in module.parameters():
        p.requires_grad_(weight_grads)
    x = x.detach().clone().requires_grad_()
    with recompute_depthwise(on):
        y = module(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return [x.grad, *(p.grad for p in module.parameters() if p.grad is not None)]


@pytest.mark.parametrize("block", range(3))
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_gradients_equal_the_kept_path(block, layout):
    module = _blocks()[block]
    c = module[0][1].in_channels if isinstance(module, SepConv) else module[1].in_channels
    x = torch.randn(3, c, 11, 10)
    if layout == "channels_last":
        module, x = module.to(memory_format=CL), x.contiguous(memory_format=CL)
    kept, recomputed = _grads(module, x, False), _grads(module, x, True)
    assert len(kept) == len(recomputed) == 1 + len(list(module.parameters()))
    for a, b in zip(kept, recomputed):
        torch.testing.assert_close(b, a)


def _saved_bytes(module, x, on: bool) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with recompute_depthwise(on), saved_tensors_hooks(pack, lambda t: t):
        module(x.requires_grad_())
    return sum(seen.values())


def test_depthwise_outputs_are_not_kept_and_are_recomputed_once_per_backward(monkeypatch):
    module = _blocks()[0]  # two depthwise convolutions
    x = torch.randn(2, 8, 16, 16)
    act = 2 * 8 * 16 * 16 * 4
    assert _saved_bytes(module, x, False) - _saved_bytes(module, x, True) == 2 * act

    calls: list[bool] = []
    conv = DepthwiseConv2d._conv
    monkeypatch.setattr(DepthwiseConv2d, "_conv",
                        lambda self, *a: (calls.append(torch.is_grad_enabled()), conv(self, *a))[1])
    _grads(module, x, True)
    assert calls == [True, True, False, False]  # 2 forwards, 2 recomputations in the backward
    calls.clear()
    _grads(module, x, True, weight_grads=False)  # the alpha step: no 1x1 weight gradient
    assert calls == [True, True]
    calls.clear()
    _grads(module, x, False)
    assert calls == [True, True]


def test_off_by_default_inside_no_grad_and_under_fp16_autocast():
    assert not recompute_depthwise_enabled()
    module, x = _blocks()[2], torch.randn(2, 8, 12, 12)
    with recompute_depthwise():
        assert recompute_depthwise_enabled()
        with recompute_depthwise(False):
            assert not recompute_depthwise_enabled()
    with recompute_depthwise(), torch.autocast("cpu", torch.float16):  # not a nasspeech precision
        y = module[1](x.requires_grad_())
        assert not hasattr(y, "_nasspeech_recompute")
    with recompute_depthwise(), torch.no_grad():
        assert not hasattr(module[1](x), "_nasspeech_recompute")


def test_bf16_autocast_recomputes_in_bf16_with_the_kept_paths_gradients():
    """The backward runs outside the forward's autocast region; the recomputation enters
    it again, so the 1x1 weight gradient reads the bf16 tensor the forward pass made."""
    from nasspeech.kernels.precision import autocast

    module = _blocks()[0].to(memory_format=CL)
    x = torch.randn(3, 8, 12, 12).contiguous(memory_format=CL)
    grads, saved = [], []
    for on in (False, True):
        m, xi = copy.deepcopy(module), x.clone().requires_grad_()
        seen: dict[int, int] = {}

        def pack(t, seen=seen):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with recompute_depthwise(on), saved_tensors_hooks(pack, lambda t: t), \
                autocast("cpu", "bf16"):
            y = m(xi)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        grads.append([xi.grad, *(p.grad for p in m.parameters())])
        saved.append(sum(seen.values()))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a)
    assert saved[0] - saved[1] == 2 * 3 * 8 * 12 * 12 * 2  # two bf16 depthwise outputs


def test_double_backward_differentiates_through_the_recomputation():
    module = _blocks()[2].double()
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    out = []
    for on in (False, True):
        m = copy.deepcopy(module)
        xi = x.clone().requires_grad_()
        with recompute_depthwise(on):
            y = m(xi)
        g = torch.autograd.grad(y.square().sum(), [*m.parameters()], create_graph=True)
        hv = torch.autograd.grad(sum((gi * gi).sum() for gi in g), xi)[0]
        out.append(hv)
    torch.testing.assert_close(out[1], out[0])


def _space() -> SearchSpace:
    ops = ["sep_conv_3x3", "dil_conv_3x3", "sep_conv_5x5", "max_pool_3x3", "skip_connect",
           "none"]
    return SearchSpace(name="rc", input_shape=(1, 12, 12), num_classes=3, components=[
        {"name": "cnn", "family": "cnn", "ops": ops, "cells": 3, "nodes": 2, "channels": 4}])


@pytest.mark.parametrize(("order", "hvp"), [(1, "finite_difference"), (2, "finite_difference"),
                                            (2, "exact")])
def test_search_steps_equal_the_kept_path(order, hvp):
    """The virtual weights of the second order are swapped in by a functional call: the
    recomputation must use the weights of the forward pass, not the module's."""
    torch.manual_seed(0)
    net = _space().build_supernet()
    g = torch.Generator().manual_seed(1)
    train, val = ((torch.randn(4, 1, 12, 12, generator=g), torch.randint(0, 3, (4,), generator=g))
                  for _ in range(2))
    results = []
    for on in (False, True):
        model = copy.deepcopy(net)
        arch = Architect(model, order=order, hvp=hvp)
        opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9)
        with recompute_depthwise(on):
            search_step(model, arch, opt, train, val, lr=0.05)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_config_field():
    assert SearchConfig().recompute_depthwise is False
    assert SearchConfig(recompute_depthwise=True).recompute_depthwise is True
    with pytest.raises(ValueError, match="recompute_depthwise"):
        SearchConfig(recompute_depthwise="sometimes")
