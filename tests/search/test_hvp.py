"""search.hvp: the exact (double-backward) Hessian-vector product against references computed
independently, and against the finite difference at DARTS' radius."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nasspeech.config import SearchConfig
from nasspeech.search import Architect, search_step
from nasspeech.space import SearchSpace

ETA, WD = 0.5, 3e-4
CNN = dict(name="cnn", family="cnn", ops=["sep_conv_3x3", "max_pool_3x3", "skip_connect",
                                          "none"], cells=2, nodes=2, channels=4)


def space(*components: dict) -> SearchSpace:
    return SearchSpace(name="tiny", input_shape=(1, 8, 8), num_classes=3,
                       components=list(components) or [CNN])


def batches(n: int = 6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, n, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, n), generator=g)
    return (x[0], y[0]), (x[1], y[1])


def supernet(*components: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = space(*components).build_supernet().double()
    for a in model.alpha_parameters():  # away from uniform so the implicit term is visible
        a.data.normal_(0, 0.5)
    return model


def weights_of(model):
    alpha_ids = {id(a) for a in model.alpha_parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in alpha_ids}


def autograd_reference(model, train, val, momentum=None):
    """grad_a L_val(w - eta (grad_w L_train(w, a) + wd w + m buf), a): autograd through the
    unrolled step, with the weights as differentiable inputs (not detached)."""
    weights = weights_of(model)
    loss = F.cross_entropy(functional_call(model, weights, (train[0],)), train[1])
    grads = torch.autograd.grad(loss, list(weights.values()), create_graph=True,
                                allow_unused=True)
    unrolled = {}
    for (n, w), g in zip(weights.items(), grads):
        step = WD * w + (0 if g is None else g)
        if momentum is not None and n in momentum:
            step = step + 0.9 * momentum[n]
        unrolled[n] = w - ETA * step
    val_loss = F.cross_entropy(functional_call(model, unrolled, (val[0],)), val[1])
    return torch.autograd.grad(val_loss, list(model.alpha_parameters()))


def numerical_reference(model, train, val, h=1e-6):
    """Central differences in every alpha of the unrolled objective
    ``a -> L_val(w - eta (grad_w L_train(w, a) + wd w), a)`` (first derivatives only: no
    double backward, no Hessian-vector formula)."""
    weights = {n: w.detach() for n, w in weights_of(model).items()}

    def objective() -> float:
        w = {n: t.clone().requires_grad_(True) for n, t in weights.items()}
        loss = F.cross_entropy(functional_call(model, w, (train[0],)), train[1])
        grads = torch.autograd.grad(loss, list(w.values()), allow_unused=True)
        w2 = {n: t.detach() - ETA * (WD * t.detach() + (0 if g is None else g))
              for (n, t), g in zip(w.items(), grads)}
        with torch.no_grad():
            return float(F.cross_entropy(functional_call(model, w2, (val[0],)), val[1]))

    out = []
    for a in model.alpha_parameters():
        g = torch.zeros_like(a)
        flat_a, flat_g = a.data.view(-1), g.view(-1)
        for i in range(flat_a.numel()):
            old = float(flat_a[i])
            flat_a[i] = old + h
            plus = objective()
            flat_a[i] = old - h
            minus = objective()
            flat_a[i] = old
            flat_g[i] = (plus - minus) / (2 * h)
        out.append(g)
    return out


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def rel(a, b):
    return float((flat(a) - flat(b)).norm() / flat(b).norm())


def test_exact_matches_numerical_derivative_and_beats_fd():
    model = supernet().eval()
    train, val = batches()
    _, exact = Architect(model, order=2, hvp="exact").second_order_gradient(train, val, ETA)
    _, fd = Architect(model, order=2).second_order_gradient(train, val, ETA)
    ref = numerical_reference(model, train, val)
    assert rel(exact, ref) < 1e-5, rel(exact, ref)
    assert rel(fd, ref) > 10 * rel(exact, ref), (rel(fd, ref), rel(exact, ref))
    # the implicit term is a real part of the answer (first order at w' differs)
    arch = Architect(model, order=2)
    names, weights = arch._named_weights()
    unrolled = arch._virtual_step(names, weights, train, ETA, None)
    direct = torch.autograd.grad(
        F.cross_entropy(arch._call(unrolled, val[0]), val[1]), arch.alphas)
    assert rel(direct, ref) > 1e-3


def test_exact_matches_autograd_reference_train_mode_with_momentum_and_beats_fd():
    model = supernet().train()
    train, val = batches()
    opt = torch.optim.SGD(weights_of(model).values(), lr=0.1, momentum=0.9)
    F.cross_entropy(model(train[0]), train[1]).backward()
    opt.step()  # a momentum buffer, which the virtual step must include
    model.zero_grad(set_to_none=True)
    buffers = {n: opt.state[w]["momentum_buffer"] for n, w in weights_of(model).items()
               if w in opt.state}
    assert buffers
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def gradient(hvp):
        model.load_state_dict(state)  # same batch-norm running stats for every call
        arch = Architect(model, order=2, hvp=hvp, w_momentum=0.9, w_weight_decay=WD)
        return arch.second_order_gradient(train, val, ETA, opt)[1]

    exact, fd = gradient("exact"), gradient("finite_difference")
    model.load_state_dict(state)
    ref = autograd_reference(model, train, val, buffers)
    err_exact, err_fd = rel(exact, ref), rel(fd, ref)
    assert err_exact < 1e-8, err_exact
    assert err_fd > 10 * err_exact, (err_fd, err_exact)


def test_exact_through_sequence_ops_matches_small_radius_fd():
    """Double backward through the recurrent ops of a joint CNN + seq space."""
    seq = dict(name="seq", family="seq", ops=["lstm_1", "rnn_att_1", "skip_connect", "none"],
               cells=1, nodes=2, channels=6, handover="mean_over_time")
    model = supernet({**CNN, "cells": 1, "handover": "fold_frequency"}, seq).eval()
    train, val = batches()
    _, exact = Architect(model, order=2, hvp="exact").second_order_gradient(train, val, ETA)
    _, fd = Architect(model, order=2, fd_radius=1e-6).second_order_gradient(train, val, ETA)
    assert rel(fd, exact) < 1e-4


@pytest.mark.parametrize("hvp", ["finite_difference", "exact"])
def test_search_step_updates_alphas_with_either_hvp(hvp):
    torch.manual_seed(0)
    model = space().build_supernet()
    arch = Architect(model, order=2, hvp=hvp)
    opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9)
    alphas0 = [a.detach().clone() for a in model.alpha_parameters()]
    batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,)))
    result = search_step(model, arch, opt, batch, batch, lr=0.05)
    assert result.alpha_loss is not None
    assert any(not torch.equal(a, b) for a, b in zip(alphas0, model.alpha_parameters()))
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_hvp_setting():
    assert SearchConfig().hvp == "finite_difference"
    assert SearchConfig(hvp="exact").hvp == "exact"
    with pytest.raises(ValueError, match="hvp"):
        Architect(space().build_supernet(), order=2, hvp="fd")


def test_run_search_passes_the_config_hvp(tmp_path, monkeypatch):
    """search.hvp reaches the Architect of a workflow search, which then finishes."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
    from tiny_runs import tiny_dict

    import nasspeech.search.recipe as recipe
    import nasspeech.workflow.search as workflow_search
    from nasspeech.config import RunConfig
    from nasspeech.workflow.datasets import load_run_data

    seen = []

    class Recording(Architect):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append((self.order, self.hvp))

    monkeypatch.setattr(recipe, "Architect", Recording)  # the one place the step is built
    config = RunConfig.model_validate(tiny_dict(tmp_path / "cache", search={
        "epochs": 1, "order": 2, "hvp": "exact"}))
    data = load_run_data(config, progress=False)
    result = workflow_search.run_search(config, data, 0, tmp_path / "run", progress=False)
    assert seen == [(2, "exact")]
    assert result.epochs_run == 1
