"""The faster CPU pieces of the search cells compute exactly what PyTorch's own kernels do:
the depthwise convolution's backward, and the output-saving BatchNorm of search cells."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from nasspeech.kernels.batchnorm import SearchBatchNorm2d, use_search_batchnorm
from nasspeech.kernels.depthwise import DepthwiseConv2d
from nasspeech.kernels.dispatch import reference_kernels
from nasspeech.registry import get_op
from nasspeech.space.families import CnnLayout
from nasspeech.space.mixed_op import MixedOp

CASES = list(itertools.product((3, 5), (1, 2), (1, 2), (None, 0, 1), (False, True), (9, 12)))


@pytest.mark.parametrize(("kernel", "stride", "dilation", "padding", "channels_last", "size"),
                         CASES)
def test_depthwise_backward_matches_pytorch(kernel, stride, dilation, padding, channels_last,
                                            size):
    torch.manual_seed(0)
    pad = dilation * (kernel - 1) // 2 if padding is None else padding
    conv = DepthwiseConv2d(3, kernel, stride, pad, dilation).double()
    x = torch.randn(2, 3, size, size + 1, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = conv(x)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, [x, conv.weight], grad)
    with reference_kernels():
        ref_out = conv(x)
        theirs = torch.autograd.grad(ref_out, [x, conv.weight], grad)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_depthwise_frozen_weight_gets_no_gradient_work():
    conv = DepthwiseConv2d(4, 3, 2, 2, 2)
    conv.weight.requires_grad_(False)
    x = torch.randn(2, 4, 10, 10, requires_grad=True)
    conv(x).sum().backward()
    assert x.grad is not None and conv.weight.grad is None


def test_search_batchnorm_matches_batchnorm_without_affine():
    torch.manual_seed(0)
    ours, ref = SearchBatchNorm2d(5).double(), nn.BatchNorm2d(5, affine=False).double()
    for step in range(2):
        x = (torch.randn(4, 5, 6, 7, dtype=torch.double) * 3 + step).contiguous(
            memory_format=torch.channels_last).requires_grad_()
        y, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y, y_ref)
        g = torch.randn_like(y)
        torch.testing.assert_close(torch.autograd.grad(y, x, g)[0],
                                   torch.autograd.grad(y_ref, x, g)[0])
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 2
    ours.eval(), ref.eval()
    x = torch.randn(3, 5, 4, 4, dtype=torch.double)
    torch.testing.assert_close(ours(x), ref(x))


def test_search_batchnorm_keeps_its_output_not_its_input():
    bn = SearchBatchNorm2d(4)
    saved: list[torch.Tensor] = []
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    conv_out = x * 2  # stands for a convolution's output
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = bn(conv_out)
    assert any(t.data_ptr() == y.data_ptr() for t in saved)
    assert not any(t.data_ptr() == conv_out.data_ptr() for t in saved)


def test_conversion_drops_affine_and_inplace_relu():
    module = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                           nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, eps=1e-3)))
    use_search_batchnorm(module)
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2 and all(type(m) is SearchBatchNorm2d and not m.affine for m in bns)
    assert bns[1].eps == 1e-3
    assert not module[2].inplace
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    module(x).sum().backward()  # an in-place ReLU here would corrupt the saved output
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("bn_affine", [False, True])
def test_mixed_op_batchnorm_affine_setting(bn_affine):
    ops = [get_op("cnn", n) for n in ("sep_conv_3x3", "max_pool_3x3", "dil_conv_5x5")]
    mixed = MixedOp(ops, 8, 1, CnnLayout(), bn_affine=bn_affine)
    affine = [m.affine for m in mixed.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(affine) == 4  # two in sep_conv, one after the pool, one in dil_conv
    assert affine == ([True, True, False, True] if bn_affine else [False] * 4)


def test_double_backward_through_the_custom_kernels():
    """The exact Hessian-vector product of the Architect test needs second derivatives."""
    torch.manual_seed(0)
    bn = SearchBatchNorm2d(3).double()
    conv = DepthwiseConv2d(3, 3, 2, 2, 2).double()
    x = torch.randn(2, 3, 7, 7, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: bn(conv(t)) ** 2, (x,))
    assert torch.autograd.gradcheck(lambda t: bn(conv(t)) ** 2, (x,))


@pytest.mark.parametrize(("stride", "size"), [(1, 7), (1, 8), (2, 7), (2, 8)])
def test_avg_pool_as_convolution_matches_pytorch(stride, size):
    from nasspeech.ops.cnn import AvgPool3x3

    pool = AvgPool3x3(stride)
    x = torch.randn(2, 4, size, size + 1, dtype=torch.double).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    y = pool(x)
    g = torch.randn_like(y)
    with reference_kernels():
        y_ref = pool(x)
        g_ref = torch.autograd.grad(y_ref, x, g)[0]
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], g_ref)


def test_relu_then_passes_other_saved_tensors_to_outer_hooks():
    """The memory estimator's own saved-tensor hook must still see what ops keep."""
    from nasspeech.kernels.relu import relu_then

    conv = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    seen: list[tuple[int, ...]] = []

    def pack(t):
        seen.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = relu_then(x, conv).sum()
    assert (3, 3, 3, 3) in seen  # the conv's weight, saved inside relu_then
    out.backward()
    assert x.grad is not None and conv.weight.grad is not None


