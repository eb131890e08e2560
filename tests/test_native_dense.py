"""The compiled dense weight gradient (nasspeech.kernels.dense) against PyTorch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.graph import saved_tensors_hooks

from nasspeech.kernels import native
from nasspeech.kernels.dense import DenseConv2d, dense_weight_grad, routes_to_compiled
from nasspeech.kernels.dispatch import reference_kernels
from nasspeech.ops.blocks import Conv7x1x1x7, DilConv, ReLUConvBN

ops = native.native_ops()
needs_native = pytest.mark.skipif(ops is None, reason="compiled kernels unavailable here")
CL = torch.channels_last


def _reference_weight_grad(go, x, k, s, p, d):
    w = torch.zeros(go.shape[1], x.shape[1], *k, dtype=torch.float64)
    return torch.ops.aten.convolution_backward(
        go.double(), x.double(), w, None, s, p, d, False, (0, 0), 1, (False, True, False))[1]


GEOMETRIES = [  # c_in, c_out, height, width, kernel, stride, padding, dilation
    (8, 8, 20, 21, (1, 1), (1, 1), (0, 0), (1, 1)),
    (8, 8, 12, 19, (1, 7), (1, 1), (0, 3), (1, 1)),    # paired taps (8 input channels)
    (8, 8, 19, 12, (7, 1), (1, 1), (3, 0), (1, 1)),
    (8, 8, 11, 17, (1, 7), (1, 2), (0, 3), (1, 1)),    # reduction cells' strides
    (8, 8, 17, 11, (7, 1), (2, 1), (3, 0), (1, 1)),
    (16, 16, 9, 13, (1, 7), (1, 1), (0, 3), (1, 1)),   # 16-wide vectors
    (32, 16, 9, 10, (7, 1), (2, 1), (3, 0), (1, 1)),
    (24, 8, 10, 10, (1, 7), (1, 1), (0, 3), (1, 1)),   # a 16-wide block and a paired block
    (32, 8, 15, 15, (1, 1), (1, 1), (0, 0), (1, 1)),   # preprocessing: c_in != c_out
    (12, 20, 9, 11, (1, 7), (1, 2), (0, 3), (1, 1)),   # channels not a multiple of 8
    (5, 3, 7, 6, (7, 1), (1, 1), (3, 0), (1, 1)),      # fewer than 8 channels
    (8, 8, 1, 1, (1, 7), (1, 1), (0, 3), (1, 1)),      # a one-pixel image
    (8, 16, 2, 3, (7, 1), (2, 1), (3, 0), (1, 1)),     # padding larger than the image
    (16, 8, 9, 9, (3, 3), (2, 2), (2, 2), (2, 2)),     # dilated, strided square kernel
    (8, 8, 8, 8, (1, 1), (2, 2), (0, 0), (1, 1)),      # strided 1x1
]


@needs_native
@pytest.mark.parametrize("c_in,c_out,h,w,k,s,p,d", GEOMETRIES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_dense_weight_grad_matches_pytorch(c_in, c_out, h, w, k, s, p, d, channels_last):
    torch.manual_seed(c_in * h + w)
    fmt = CL if channels_last else torch.contiguous_format
    x = torch.randn(3, c_in, h, w).contiguous(memory_format=fmt)
    weight = torch.randn(c_out, c_in, *k)
    go = torch.randn_like(F.conv2d(x, weight, None, s, p, d)).contiguous(memory_format=fmt)
    ours = ops.dense_weight_grad(go, x, list(k), list(s), list(p), list(d))
    ref = _reference_weight_grad(go, x, k, s, p, d)
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


class _Spy:
    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        return getattr(ops, name)

    def dense_weight_grad(self, *a):
        self.calls.append(tuple(a[2:]))
        return ops.dense_weight_grad(*a)


@pytest.fixture
def spy(monkeypatch):
    calls: list = []
    monkeypatch.setattr("nasspeech.kernels.dispatch.native_ops", lambda: _Spy(calls))
    return calls


def _twin(conv: DenseConv2d) -> torch.nn.Conv2d:
    ref = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, bias=False)
    ref.weight.data.copy_(conv.weight.data)
    return ref


MODULES = [  # c_in, c_out, kernel, stride, padding, input size
    (8, 8, 1, 1, 0, (16, 17)),
    (8, 8, (1, 7), (1, 2), (0, 3), (12, 15)),
    (8, 8, (7, 1), (2, 1), (3, 0), (15, 12)),
    (12, 6, (1, 7), 1, (0, 3), (9, 9)),
    (32, 16, 1, 1, 0, (8, 8)),
    (16, 8, (7, 1), 1, (3, 0), (9, 9)),
]


@needs_native
@pytest.mark.parametrize("c_in,c_out,k,s,p,size", MODULES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_module_uses_the_compiled_kernel_and_matches_nn_conv(spy, c_in, c_out, k, s, p, size,
                                                             channels_last):
    torch.manual_seed(c_in + c_out)
    conv = DenseConv2d(c_in, c_out, k, stride=s, padding=p)
    ref = _twin(conv)
    if channels_last:
        conv, ref = conv.to(memory_format=CL), ref.to(memory_format=CL)
    fmt = CL if channels_last else torch.contiguous_format
    x = torch.randn(3, c_in, *size).contiguous(memory_format=fmt).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    y = conv(x)
    y.square().sum().backward()
    y_ref = ref(x2)
    y_ref.square().sum().backward()
    assert len(spy) == 1
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    for f in (CL, torch.contiguous_format):  # the weight's layout (strides of 1x1s may differ)
        assert conv.weight.grad.is_contiguous(memory_format=f) == ref.weight.grad.is_contiguous(
            memory_format=f)


@needs_native
def test_an_input_without_gradient_gets_the_weight_gradient_only(spy):
    conv = DenseConv2d(8, 8, (7, 1), padding=(3, 0))
    ref = _twin(conv)
    x = torch.randn(2, 8, 10, 10)
    conv(x).sum().backward()
    ref(x).sum().backward()
    assert len(spy) == 1
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)


@needs_native
def test_frozen_weights_take_the_plain_convolution(spy):
    """The alpha step freezes the weights: only the input gradient, as nn.Conv2d computes it."""
    conv = DenseConv2d(8, 8, (1, 7), padding=(0, 3)).requires_grad_(False)
    ref = _twin(conv).requires_grad_(False)
    x = torch.randn(2, 8, 10, 10, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    conv(x).square().sum().backward()
    ref(x2).square().sum().backward()
    assert spy == [] and conv.weight.grad is None
    torch.testing.assert_close(x.grad, x2.grad)


@pytest.mark.parametrize("x_needs_grad", [True, False])
def test_double_backward_matches_nn_conv(spy, x_needs_grad):
    """Inside a backward that builds a graph (the exact Hessian) the gradients must be
    differentiable: PyTorch's kernels, and the second derivatives of nn.Conv2d (float64)."""
    torch.manual_seed(1)
    conv = DenseConv2d(8, 8, (1, 7), stride=(1, 2), padding=(0, 3))
    ref = _twin(conv).double()
    x = torch.randn(2, 8, 9, 11, requires_grad=x_needs_grad)
    x2 = x.detach().double().requires_grad_(x_needs_grad)
    results = []
    for module, inp in ((conv, x), (ref, x2)):
        before = len(spy)
        (gw,) = torch.autograd.grad(module(inp).pow(3).sum(), module.weight, create_graph=True)
        assert len(spy) == before  # the backward that builds a graph takes PyTorch's kernels
        results.append(torch.autograd.grad(gw.square().sum(),
                                           [module.weight] + [inp] * x_needs_grad))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-4,
                                   atol=1e-5 * theirs.abs().max().item())


