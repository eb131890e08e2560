"""The second-order step runs the supernet in the layout the first-order step runs it in.

The virtual weights w' and the shifted weights w +- eps v are new tensors; the arithmetic
that builds them picks its own strides (row-major where a channels-last conv weight has a
dimension of size 1), and oneDNN picks a convolution's layout from the weight's strides.
Before the fix the whole functional call ran in NCHW and the second-order step cost 5x the
first-order step instead of about 2.5x.
"""

import torch

from nasspeech.search import Architect
from nasspeech.space import SearchSpace


def _space() -> SearchSpace:
    ops = ["sep_conv_3x3", "dil_conv_3x3", "conv_7x1_1x7", "max_pool_3x3", "skip_connect",
           "none"]
    return SearchSpace(name="layout", input_shape=(1, 12, 12), num_classes=3, components=[
        {"name": "cnn", "family": "cnn", "ops": ops, "cells": 3, "nodes": 2, "channels": 4}])


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 1, 12, 12), torch.randint(0, 3, (n,))


def test_virtual_and_shifted_weights_keep_the_parameters_strides():
    net = _space().build_supernet()
    arch = Architect(net, order=2)
    names, weights = arch._named_weights()
    assert any(w.dim() == 4 and not w.is_contiguous() for w in weights), "channels-last weights"
    unrolled = arch._virtual_step(names, weights, _batch(), 0.025, None)
    for name, w in zip(names, weights):
        assert unrolled[name].stride() == w.stride(), name
        assert unrolled[name].requires_grad

    seen: list[dict[str, torch.Tensor]] = []
    call = arch._call
    arch._call = lambda params, x, *a: (seen.append(params), call(params, x, *a))[1]  # type: ignore
    vector = tuple(torch.randn(w.shape) for w in weights)  # row-major, unlike the weights
    arch.hessian_vector_product(names, weights, vector, _batch())
    assert len(seen) == 2
    for shifted in seen:
        for name, w in zip(names, weights):
            assert shifted[name].stride() == w.stride(), name


def test_second_order_activations_stay_channels_last():
    """Every 4-d activation of the unrolled forward pass is channels-last, as in the plain
    forward pass."""
    net = _space().build_supernet()
    arch = Architect(net, order=2)
    names, weights = arch._named_weights()
    unrolled = arch._virtual_step(names, weights, _batch(), 0.025, None)
    layouts: set[bool] = set()

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[1] > 1:
            layouts.add(output.is_contiguous(memory_format=torch.channels_last))

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        arch._call(unrolled, _batch()[0])
    finally:
        for h in handles:
            h.remove()
    assert layouts == {True}
