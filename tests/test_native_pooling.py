"""The compiled 3x3 max pooling (nasspeech.kernels.pooling, csrc/max_pool.cpp) against
PyTorch's: values, argmax (ties, NaN, -inf), gradients, double backward, fallbacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.kernels import native, pooling
from nasspeech.kernels.dispatch import reference_kernels
from nasspeech.kernels.pooling import MaxPool3x3

ops = native.native_ops()
needs_native = pytest.mark.skipif(ops is None, reason="compiled kernels unavailable here")
CL = torch.channels_last

# (batch, channels, height, width): odd and even sizes, channels not a multiple of 8, tiny images
SHAPES = [(2, 8, 7, 9), (2, 8, 8, 8), (3, 12, 6, 5), (2, 3, 5, 6), (1, 16, 10, 11),
          (2, 5, 1, 1), (2, 9, 1, 4), (1, 8, 2, 3), (2, 24, 3, 2)]


def _taps_to_indices(taps: torch.Tensor, width: int, stride: int) -> torch.Tensor:
    """Flat input positions (PyTorch's indices) of uint8 window taps."""
    ho = torch.arange(taps.shape[2]).view(1, 1, -1, 1)
    wo = torch.arange(taps.shape[3]).view(1, 1, 1, -1)
    t = taps.long()
    return (ho * stride - 1 + t // 3) * width + (wo * stride - 1 + t % 3)


def _inputs(shape: tuple[int, ...], kind: str) -> torch.Tensor:
    torch.manual_seed(sum(shape))
    x = torch.randn(shape)
    if kind == "relu":  # many exact zeros: ties inside most windows
        x = x.relu()
    elif kind == "zeros":
        x = torch.zeros(shape)
    elif kind == "rounded":  # few distinct values: ties at every position in a window
        x = x.mul(1.5).round()
    elif kind == "special":  # NaNs and infinities
        flat = x.view(-1)
        flat[::7] = float("nan")
        flat[3::11] = float("-inf")
        flat[5::13] = float("inf")
    elif kind == "neg_inf":  # whole windows of -inf: the first in-image tap is chosen
        x = torch.full(shape, float("-inf"))
        x.view(-1)[::17] = 1.0
    return x.contiguous(memory_format=CL)


KINDS = ["randn", "relu", "zeros", "rounded", "special", "neg_inf"]


def every_case(test):
    """Run ``test`` for every shape, stride and kind of input (with the compiled kernels)."""
    for mark in (pytest.mark.parametrize("kind", KINDS),
                 pytest.mark.parametrize("stride", [1, 2]),
                 pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s))),
                 needs_native):
        test = mark(test)
    return test


@every_case
def test_forward_matches_pytorch_values_and_argmax(shape, stride, kind):
    x = _inputs(shape, kind)
    y, taps = ops.max_pool3x3_forward(x, stride)
    ref, indices = F.max_pool2d(x, 3, stride, 1, return_indices=True)
    assert y.shape == ref.shape and taps.dtype == torch.uint8 and taps.shape == ref.shape
    assert y.is_contiguous(memory_format=CL)
    # a maximum is one of the inputs, not arithmetic: the values are the same floats
    torch.testing.assert_close(y, ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(_taps_to_indices(taps, shape[3], stride), indices)


@every_case
def test_backward_matches_pytorch_in_float64(shape, stride, kind):
    x = _inputs(shape, kind)
    y, taps = ops.max_pool3x3_forward(x, stride)
    go = torch.randn(y.shape).contiguous(memory_format=CL)
    ours = ops.max_pool3x3_backward(go, taps, shape[2], shape[3], stride)
    xr = x.double().requires_grad_()  # fp32 -> fp64 is exact: the same ties
    F.max_pool2d(xr, 3, stride, 1).backward(go.double())
    assert ours.shape == x.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), xr.grad, rtol=1e-5, atol=1e-6)


@needs_native
def test_backward_is_deterministic_and_thread_independent():
    x = _inputs((6, 16, 24, 23), "relu")
    go = torch.randn(6, 16, 24, 23).contiguous(memory_format=CL)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, taps = ops.max_pool3x3_forward(x, 1)
        one = ops.max_pool3x3_backward(go, taps, 24, 23, 1)
        torch.set_num_threads(2)
        two = ops.max_pool3x3_backward(go, taps, 24, 23, 1)
    finally:
        torch.set_num_threads(threads)
    # each input gradient is the same sum in the same order whatever the thread count
    assert torch.equal(one, two)


@needs_native
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kind", ["randn", "relu"])
def test_module_matches_nn_maxpool_and_uses_the_kernel(stride, kind, monkeypatch):
    calls = []
    real = pooling._MaxPool3x3Function.apply
    monkeypatch.setattr(pooling._MaxPool3x3Function, "apply",
                        lambda *a: calls.append(a[1]) or real(*a))
    x = _inputs((4, 8, 13, 12), kind).requires_grad_()
    xr = x.detach().double().requires_grad_()
    pool, ref = MaxPool3x3(stride), nn.MaxPool2d(3, stride, 1)
    y = pool(x)
    go = torch.randn(y.shape)
    y.backward(go)
    ref(xr).backward(go.double())
    assert calls == [stride]
    torch.testing.assert_close(y.double(), ref(xr.detach()), rtol=0, atol=0)
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-5, atol=1e-6)