@needs_native
def test_bf16_autocast_reference_kernels_and_tracing_take_nn_conv(spy):
    conv = DenseConv2d(8, 8, 1)
    x = torch.randn(2, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    with reference_kernels():
        conv(x).sum().backward()
    traced = torch.jit.trace(conv, x)
    assert spy == [] and "PythonOp" not in str(traced.graph)
    assert "aten::_convolution" in str(traced.graph)
    torch.testing.assert_close(traced(x), F.conv2d(x, conv.weight))


def test_disabled_compiled_kernels_take_nn_conv(monkeypatch):
    monkeypatch.setenv("NASSPEECH_NATIVE_KERNELS", "0")
    conv = DenseConv2d(8, 8, (7, 1), padding=(3, 0))
    ref = _twin(conv)
    x = torch.randn(2, 8, 9, 9)
    y = conv(x)
    assert y.grad_fn is not None and "ConvolutionBackward" in type(y.grad_fn).__name__
    y.sum().backward()
    ref(x).sum().backward()
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad)
    with torch.no_grad():
        go, w = torch.randn(2, 8, 9, 9), torch.randn(8, 8, 7, 1)
        off = dense_weight_grad(go, x, w, (1, 1), (3, 0), (1, 1))
    ref_w = _reference_weight_grad(go, x, (7, 1), (1, 1), (3, 0), (1, 1))
    torch.testing.assert_close(off.double(), ref_w, rtol=1e-5, atol=1e-4)


def test_same_parameters_and_state_dict_as_nn_conv():
    conv = DenseConv2d(16, 8, (1, 7), stride=(1, 2), padding=(0, 3))
    ref = torch.nn.Conv2d(16, 8, (1, 7), stride=(1, 2), padding=(0, 3), bias=False)
    assert isinstance(conv, torch.nn.Conv2d)
    assert {k: v.shape for k, v in conv.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(conv.state_dict())


def test_routing_rule():
    assert routes_to_compiled(8, 8, (1, 7)) and routes_to_compiled(8, 8, (1, 1))
    assert routes_to_compiled(64, 16, (1, 1)) and routes_to_compiled(12, 32, (7, 1))
    assert not routes_to_compiled(16, 16, (1, 1)) and not routes_to_compiled(32, 32, (7, 1))
    assert not routes_to_compiled(128, 32, (1, 1)) and not routes_to_compiled(16, 64, (1, 1))
    assert not DenseConv2d(32, 32, 1).compiled_weight_grad


def _packed_bytes(block: torch.nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes of the tensors the backward keeps (all but relu_then's recipe) and the output."""
    packed: list[int] = []

    def pack(t):
        packed.append(t.numel() * t.element_size())
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        y = block(x)
    return sum(packed), y


@needs_native
@pytest.mark.parametrize("make", [lambda: ReLUConvBN(8, 8, 1, 1, 0),
                                  lambda: Conv7x1x1x7(8, 2),
                                  lambda: DilConv(8, 8, 3, 1, 2, 2)])
def test_blocks_keep_no_more_for_the_backward_and_match_reference(spy, make):
    """relu_then's recompute hook still sees the conv's input (relu(x) is not kept), and the
    block's gradients are those of PyTorch's kernels."""
    torch.manual_seed(3)
    block = make().to(memory_format=CL)
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=CL).requires_grad_(True)
    ours, y = _packed_bytes(block, x)
    y.square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
    assert spy
    block.zero_grad()
    x.grad = None
    with reference_kernels():
        theirs, y_ref = _packed_bytes(block, x)
        y_ref.square().sum().backward()
    assert ours == theirs
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, [x.grad] + [p.grad for p in block.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
