"""search.precision / train.precision: bf16 autocast for the forward passes, fp32 everywhere
else, on CPU (first and second order) and, where there is one, on CUDA."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasspeech.config import ConfigError, RunConfig, SearchConfig
from nasspeech.kernels.precision import autocast, autocast_dtype, check_precision
from nasspeech.search import weight_step
from nasspeech.search.recipe import build_search
from nasspeech.space import SearchSpace


def joint_space(channels: int = 16) -> SearchSpace:
    """A CNN feeding recurrent ops (plain and with attention), as in emoDARTS."""
    return SearchSpace(name="joint", input_shape=(1, 16, 16), num_classes=3, components=[
        {"name": "cnn", "family": "cnn", "ops": ["sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3",
                                            "avg_pool_3x3", "skip_connect", "none"],
             "cells": 2, "nodes": 2, "channels": 4, "handover": "fold_frequency"},
        {"name": "seq", "family": "seq", "ops": ["lstm_1", "rnn_att_1", "skip_connect", "none"],
             "cells": 1, "nodes": 2, "channels": channels, "handover": "mean_over_time"},
    ])


def _batch(n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)


def _dtypes(model: nn.Module):
    """Record the output dtype of every conv and the input dtype of every RNN."""
    seen: dict[str, set] = {"conv": set(), "rnn_in": set(), "rnn_out": set()}

    def conv(_m, _args, out) -> None:
        seen["conv"].add(out.dtype)

    def rnn(_m, args, out) -> None:
        seen["rnn_in"].add(args[0].dtype)
        seen["rnn_out"].add(out[0].dtype)

    handles = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else rnn)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.RNNBase))]
    return seen, handles


@pytest.mark.parametrize(("order", "hvp"), [(1, "finite_difference"), (2, "finite_difference"),
                                            (2, "exact")])
def test_bf16_search_step_on_cpu(order: int, hvp: str) -> None:
    """A bf16 step runs its convolutions in bf16 and its RNNs in fp32, keeps weights, alphas,
    their gradients and the optimiser state fp32, and moves the alphas and weights as the
    fp32 step does (to bf16's precision)."""
    steps, space = {}, joint_space()
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)  # after the space: validating one draws random numbers
        model = space.build_supernet()
        recipe = build_search(SearchConfig(order=order, hvp=hvp, precision=precision), model)
        alphas0 = [a.detach().clone() for a in model.alpha_parameters()]
        seen, handles = _dtypes(model)
        result = recipe.step(_batch(seed=1), _batch(seed=2), lr=0.05)
        for h in handles:
            h.remove()
        steps[precision] = (model, result, alphas0, seen)
    model, result, alphas0, seen = steps["bf16"]
    # (the finite difference's two passes run in fp32: test_finite_difference_...)
    assert seen["conv"] == ({torch.bfloat16, torch.float32} if hvp == "finite_difference"
                            and order == 2 else {torch.bfloat16})
    assert seen["rnn_in"] == seen["rnn_out"] == {torch.float32}
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in model.parameters())
    for opt in recipe.optimizers():
        assert all(v.dtype == torch.float32 for st in opt.state.values() for v in st.values()
                   if isinstance(v, torch.Tensor) and v.is_floating_point())
    ref_model, ref, ref_alphas0, ref_seen = steps["fp32"]
    assert ref_seen["conv"] == {torch.float32}
    assert result.loss == pytest.approx(ref.loss, rel=0.01)
    assert result.alpha_loss == pytest.approx(ref.alpha_loss, rel=0.01)
    assert result.loss != ref.loss
    # the alpha updates agree in direction: Adam's first step is lr * sign(grad) where the
    # gradient is not tiny, so compare the signs of the larger moves
    for a, a0, r, r0 in zip(model.alpha_parameters(), alphas0, ref_model.alpha_parameters(),
                            ref_alphas0):
        move, ref_move = a.detach() - a0, r.detach() - r0
        big = ref_move.abs() > 0.5 * ref_move.abs().max()
        assert (torch.sign(move[big]) == torch.sign(ref_move[big])).float().mean() >= 0.9


def _rel(a, b) -> float:
    a, b = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
    return float((a - b).norm() / b.norm())


def test_finite_difference_hessian_term_runs_in_fp32() -> None:
    """The shift of the finite difference (radius 0.01 / ||v||) is below bf16's resolution:
    computed in bf16 the Hessian-vector product is rounding noise, so a bf16 step takes its
    two passes in fp32."""
    from nasspeech.search import Architect

    space, train = joint_space(), _batch(seed=1)
    torch.manual_seed(0)
    model = space.build_supernet().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    vector = [torch.randn_like(w) for w in model.weight_parameters()]
    hvps = {}
    for precision in ("fp32", "bf16"):
        arch = Architect(model, order=2, precision=precision)
        names, weights = arch._named_weights()
        model.load_state_dict(state)  # the same batch-norm statistics for every pass
        hvps[precision] = arch.hessian_vector_product(names, weights, vector, train)
    assert _rel(hvps["bf16"], hvps["fp32"]) < 1e-6
    call = arch._call
    arch._call = lambda params, x, precision=None: call(params, x)  # the step's bf16
    model.load_state_dict(state)
    assert _rel(arch.hessian_vector_product(names, weights, vector, train), hvps["fp32"]) > 0.5