@needs_native
@pytest.mark.parametrize("stride", [1, 2])
def test_double_backward_matches_nn_maxpool(stride):
    """The exact-Hessian path: a graph through the backward, then differentiated again."""
    torch.manual_seed(stride)
    x = torch.randn(3, 8, 9, 10).relu().contiguous(memory_format=CL)
    w = torch.randn(8, 1, 3, 3)
    v = torch.randn(8, 1, 3, 3)

    def hvp(pool: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        weight = w.to(dtype).requires_grad_()
        inp = x.to(dtype)
        y = pool(F.conv2d(inp, weight, padding=1, groups=8))
        loss = (y.pow(2) * torch.linspace(0.5, 1.5, y.shape[-1], dtype=dtype)).sum()
        (g,) = torch.autograd.grad(loss, weight, create_graph=True)
        (h,) = torch.autograd.grad((g * v.to(dtype)).sum(), weight)
        return g.detach(), h

    g, h = hvp(MaxPool3x3(stride), torch.float32)
    g_ref, h_ref = hvp(nn.MaxPool2d(3, stride, 1), torch.float64)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-5, atol=1e-4)


@needs_native
@pytest.mark.parametrize("stride", [1, 2])
def test_backward_of_backward_is_the_gather_at_the_taps(stride):
    """d(grad_input)/d(grad_output) and its transpose, against nn.MaxPool2d's (ties too)."""
    x = _inputs((2, 11, 8, 7), "relu")
    y_shape = F.max_pool2d(x, 3, stride, 1).shape
    go0, u0, r = torch.randn(y_shape), torch.randn(x.shape), torch.randn(y_shape)
    results = []
    for pool, dtype in ((MaxPool3x3(stride), torch.float32),
                        (nn.MaxPool2d(3, stride, 1), torch.float64)):
        xin = x.to(dtype).requires_grad_()
        go = go0.to(dtype).requires_grad_()
        u = u0.to(dtype).requires_grad_()
        (gi,) = torch.autograd.grad(pool(xin), xin, go, create_graph=True)
        (ggo,) = torch.autograd.grad((gi * u).sum(), go, create_graph=True)
        (third,) = torch.autograd.grad((ggo * r.to(dtype)).sum(), u)  # the gather's own backward
        results.append((gi, ggo, third))
    (gi, ggo, third), (gi_r, ggo_r, third_r) = results
    torch.testing.assert_close(gi.double(), gi_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ggo.double(), ggo_r, rtol=0, atol=0)  # a gather: exact
    torch.testing.assert_close(third.double(), third_r, rtol=1e-5, atol=1e-6)


@needs_native
def test_graph_keeps_uint8_taps_not_int64_indices():
    def saved(pool: nn.Module) -> list[tuple[torch.dtype, int]]:
        kept = []

        def pack(t):
            kept.append((t.dtype, t.numel() * t.element_size()))
            return t

        x = torch.randn(2, 8, 16, 16).contiguous(memory_format=CL).requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            pool(x)
        return kept

    assert saved(MaxPool3x3(1)) == [(torch.uint8, 2 * 8 * 16 * 16)]
    ref = saved(nn.MaxPool2d(3, 1, 1))
    assert (torch.int64, 8 * 2 * 8 * 16 * 16) in ref


@pytest.mark.parametrize("case", ["contiguous", "float64", "reference_kernels", "no_native"])
def test_falls_back_to_pytorch(case, monkeypatch):
    monkeypatch.setattr(pooling._MaxPool3x3Function, "apply",
                        lambda *a: pytest.fail("compiled pooling used"))
    x = torch.randn(2, 8, 9, 9)
    if case != "contiguous":
        x = x.contiguous(memory_format=CL)
    if case == "float64":
        x = x.double()
    if case == "no_native":
        monkeypatch.setattr("nasspeech.kernels.dispatch.native_ops", lambda: None)
    pool = MaxPool3x3(2)
    if case == "reference_kernels":
        with reference_kernels():
            y = pool(x)
    else:
        y = pool(x)
    assert torch.equal(y, F.max_pool2d(x, 3, 2, 1))


def test_tracing_records_pytorchs_op():
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=CL)
    traced = torch.jit.trace(MaxPool3x3(1), x, check_trace=False)
    graph = str(traced.graph)
    assert "nasspeech::" not in graph and "PythonOp" not in graph and "max_pool2d" in graph
    assert torch.equal(traced(x), F.max_pool2d(x, 3, 1, 1))


def test_module_keeps_nn_maxpool_state_and_is_the_registered_op():
    from nasspeech.registry import get_op

    pool = get_op("cnn", "max_pool_3x3").build(8, 2)
    assert isinstance(pool, MaxPool3x3) and isinstance(pool, nn.MaxPool2d)
    ref = nn.MaxPool2d(3, stride=2, padding=1)
    assert pool.state_dict() == {} and list(pool.parameters()) == []
    for name in ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"):
        assert getattr(pool, name) == getattr(ref, name)
    assert pool.extra_repr() == ref.extra_repr()
