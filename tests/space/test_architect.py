"""The Architect: second order is the real unrolled gradient, first order differs from it."""

import torch
import torch.nn.functional as F
from torch.func import functional_call

from nasspeech.search import Architect, search_step
from nasspeech.space import SearchSpace


def tiny_space() -> SearchSpace:
    return SearchSpace(
        name="tiny",
        input_shape=(1, 8, 8),
        num_classes=3,
        components=[
            dict(name="cnn", family="cnn", ops=["sep_conv_3x3", "max_pool_3x3", "skip_connect",
                                                "none"], cells=2, nodes=2, channels=4),
        ],
    )


def _batches():
    g = torch.Generator().manual_seed(1)
    xt = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    xv = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    yt = torch.randint(0, 3, (6,), generator=g)
    yv = torch.randint(0, 3, (6,), generator=g)
    return (xt, yt), (xv, yv)


def exact_unrolled_gradient(model, arch, train, val, eta):
    """grad_alpha L_val(w - eta * (grad_w L_train(w, alpha) + wd * w), alpha) by double backward."""
    names, weights = arch._named_weights()
    loss = F.cross_entropy(model(train[0]), train[1])
    grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    unrolled = {}
    for n, w, g in zip(names, weights, grads):
        step = arch.w_weight_decay * w
        if g is not None:
            step = step + g
        unrolled[n] = w - eta * step
    val_loss = F.cross_entropy(functional_call(model, unrolled, (val[0],)), val[1])
    return torch.autograd.grad(val_loss, arch.alphas)


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def test_second_order_matches_exact_hessian_vector_product():
    """The finite difference equals the exact unrolled gradient (float64; a radius small enough
    that train-mode batch-norm curvature does not dominate: at DARTS' 0.01 a network this
    small is far from linear over the step, which is a property of the loss, not the code)."""
    torch.manual_seed(0)
    model = tiny_space().build_supernet().double()
    for a in model.alpha_parameters():  # away from uniform so the implicit term is visible
        a.data.normal_(0, 0.5)
    model.train()
    arch = Architect(model, order=2, fd_radius=1e-5)
    train, val = _batches()
    eta = 0.5
    _, fd = arch.second_order_gradient(train, val, eta)
    exact = exact_unrolled_gradient(model, arch, train, val, eta)
    fd, exact = _flat(fd), _flat(exact)
    rel = (fd - exact).norm() / exact.norm()
    assert rel < 1e-2, f"relative error {rel:.2e}"

    # the implicit (Hessian) part alone must match too: the reference code shrank it by eps^2
    names, weights = arch._named_weights()
    unrolled = arch._virtual_step(names, weights, train, eta, None)
    direct = _flat(torch.autograd.grad(
        F.cross_entropy(arch._call(unrolled, val[0]), val[1]), arch.alphas))
    rel_implicit = ((fd - direct) - (exact - direct)).norm() / (exact - direct).norm()
    assert (exact - direct).norm() > 1e-3 * exact.norm()
    assert rel_implicit < 2e-2, f"implicit-term relative error {rel_implicit:.2e}"

    # and the first-order gradient (at w, no unrolling) is a different vector
    first = _flat(torch.autograd.grad(F.cross_entropy(model(val[0]), val[1]), arch.alphas))
    assert (first - exact).norm() / exact.norm() > 0.05


def test_default_radius_is_darts():
    assert Architect(tiny_space().build_supernet(), order=2).fd_radius == 0.01


def test_search_step_updates_alphas_and_weights_for_both_orders():
    for order in (1, 2):
        torch.manual_seed(0)
        model = tiny_space().build_supernet()
        arch = Architect(model, order=order)
        opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
        alphas0 = [a.detach().clone() for a in model.alpha_parameters()]
        w0 = [p.detach().clone() for p in model.weight_parameters()]
        batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,)))
        result = search_step(model, arch, opt, batch, batch, lr=0.05)
        assert result.count == 4 and result.alpha_loss is not None
        assert any(not torch.equal(a, b) for a, b in zip(alphas0, model.alpha_parameters()))
        assert any(not torch.equal(a, b) for a, b in zip(w0, model.weight_parameters()))
        # the weight optimiser never holds alphas
        held = {id(p) for group in opt.param_groups for p in group["params"]}
        assert not held & {id(a) for a in model.alpha_parameters()}


def test_bad_order_rejected():
    model = tiny_space().build_supernet()
    try:
        Architect(model, order=3)
    except ValueError as exc:
        assert "order" in str(exc)
    else:
        raise AssertionError("order=3 accepted")


def test_build_search_takes_every_setting_from_the_search_section():
    from nasspeech.config import SearchConfig
    from nasspeech.search.recipe import build_search

    sc = SearchConfig(order=1, lr=0.1, momentum=0.5, weight_decay=1e-5, grad_clip=None,
                      alpha_lr=0.01, alpha_betas=(0.3, 0.9), alpha_weight_decay=0.0)
    torch.manual_seed(0)
    model = tiny_space().build_supernet()
    recipe = build_search(sc, model)
    (w,) = recipe.w_optimizer.param_groups
    assert (w["lr"], w["momentum"], w["weight_decay"]) == (0.1, 0.5, 1e-5)
    assert {id(p) for p in w["params"]} == {id(p) for p in model.weight_parameters()}
    arch = recipe.architect
    (a,) = arch.optimizer.param_groups
    assert (a["lr"], a["betas"], a["weight_decay"]) == (0.01, (0.3, 0.9), 0.0)
    assert (arch.order, arch.w_momentum, arch.w_weight_decay) == (1, 0.5, 1e-5)
    batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,)))
    alphas0 = [p.detach().clone() for p in model.alpha_parameters()]
    assert recipe.step(batch, batch).count == 4  # at search.lr, no clipping
    assert any(not torch.equal(x, y) for x, y in zip(alphas0, model.alpha_parameters()))
    frozen = [p.detach().clone() for p in model.alpha_parameters()]
    recipe.step(batch, batch, lr=0.01, update_alphas=False)  # warm-up: alphas stay
    assert all(torch.equal(x, y) for x, y in zip(frozen, model.alpha_parameters()))
    assert [foreach for opt in build_search(sc, model, foreach=True).optimizers()
            for foreach in (g["foreach"] for g in opt.param_groups)] == [True, True]