@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_fast_depthwise_kernel_under_autocast(stride: int, dilation: int) -> None:
    """The CPU depthwise kernel runs in bf16 under autocast (oneDNN's bf16 depthwise
    backward is the slow path it replaces: 9x the fp32 step on the CNN yardstick) and gives
    PyTorch's own bf16 results; its weight gradient reaches the fp32 weight in fp32."""
    from nasspeech.kernels import reference_kernels
    from nasspeech.kernels.depthwise import DepthwiseConv2d

    torch.manual_seed(0)
    conv = DepthwiseConv2d(8, 3, stride, dilation, dilation)
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    results = []
    for reference in (False, True):
        with reference_kernels() if reference else contextlib.nullcontext():
            with autocast("cpu", "bf16"):
                out = conv(x)
            node = type(out.grad_fn).__name__
            grads = torch.autograd.grad(out, [x, conv.weight], torch.ones_like(out))
        results.append((out, *grads))
        assert ("Depthwise" in node) != reference  # the fast kernel ran, then PyTorch's
    ours, theirs = results
    assert ours[0].dtype == torch.bfloat16 and ours[2].dtype == torch.float32
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


def test_mixed_op_sums_in_bf16_under_autocast() -> None:
    """Under bf16 autocast the cells' weighted sums (and so the node states) are bf16: an
    fp32 alpha weight would make autocast compute them in fp32."""
    model = joint_space().build_supernet()
    sums = set()
    for m in model.modules():
        if type(m).__name__ == "MixedOp":
            m.register_forward_hook(lambda _m, _a, out: sums.add(out.dtype))
    with autocast("cpu", "bf16"):
        model(_batch()[0])
    assert sums == {torch.bfloat16}
    sums.clear()
    model(_batch()[0])
    assert sums == {torch.float32}


def test_weight_step_precision_for_retraining() -> None:
    """The retraining step (``train.precision``): bf16 forward, fp32 loss and gradients."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = _batch()
    with torch.no_grad():
        before = float(F.cross_entropy(net(x), y))
    out = []
    net[3].register_forward_hook(lambda _m, _a, o: out.append(o.dtype))
    res = weight_step(net, opt, (x, y), precision="bf16")
    assert out == [torch.bfloat16]
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in net.parameters())
    assert res.loss == pytest.approx(before, rel=0.01)


def test_autocast_helpers() -> None:
    assert autocast_dtype("cpu") is None
    with autocast("cpu", "bf16"):
        assert autocast_dtype("cpu") == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert autocast_dtype("cpu") is None
    with pytest.raises(ValueError, match=r"fp32 \| bf16"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="cpu or cuda"):
        autocast("meta", "bf16")


def _config(**extra) -> dict:
    return {"space": joint_space().model_dump(mode="json"),
            "data": {"features": {"n_mfcc": 16, "frames": 16}}, **extra}


def test_config_precision_fields_and_the_amp_alias() -> None:
    config = RunConfig.from_mapping(_config(search={"precision": "bf16"}))
    assert (config.search.precision, config.train.precision) == ("bf16", "fp32")
    with pytest.warns(FutureWarning, match="amp: true.*deprecated"):
        config = RunConfig.from_mapping(_config(amp=True))
    assert (config.search.precision, config.train.precision) == ("bf16", "bf16")
    assert "amp" not in config.model_dump()
    with pytest.warns(FutureWarning):
        config = RunConfig.from_mapping(_config(amp=False, train={"precision": "bf16"}))
    assert (config.search.precision, config.train.precision) == ("fp32", "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(ConfigError, match="amp: true contradicts train.precision: fp32"):
            RunConfig.from_mapping(_config(amp=True, train={"precision": "fp32"}))


@pytest.mark.gpu
@pytest.mark.parametrize("order", [1, 2])
def test_bf16_search_step_on_cuda(order: int) -> None:
    """The step that failed on CUDA ("Unexpected floating ScalarType in
    at::autocast::prioritize": cuDNN ran the LSTMs in fp16) runs, its RNNs in fp32."""
    torch.manual_seed(0)
    model = joint_space().build_supernet().cuda()
    recipe = build_search(SearchConfig(order=order, precision="bf16"), model)
    seen, _ = _dtypes(model)
    x, y = _batch()
    result = recipe.step((x.cuda(), y.cuda()), (x.cuda(), y.cuda()), lr=0.05)
    assert torch.isfinite(torch.tensor(result.loss))
    assert seen["conv"] == {torch.bfloat16}
    assert seen["rnn_out"] == {torch.float32}


def test_search_and_retraining_in_bf16(tmp_path) -> None:
    """A whole (tiny) search and retraining with the deprecated ``amp: true``: both run in
    bf16, the saved config says so in the new fields, the weights stay fp32."""
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
    from tiny_runs import tiny_data, tiny_dict

    from nasspeech.workflow.search import run_search
    from nasspeech.workflow.train import run_train

    with pytest.warns(FutureWarning, match="amp: true"):
        config = RunConfig.from_mapping({**tiny_dict(tmp_path / "cache"), "amp": True})
    data = tiny_data(config)
    found = run_search(config, data, 0, tmp_path / "search", progress=False)
    saved = yaml.safe_load((found.run_dir / "config.yaml").read_text())
    assert "amp" not in saved
    assert saved["search"]["precision"] == saved["train"]["precision"] == "bf16"
    result = run_train(config, data, 0, tmp_path / "train", genotype=found.genotype,
                       progress=False)
    assert 0.0 <= result.metrics["ua"] <= 1.0
    state = torch.load(result.run_dir / "model.pt", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
