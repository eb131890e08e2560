"""The compiled CPU kernels (nasspeech.kernels.native) against PyTorch's, and their fallback."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from nasspeech.kernels import native
from nasspeech.kernels.depthwise import DepthwiseConv2d, depthwise_weight_grad

ops = native.native_ops()
needs_native = pytest.mark.skipif(ops is None, reason="compiled kernels unavailable here")


def _reference_weight_grad(go, x, k, s, p, d):
    w = torch.zeros(x.shape[1], 1, k[0], k[1], dtype=torch.float64)
    return torch.ops.aten.convolution_backward(
        go.double(), x.double(), w, None, s, p, d, False, (0, 0), x.shape[1],
        (False, True, False))[1]


GEOMETRIES = [  # channels, size, kernel, stride, padding, dilation
    (8, 20, (3, 3), (1, 1), (1, 1), (1, 1)),
    (8, 19, (5, 5), (1, 1), (2, 2), (1, 1)),
    (16, 17, (5, 5), (1, 1), (4, 4), (2, 2)),
    (16, 18, (3, 3), (2, 2), (1, 1), (1, 1)),
    (32, 13, (5, 5), (2, 2), (4, 4), (2, 2)),
    (12, 11, (3, 3), (1, 1), (2, 2), (2, 2)),   # channels not a multiple of 8
    (3, 9, (3, 5), (1, 2), (0, 2), (1, 1)),     # fewer than 8 channels, unequal sizes
    (24, 7, (5, 5), (1, 1), (0, 0), (1, 1)),    # no padding
    (8, 6, (5, 5), (2, 2), (4, 4), (2, 2)),     # padding larger than the image
]


@needs_native
@pytest.mark.parametrize("channels,size,k,s,p,d", GEOMETRIES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_depthwise_weight_grad_matches_pytorch(channels, size, k, s, p, d, channels_last):
    torch.manual_seed(channels * size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, channels, size, size + 1).contiguous(memory_format=fmt)
    w = torch.randn(channels, 1, *k)
    go = torch.randn_like(F.conv2d(x, w, None, s, p, d, channels))
    ours = ops.depthwise_weight_grad(go, x, list(k), list(s), list(p), list(d))
    ref = _reference_weight_grad(go, x, k, s, p, d)
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@needs_native
@pytest.mark.parametrize("op,channels,geometry", [
    ("depthwise_weight_grad", 16, ([5, 5], [1, 1], [4, 4], [2, 2])),
    ("dense_weight_grad", 8, ([1, 7], [1, 1], [0, 3], [1, 1])),
])
def test_weight_grads_are_deterministic_and_thread_independent(op, channels, geometry):
    """Both weight gradients sum per-thread partials in a fixed order (csrc/batch_partials.h)."""
    x = torch.randn(5, channels, 24, 24).contiguous(memory_format=torch.channels_last)
    go = torch.randn(5, channels, 24, 24).contiguous(memory_format=torch.channels_last)
    kernel = getattr(ops, op)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernel(go, x, *geometry)
        assert torch.equal(one, kernel(go, x, *geometry))
        torch.set_num_threads(2)
        two = kernel(go, x, *geometry)
        assert torch.equal(two, kernel(go, x, *geometry))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-5)


@needs_native
def test_module_uses_the_compiled_kernel_and_matches_nn_conv(monkeypatch):
    calls = []
    real = ops.depthwise_weight_grad

    class Spy:
        def __getattr__(self, name):
            return getattr(ops, name)

        def depthwise_weight_grad(self, *a):
            calls.append(a[2:])
            return real(*a)

    monkeypatch.setattr("nasspeech.kernels.dispatch.native_ops", lambda: Spy())
    torch.manual_seed(0)
    conv = DepthwiseConv2d(8, 5, stride=1, padding=4, dilation=2).to(
        memory_format=torch.channels_last)
    ref = torch.nn.Conv2d(8, 8, 5, 1, 4, 2, groups=8, bias=False)
    ref.weight.data.copy_(conv.weight.data)
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
    conv(x).square().sum().backward()
    ref(x).square().sum().backward()
    assert calls == [([5, 5], [1, 1], [4, 4], [2, 2])]
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)


def test_double_backward_takes_the_differentiable_kernel():
    """Inside a backward that builds a graph (the exact Hessian), the weight gradient must
    itself be differentiable: the compiled kernel is not used there."""
    torch.manual_seed(1)
    conv = DepthwiseConv2d(8, 3, padding=1)
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    (gw,) = torch.autograd.grad(conv(x).pow(3).sum(), conv.weight, create_graph=True)
    (gx,) = torch.autograd.grad(gw.sum(), x)
    ref = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    ref.weight.data.copy_(conv.weight.data)
    x2 = x.detach().clone().requires_grad_(True)
    (rw,) = torch.autograd.grad(ref(x2).pow(3).sum(), ref.weight, create_graph=True)
    (rx,) = torch.autograd.grad(rw.sum(), x2)
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-4)


def test_bf16_and_disabled_fall_back_to_pytorch(monkeypatch):
    x = torch.randn(2, 8, 10, 10)
    w = torch.randn(8, 1, 3, 3)
    go = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        ref = _reference_weight_grad(go, x, (3, 3), (1, 1), (1, 1), (1, 1))
        low = depthwise_weight_grad(go.bfloat16(), x.bfloat16(), w.bfloat16(), (1, 1), (1, 1),
                                    (1, 1))
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.double(), ref, rtol=5e-2, atol=5e-2 * ref.abs().max().item())
        monkeypatch.setenv("NASSPEECH_NATIVE_KERNELS", "0")
        assert native.native_ops() is None
        off = depthwise_weight_grad(go, x, w, (1, 1), (1, 1), (1, 1))
    torch.testing.assert_close(off.double(), ref, rtol=1e-5, atol=1e-4)


def test_a_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_STATE", {})
    monkeypatch.setenv("NASSPEECH_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setattr(native, "_FLAGS", [*native._FLAGS, "-DNASSPEECH_TEST_FAILED_BUILD"])
    with pytest.warns(RuntimeWarning, match="compiled CPU kernels are unavailable"):
        assert native.native_ops() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.native_ops() is None  # remembered: no second build, no second warning


def test_cache_key_follows_cpu_sources_and_flags(monkeypatch):
    key = native.cache_key()
    assert key == native.cache_key()
    monkeypatch.setattr(native, "_cpu_signature", lambda: "x86_64|another CPU|avx2")
    assert native.cache_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(native, "_FLAGS", ["-O2"])
    assert native.cache_key() != key


def test_kernels_command_reports_the_state(capsys, monkeypatch):
    from nasspeech.cli.main import main

    assert main(["kernels", "--json"]) == 0
    status = __import__("json").loads(capsys.readouterr().out)
    assert status["sources"] == [p.name for p in native.kernel_sources()]
    assert status["cache"].endswith(status["key"])
    assert status["cpu_cache"] is True
    if ops is not None:
        assert main(["kernels", "--build"]) == 0
        out = capsys.readouterr().out
        assert "loaded" in out and "depthwise_weight_grad" in out
    monkeypatch.setenv("NASSPEECH_CPU_CACHE", "0")
    assert main(["kernels"]) == 0
    assert "tensor cache: off" in capsys.readouterr().out
    monkeypatch.setenv("NASSPEECH_NATIVE_KERNELS", "off")
    assert main(["kernels", "--build"]) == 0
    assert "disabled" in capsys.readouterr().out


def test_kernels_build_fails_with_the_reason(capsys, monkeypatch, tmp_path):
    from nasspeech.cli.main import main

    monkeypatch.setattr(native, "_STATE", {})
    monkeypatch.setenv("NASSPEECH_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setattr(native, "_FLAGS", [*native._FLAGS, "-DNASSPEECH_TEST_FAILED_BUILD"])
    assert main(["kernels", "--build"]) == 1
    out = capsys.readouterr().out
    assert "not built yet" in out and "error:" in out


def test_stale_builds_are_pruned_and_the_current_one_kept(tmp_path):
    import os

    current, recent, stale = (tmp_path / n for n in ("current", "recent", "stale"))
    for folder in (current, recent, stale):
        folder.mkdir()
        (folder / "lib.so").write_bytes(b"")
    old = 1_000_000_000  # 2001
    os.utime(current, (old, old))
    os.utime(stale, (old, old))
    assert native.prune_stale_builds(current) == [stale]
    assert current.exists() and recent.exists() and not stale.exists()
    assert current.stat().st_mtime > old  # marked as used


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path):
    import os

    lock = tmp_path / "lock"
    lock.write_text("")
    assert not native.clear_stale_lock(tmp_path)  # a build may be running: wait for it
    assert lock.exists()
    os.utime(lock, (1_000_000_000, 1_000_000_000))
    assert native.clear_stale_lock(tmp_path)
    assert not lock.exists()
    assert not native.clear_stale_lock(tmp_path)  # nothing to remove
