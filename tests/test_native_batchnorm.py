"""The compiled BatchNorm kernels of search cells (csrc/batchnorm.cpp) against float64
references: the ops themselves, SearchBatchNorm2d and its weighted sum using them, the double
backward, and where PyTorch's kernels must be used instead."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nasspeech.kernels import native
from nasspeech.kernels.batchnorm import SearchBatchNorm2d
from nasspeech.kernels.dispatch import reference_kernels

ops = native.native_ops()
needs_native = pytest.mark.skipif(ops is None, reason="compiled kernels unavailable here")
CL = torch.channels_last

SHAPES = [  # batch, channels, height, width, mean of the input
    (4, 8, 16, 17, 0.0),
    (3, 16, 9, 8, 2.0),
    (2, 32, 7, 7, -1.0),
    (2, 24, 5, 6, 0.0),
    (3, 12, 6, 5, 0.5),      # channels not a multiple of 8
    (2, 3, 4, 5, 0.0),       # fewer than 8 channels
    (5, 40, 3, 3, 0.0),      # no specialised vector path
    (3, 16, 1, 1, 0.0),      # 1x1 images
    (2, 8, 1, 2, 0.0),       # tiny image, 4 values per channel
    (2, 8, 97, 95, 0.0),     # several units per sample, a partial last unit
    (4, 8, 20, 20, 1000.0),  # a large mean: a one-pass sum of squares would fail
    (3, 12, 9, 9, 1000.0),
    (2, 32, 64, 40, -500.0),
]


def _input(n, c, h, w, mean, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(1, c, 1, 1, generator=g) * 2 + 0.1  # a different spread per channel
    return (torch.randn(n, c, h, w, generator=g) * scale + mean).contiguous(memory_format=CL)


def _reference(x, running_mean, running_var, momentum, eps):
    xd = x.double()
    mean = xd.mean((0, 2, 3))
    var = xd.var((0, 2, 3), unbiased=False)
    n = x.numel() // x.shape[1]
    invstd = (var + eps).rsqrt()
    y = (xd - mean.view(1, -1, 1, 1)) * invstd.view(1, -1, 1, 1)
    rm = (1 - momentum) * running_mean.double() + momentum * mean
    rv = (1 - momentum) * running_var.double() + momentum * var * n / (n - 1)
    return y, invstd, rm, rv


def _close(ours, ref, rtol=1e-5):
    """Within ``rtol`` of the float64 reference, relative to its largest value."""
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=rtol, atol=rtol * ref.abs().max().item())


@needs_native
@pytest.mark.parametrize("n,c,h,w,mean", SHAPES)
def test_forward_matches_float64(n, c, h, w, mean):
    x = _input(n, c, h, w, mean)
    running_mean, running_var = torch.randn(c) + mean, torch.rand(c) + 0.5
    y_ref, inv_ref, rm_ref, rv_ref = _reference(x, running_mean, running_var, 0.1, 1e-5)
    y, invstd = ops.batch_norm_forward(x, running_mean, running_var, 0.1, 1e-5)
    assert y.is_contiguous(memory_format=CL) and invstd.shape == (c,)
    _close(y, y_ref)
    torch.testing.assert_close(invstd.double(), inv_ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(running_mean.double(), rm_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(running_var.double(), rv_ref, rtol=1e-5, atol=0)


@needs_native
@pytest.mark.parametrize("n,c,h,w,mean", SHAPES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_weighted_sum_matches_float64(n, c, h, w, mean, accumulate):
    x = _input(n, c, h, w, mean, seed=1)
    running_mean, running_var = torch.zeros(c), torch.ones(c)
    y_ref, inv_ref, rm_ref, rv_ref = _reference(x, running_mean, running_var, 0.3, 1e-3)
    weight = torch.tensor(-0.37)
    args = (x, weight, running_mean, running_var, 0.3, 1e-3)
    if accumulate:
        out = torch.randn_like(x)
        base = out.double()
        y, invstd = ops.batch_norm_weighted_sum_(out, *args)
    else:
        base = 0.0
        out, y, invstd = ops.batch_norm_weighted(*args)
        assert out.is_contiguous(memory_format=CL)
    _close(y, y_ref)
    _close(out, base + -0.37 * y_ref)
    torch.testing.assert_close(invstd.double(), inv_ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(running_mean.double(), rm_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(running_var.double(), rv_ref, rtol=1e-5, atol=0)


@needs_native
@pytest.mark.parametrize("n,c,h,w,mean", SHAPES)
@pytest.mark.parametrize("grad_layout", [CL, torch.contiguous_format])
def test_backward_matches_float64(n, c, h, w, mean, grad_layout):
    y, _ = ops.batch_norm_forward(_input(n, c, h, w, mean), torch.zeros(c), torch.ones(c), 0.1,
                                  1e-5)
    grad = (torch.randn(n, c, h, w) + mean / 100).contiguous(memory_format=grad_layout)
    scale = torch.rand(c) + 0.2
    gd, yd = grad.double(), y.double()
    mean_g = gd.mean((0, 2, 3), keepdim=True)
    mean_gy = (gd * yd).mean((0, 2, 3), keepdim=True)
    dx_ref = scale.double().view(1, -1, 1, 1) * (gd - mean_g - yd * mean_gy)
    dx, sum_gy = ops.batch_norm_backward(grad, y, scale, True)
    assert dx.is_contiguous(memory_format=CL)
    _close(dx, dx_ref)
    _close(sum_gy, (gd * yd).sum((0, 2, 3)))
    none, only_sums = ops.batch_norm_backward(grad, y, scale, False)
    assert none.numel() == 0
    torch.testing.assert_close(only_sums, sum_gy, rtol=0, atol=0)  # the same computation


@needs_native
def test_results_do_not_depend_on_the_thread_count():
    """Units of work are fixed by the shape and added in a fixed order: the same numbers
    whatever the number of threads (the computation is identical, so bit-equality holds)."""
    x = _input(6, 16, 70, 33, 3.0)
    grad = torch.randn_like(x)
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            y, invstd = ops.batch_norm_forward(x, torch.zeros(16), torch.ones(16), 0.1, 1e-5)
            results.append((y, invstd, *ops.batch_norm_backward(grad, y, invstd, True)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@needs_native
@pytest.mark.parametrize("n,c,h,w", [(4, 8, 9, 10), (3, 12, 5, 5), (2, 16, 1, 1)])
def test_bad_arguments_are_refused_by_name(n, c, h, w):
    x = _input(n, c, h, w, 0.0)
    with pytest.raises(RuntimeError, match="running_var must be a contiguous float32 tensor"):
        ops.batch_norm_forward(x, torch.zeros(c), torch.ones(c + 1), 0.1, 1e-5)
    with pytest.raises(RuntimeError, match="x must be float32"):
        ops.batch_norm_forward(x.double(), torch.zeros(c), torch.ones(c), 0.1, 1e-5)
    with pytest.raises(RuntimeError, match="acc must be channels-last contiguous"):
        ops.batch_norm_weighted_sum_(torch.zeros(n, c, h, w + 1)[..., :w], x, torch.tensor(1.0),
                                     torch.zeros(c), torch.ones(c), 0.1, 1e-5)
    with pytest.raises(RuntimeError, match="w must be one float32 value"):
        ops.batch_norm_weighted(x, torch.ones(2), torch.zeros(c), torch.ones(c), 0.1, 1e-5)
    with pytest.raises(RuntimeError, match="more than one value per channel"):
        ops.batch_norm_forward(x[:1, :, :1, :1], torch.zeros(c), torch.ones(c), 0.1, 1e-5)


class _Spy:
    """Stands for ``torch.ops.nasspeech``: records which BatchNorm kernels run."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def __getattr__(self, name):
        op = getattr(ops, name)
        return lambda *a: self.calls.append(name) or op(*a)


