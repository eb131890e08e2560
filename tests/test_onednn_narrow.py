"""Narrow strided 1x1 convs (FactorizedReduce) route around a oneDNN heap corruption.

The channels-last backward of a 1x1 stride-2 conv with 2-6 input channels corrupts the heap
at one thread on some CPUs (torch 2.13 CPU build). A crash kills the whole test process, so
the search step at one thread runs in a subprocess here: a native death fails this test
instead of aborting the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from nasspeech.ops.cnn import FactorizedReduce, onednn_narrow_conv_hazard

NARROW_SEARCH = textwrap.dedent("""
    import torch
    torch.set_num_threads(1)
    from nasspeech.search.architect import Architect
    from nasspeech.search.loop import search_step
    from nasspeech.space.config import SearchSpace

    cases = ((8, 4, 16), (4, None, 16), (2, None, 16), (3, None, 16), (6, 2, 16),
             (6, None, 64), (4, 2, 64))  # 6 channels at 64x64: reductions of 12 channels
    for channels, partial, size in cases:
        comp = dict(name="cnn", family="cnn", ops=["max_pool_3x3", "skip_connect", "none"],
                    cells=3, nodes=2, channels=channels)
        if partial:
            comp["partial_channels"] = partial
        space = SearchSpace(name="narrow", input_shape=(1, size, size), num_classes=4,
                            components=[comp])
        net = space.build_supernet()
        arch = Architect(net, order=1)
        opt = torch.optim.SGD(net.weight_parameters(), 0.05)
        for _ in range(3):
            batch = (torch.randn(8, 1, size, size), torch.randint(0, 4, (8,)))
            search_step(net, arch, opt, batch, batch, lr=0.05)
    print("narrow search steps ok")
""")


def test_narrow_partial_channel_search_step_at_one_thread_survives():
    proc = subprocess.run([sys.executable, "-c", NARROW_SEARCH], capture_output=True, check=False,
                          text=True, timeout=600)
    assert proc.returncode == 0, (
        f"exit {proc.returncode} (negative: killed by signal)\n{proc.stderr[-3000:]}")
    assert "narrow search steps ok" in proc.stdout


def _reference(x: torch.Tensor, op: FactorizedReduce) -> torch.Tensor:
    """FactorizedReduce written out: two 1x1 convs on the even and the odd pixel grids."""
    a = torch.einsum("nchw,oc->nohw", x[:, :, ::2, ::2], op.conv_1.weight[:, :, 0, 0])
    shifted = F.pad(x[:, :, 1:, 1:], (0, x.shape[3] % 2, 0, x.shape[2] % 2))
    b = torch.einsum("nchw,oc->nohw", shifted[:, :, ::2, ::2], op.conv_2.weight[:, :, 0, 0])
    return op.bn(torch.cat([a, b], dim=1))


@pytest.mark.parametrize("c_in", [2, 4, 6, 8, 12, 16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [8, 7])
def test_factorized_reduce_narrow_path_is_the_same_convolution(c_in, layout, size):
    op = FactorizedReduce(c_in, 4).to(memory_format=layout)
    x = torch.randn(3, c_in, size, size).contiguous(memory_format=layout).requires_grad_()
    out = op._reduce(x)
    assert out.is_contiguous(memory_format=layout)
    x_ref = x.detach().clone().requires_grad_()
    ref = _reference(x_ref, op)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    (gx, gw), (rx, rw) = (torch.autograd.grad(o, (i, op.conv_1.weight), g)
                          for o, i in ((out, x), (ref, x_ref)))
    torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-5)


def test_hazard_only_for_narrow_real_cpu_tensors():
    assert onednn_narrow_conv_hazard(torch.randn(1, 4, 8, 8))
    assert not onednn_narrow_conv_hazard(torch.randn(1, 16, 8, 8))
    assert not onednn_narrow_conv_hazard(torch.empty(1, 4, 8, 8, device="meta"))