@pytest.mark.parametrize(("with_acc", "x_grad", "w_grad"),
                         [(False, True, True), (True, True, True), (True, False, True),
                          (True, True, False)])
def test_weighted_batchnorm_sum_matches_pytorch(with_acc, x_grad, w_grad):
    """``acc + w * bn(x)`` in one node: values, running statistics and the gradients of acc,
    x and w (the alpha step freezes the weights, the weight step the alphas)."""
    torch.manual_seed(0)
    ours, ref = SearchBatchNorm2d(5).double(), nn.BatchNorm2d(5, affine=False).double()
    x = (torch.randn(4, 5, 6, 7, dtype=torch.double) * 3 + 1).contiguous(
        memory_format=torch.channels_last).requires_grad_(x_grad)
    w = torch.tensor(0.3, dtype=torch.double, requires_grad=w_grad)
    base = torch.randn(4, 5, 6, 7, dtype=torch.double, requires_grad=True)
    acc = base * 1.0 if with_acc else None  # a non-leaf, as in the mixed op
    out = ours.weighted_sum(acc, x, w)
    y_ref = ref(x) * w
    out_ref = y_ref + base if with_acc else y_ref
    torch.testing.assert_close(out, out_ref)
    g = torch.randn_like(out)
    inputs = [t for t, used in ((base, with_acc), (x, x_grad), (w, w_grad)) if used]
    for a, b in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(out_ref, inputs, g)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == 1


def test_weighted_batchnorm_sum_double_backward():
    torch.manual_seed(0)
    bn = SearchBatchNorm2d(3).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.double, requires_grad=True)
    w = torch.tensor(0.7, dtype=torch.double, requires_grad=True)
    acc = torch.randn(2, 3, 5, 5, dtype=torch.double, requires_grad=True)

    def fn(a, t, s):
        return bn.weighted_sum(a * 1.0, t, s) ** 2

    assert torch.autograd.gradcheck(fn, (acc, x, w))
    assert torch.autograd.gradgradcheck(fn, (acc, x, w))


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_matches_pytorch_kernels(stride):
    """The whole edge (shared ReLU, fused BatchNorm tails, custom convolutions) against
    PyTorch's own kernels: output, input, alpha and weight gradients, running statistics."""
    import copy

    names = ["max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
             "dil_conv_5x5", "conv_7x1_1x7", "skip_connect", "none"]
    torch.manual_seed(0)
    ours = MixedOp([get_op("cnn", n) for n in names], 6, stride, CnnLayout()).double().to(
        memory_format=torch.channels_last)
    assert sum(t is not None for t in ours._bn_tail) == 7  # all but skip_connect
    ref = copy.deepcopy(ours)
    x = torch.randn(3, 6, 9, 10, dtype=torch.double).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    w = torch.softmax(torch.randn(len(names), dtype=torch.double), 0).requires_grad_()
    out = ours(x, w)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, w, *ours.parameters()], g)
    with reference_kernels():
        out_ref = ref(x, w)
        grads_ref = torch.autograd.grad(out_ref, [x, w, *ref.parameters()], g)
    torch.testing.assert_close(out, out_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    for a, b in zip(ours.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b)


def test_relu_then_recomputes_once_for_all_ops_that_keep_it(monkeypatch):
    """Two convolutions keep relu(x) for their weight gradients: one recomputation serves
    both, and the gradients are those of a plain ReLU."""
    from nasspeech.kernels.relu import relu_then

    torch.manual_seed(0)
    convs = [nn.Conv2d(3, 3, 3, padding=1).double() for _ in range(2)]
    x = torch.randn(2, 3, 5, 5, dtype=torch.double, requires_grad=True)
    out = relu_then(x, lambda r: convs[0](r) + convs[1](r))
    calls = []
    relu = torch.relu
    monkeypatch.setattr(torch, "relu", lambda t: calls.append(1) or relu(t))
    params = [x, *convs[0].parameters(), *convs[1].parameters()]
    grads = torch.autograd.grad(out.sum(), params)
    monkeypatch.undo()
    assert len(calls) == 1
    r = torch.relu(x)
    ref = torch.autograd.grad((convs[0](r) + convs[1](r)).sum(), params)
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b)