@pytest.fixture
def spy(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr("nasspeech.kernels.dispatch.native_ops", lambda: _Spy(calls))
    return calls


def _module_pair(c, momentum=0.1):
    torch.manual_seed(c)
    ours = SearchBatchNorm2d(c, momentum=momentum).to(memory_format=CL)
    ours.running_mean.normal_()
    ours.running_var.uniform_(0.5, 1.5)
    ref = nn.BatchNorm2d(c, affine=False, momentum=momentum).double()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@needs_native
@pytest.mark.parametrize("n,c,h,w,mean", [(4, 8, 12, 12, 0.0), (3, 12, 5, 7, 1000.0),
                                          (2, 32, 6, 6, -3.0)])
def test_search_batchnorm_uses_the_kernels_and_matches_float64(spy, n, c, h, w, mean):
    ours, ref = _module_pair(c)
    for step in range(2):
        x = _input(n, c, h, w, mean, seed=step).requires_grad_()
        xd = x.detach().double().requires_grad_()
        y, y_ref = ours(x), ref(xd)
        _close(y, y_ref.detach())
        grad = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, grad)
        (gx_ref,) = torch.autograd.grad(y_ref, xd, grad.double())
        _close(gx, gx_ref)
    torch.testing.assert_close(ours.running_mean.double(), ref.running_mean, rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(ours.running_var.double(), ref.running_var, rtol=1e-5, atol=1e-5)
    assert int(ours.num_batches_tracked) == 2
    assert spy == ["batch_norm_forward", "batch_norm_backward"] * 2


@needs_native
@pytest.mark.parametrize(("with_acc", "x_grad", "w_grad"),
                         [(False, True, True), (True, True, True), (True, False, True),
                          (True, True, False)])
def test_weighted_sum_uses_the_kernels_and_matches_float64(spy, with_acc, x_grad, w_grad):
    """``acc + w * bn(x)``: value, running statistics, and the gradients of acc, x and w (the
    alpha step freezes the weights, the weight step the alphas)."""
    ours, ref = _module_pair(8)
    x = _input(4, 8, 10, 11, 1.5).requires_grad_(x_grad)
    w = torch.tensor(0.3, requires_grad=w_grad)
    base = torch.randn(4, 8, 10, 11).contiguous(memory_format=CL).requires_grad_()
    acc = base * 1.0 if with_acc else None
    out = ours.weighted_sum(acc, x, w)
    leaves = [t.detach().double().requires_grad_(t.requires_grad) for t in (base, x, w)]
    y_ref = ref(leaves[1]) * leaves[2]
    out_ref = y_ref + leaves[0] if with_acc else y_ref
    _close(out, out_ref.detach())
    grad = torch.randn_like(out)
    used = [i for i, u in enumerate((with_acc, x_grad, w_grad)) if u]
    ours_g = torch.autograd.grad(out, [(base, x, w)[i] for i in used], grad)
    ref_g = torch.autograd.grad(out_ref, [leaves[i] for i in used], grad.double())
    for a, b in zip(ours_g, ref_g):
        _close(a, b)
    torch.testing.assert_close(ours.running_mean.double(), ref.running_mean, rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(ours.running_var.double(), ref.running_var, rtol=1e-5, atol=1e-5)
    kernel = "batch_norm_weighted_sum_" if with_acc else "batch_norm_weighted"
    assert spy == [kernel, "batch_norm_backward"]


@needs_native
@pytest.mark.parametrize("weighted", [False, True])
def test_double_backward_is_exact(spy, weighted):
    """The exact Hessian builds a graph through the backward: the compiled forward feeds it,
    the differentiable backward computes it; second derivatives match float64."""
    ours, ref = _module_pair(8)
    x = _input(2, 8, 6, 7, 0.5).requires_grad_()
    w = torch.tensor(0.6, requires_grad=True)
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    out = ours.weighted_sum(None, x, w) if weighted else ours(x)
    out_ref = ref(xd) * wd if weighted else ref(xd)
    ins, ins_ref = ([x, w], [xd, wd]) if weighted else ([x], [xd])
    first = torch.autograd.grad(out.pow(3).sum(), ins, create_graph=True)
    first_ref = torch.autograd.grad(out_ref.pow(3).sum(), ins_ref, create_graph=True)
    second = torch.autograd.grad(sum((g * g).sum() for g in first), ins)
    second_ref = torch.autograd.grad(sum((g * g).sum() for g in first_ref), ins_ref)
    for a, b in zip((*first, *second), (*first_ref, *second_ref)):
        _close(a.detach(), b.detach(), rtol=1e-4)
    assert "batch_norm_backward" not in spy and len(spy) == 1


@needs_native
def test_mixed_op_with_the_kernels_matches_pytorch_kernels(spy):
    """A whole fp32 edge (fused BatchNorm tails, shared ReLU, custom convolutions) against
    PyTorch's own kernels: output, input, alpha and weight gradients, running statistics."""
    from nasspeech.registry import list_ops
    from nasspeech.space.families import CnnLayout
    from nasspeech.space.mixed_op import MixedOp

    torch.manual_seed(0)
    every_op = list_ops("cnn")
    ours = MixedOp(every_op, 8, 1, CnnLayout()).to(memory_format=CL)
    tails = sum(t is not None for t in ours._bn_tail)
    assert tails >= 7  # all DARTS ops but skip_connect and none end with a BatchNorm
    ref = copy.deepcopy(ours)
    x = torch.randn(3, 8, 9, 10).contiguous(memory_format=CL).requires_grad_()
    w = torch.softmax(torch.randn(len(every_op)), 0).requires_grad_()
    grad = torch.randn(3, 8, 9, 10)

    def run(edge):
        out = edge(x, w)
        return out, torch.autograd.grad(out, [x, w, *edge.parameters()], grad)

    out, grads = run(ours)
    with reference_kernels():
        out_ref, grads_ref = run(ref)
    assert spy.count("batch_norm_weighted") + spy.count("batch_norm_weighted_sum_") == tails
    assert "batch_norm_forward" in spy
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    for a, b in zip(ours.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_native
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_other_inputs_keep_pytorch_kernels(spy):
    """NCHW inputs, bf16, one value per channel, reference kernels and tracing take PyTorch's
    kernels (same values)."""
    bn = SearchBatchNorm2d(8)
    bn(torch.randn(1, 8, 1, 1).contiguous(memory_format=CL).requires_grad_()).sum().backward()
    nchw = torch.randn(2, 8, 5, 5, requires_grad=True)
    bn(nchw).sum().backward()
    bn.weighted_sum(None, nchw, torch.tensor(0.5)).sum().backward()
    cl = nchw.detach().contiguous(memory_format=CL).requires_grad_()
    bn(cl.bfloat16()).float().sum().backward()
    with reference_kernels():
        bn(cl).sum().backward()
        bn.weighted_sum(None, cl, torch.tensor(0.5)).sum().backward()
    torch.jit.trace(lambda t: bn(t), (cl,), check_trace=False)
    acc_nchw = torch.randn(2, 8, 5, 5)  # an accumulator the kernel cannot write in place
    out = bn.weighted_sum(acc_nchw * 1.0, cl, torch.tensor(0.5))
    assert spy == []
    torch.testing.assert_close(out, acc_nchw + 0.5 * nn.functional.batch_norm(
        cl, None, None, training=True), rtol=1e-5, atol=1e-5)


def test_disabled_kernels_fall_back(monkeypatch):
    monkeypatch.setenv("NASSPEECH_NATIVE_KERNELS", "0")
    ours, ref = _module_pair(8)
    x = _input(2, 8, 5, 6, 0.0).requires_grad_()
    xd = x.detach().double().requires_grad_()
    out, out_ref = ours.weighted_sum(None, x, torch.tensor(0.5)), ref(xd) * 0.5
    _close(out, out_ref.detach())
    grad = torch.randn_like(out)
    _close(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(out_ref, xd, grad.double())[0])
