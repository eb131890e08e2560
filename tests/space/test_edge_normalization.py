"""PC-DARTS edge normalisation (beta): one searched weight per edge, softmaxed over each node's
incoming edges; it weights the node's sum in the supernet and ranks edges in derivation. Off,
the supernet is what it was before beta existed."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nasspeech.genotype import Genotype, parse_cell
from nasspeech.search import Architect, search_step
from nasspeech.space import SearchSpace
from nasspeech.space.cells import node_softmax

TESTS = Path(__file__).resolve().parents[1]
OPS = ["sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"]
SEQ_OPS = ["lstm_1", "skip_connect", "none"]


def space(partial: int = 2, norm: bool | None = None, seq: bool = True) -> SearchSpace:
    """A cnn component (3 cells, 2 nodes) and, with ``seq``, a seq component after it."""
    comps = [dict(name="cnn", family="cnn", ops=OPS, cells=3, nodes=2, channels=4,
                  partial_channels=partial, edge_normalization=norm,
                  handover="fold_frequency" if seq else "auto")]
    if seq:
        comps.append(dict(name="seq", family="seq", ops=SEQ_OPS, cells=1, nodes=2, channels=8,
                          partial_channels=partial, edge_normalization=norm))
    return SearchSpace(name="pc", input_shape=(1, 8, 8), num_classes=3, components=comps)


def batch(n: int = 6, dtype=torch.float32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 8, 8, generator=g, dtype=dtype),
            torch.randint(0, 3, (n,), generator=g))


@pytest.mark.parametrize("partial, norm, on", [
    (1, None, False), (2, None, True), (2, False, False), (1, True, True)])
def test_default_is_on_with_partial_channels_and_both_families_have_beta(partial, norm, on):
    net = space(partial, norm).build_supernet()
    betas = net.named_betas()
    assert sorted(betas) == (["cnn.normal", "cnn.reduce", "seq.cell"] if on else [])
    assert all(b.shape == (5,) for b in betas.values())  # 2 + 3 edges of 2 nodes
    alphas = list(net.named_alphas().values())
    # the Architect's parameters: the alphas, then the betas; never among the weights
    assert {id(p) for p in net.alpha_parameters()} == {id(p) for p in alphas + list(betas.values())}
    assert not {id(p) for p in net.weight_parameters()} & {id(b) for b in betas.values()}
    assert any("betas" in k for k in net.state_dict()) == on


def test_node_softmax_normalises_each_nodes_edges():
    beta = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, 3.0, 3.0, 3.0, 3.0])
    w = node_softmax(beta, 3)
    assert torch.allclose(w[:2], torch.softmax(beta[:2], 0))
    assert torch.allclose(w[2:5], torch.softmax(beta[2:5], 0))
    assert torch.allclose(w[5:], torch.full((4,), 0.25))


def _cell_inputs(net, comp="cnn"):
    c = net.components[comp]
    x = c.stem(c.layout.prepare_input(batch()[0]))
    return c, c.cells[0], x


def test_node_is_the_beta_weighted_sum_of_its_edges():
    torch.manual_seed(0)
    net = space(seq=False).build_supernet().eval()
    comp, cell, x = _cell_inputs(net)
    with torch.no_grad():
        comp.betas["normal"].copy_(torch.tensor([2.0, -1.0, 0.5, 3.0, -2.0]))
        weights = F.softmax(comp.alphas["normal"], dim=-1)
        shares = comp.edge_weights()["normal"]
        got = cell(x, x, weights, shares)
        states = [cell.preprocess0(x), cell.preprocess1(x)]
        offset = 0
        for _ in range(cell.nodes):
            outs = [cell.edges[offset + i](h, weights[offset + i]) for i, h in enumerate(states)]
            states.append(sum(s * o for s, o in zip(shares[offset:offset + len(states)], outs)))
            offset += len(outs)
        want = cell.finish(states[2:])
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
        # beta matters: the plain edge sum is another output
        assert not torch.allclose(got, cell(x, x, weights), rtol=1e-3, atol=1e-4)


def test_reduction_edge_scales_its_bypassed_channels_too():
    """A strided partial-channel edge (its bypassed channels go through a skip path): the
    share scales the whole output, as share x MixedOp would."""
    torch.manual_seed(0)
    net = space(seq=False).build_supernet().eval()
    edge = net.components["cnn"].cells[1].edges[0]
    assert edge.skip_path is not None
    h, w = torch.randn(2, 8, 8, 8), torch.softmax(torch.randn(4), 0)
    with torch.no_grad():
        assert torch.allclose(edge(h, w, torch.tensor(0.3)), 0.3 * edge(h, w), atol=1e-6)


def test_beta_keeps_little_for_the_backward_pass():
    """The share is folded into the op weights and the bypassed channels: with partial
    channels K = 4, beta adds under 10 % to what a forward pass keeps for backward (a plain
    share x edge product would keep every edge's full-width output)."""
    sys.path.insert(0, str(TESTS / "workflow"))
    from test_collapse_pc_nan import saved_activation_bytes

    comp = dict(name="cnn", family="cnn", ops=OPS, cells=3, nodes=2, channels=8,
                partial_channels=4)
    kept = {norm: saved_activation_bytes(SearchSpace(
        name="k", input_shape=(1, 16, 16), num_classes=4,
        components=[{**comp, "edge_normalization": norm}])) for norm in (False, True)}
    assert kept[False] < kept[True] < 1.1 * kept[False], kept


def test_off_is_the_old_supernet():
    """Without edge normalisation: no new parameter or state, a node is the plain sum of its
    edges (the formula before beta existed: the same computation, so equal bit for bit), and
    derivation ranks by alpha alone."""
    torch.manual_seed(0)
    net = space(2, False, seq=False).build_supernet().eval()
    torch.manual_seed(0)
    on = space(2, True, seq=False).build_supernet()
    assert set(on.state_dict()) - set(net.state_dict()) == {
        "components.cnn.betas.normal", "components.cnn.betas.reduce"}
    # beta is drawn after a component's alphas: the component's weights and alphas are the same
    for k, v in net.components["cnn"].state_dict().items():
        assert torch.equal(v, on.components["cnn"].state_dict()[k]), k
    comp, cell, x = _cell_inputs(net)
    with torch.no_grad():
        weights = F.softmax(comp.alphas["normal"], dim=-1)
        states = [cell.preprocess0(x), cell.preprocess1(x)]
        offset = 0
        for _ in range(cell.nodes):
            node = 0
            for i, h in enumerate(states):
                node = node + cell.edges[offset + i](h, weights[offset + i])
            offset += len(states)
            states.append(node)
        assert torch.equal(cell(x, x, weights), cell.finish(states[2:]))
    cfg = net.space.components[0]
    zero = [o == "none" for o in OPS]
    for kind, alpha in comp.alphas.items():
        assert net.genotype().components[0].cells[kind] == parse_cell(
            F.softmax(alpha.detach(), -1), OPS, cfg.nodes, cfg.top_k, zero)


def test_derivation_ranks_edges_by_beta_times_alpha():
    """Node 3 has edges from 0, 1, 2. By alpha alone 0 and 1 win (their best non-none op
    weights 0.6 and 0.5 against 0.4); edge 1's small share of the node (beta) drops it."""
    alpha = torch.full((5, 4), -10.0)
    for edge, (op, logit) in {0: (0, 2.0), 1: (1, 2.0), 2: (0, 2.0), 3: (1, 2.0),
                              4: (2, 2.0)}.items():
        alpha[edge, op] = logit
    weights = F.softmax(alpha, -1)
    weights[2] = torch.tensor([0.6, 0.2, 0.1, 0.1])
    weights[3] = torch.tensor([0.1, 0.5, 0.2, 0.2])
    weights[4] = torch.tensor([0.1, 0.1, 0.4, 0.4])
    zero = [o == "none" for o in OPS]
    plain = parse_cell(weights, OPS, 2, 2, zero)
    assert [(e.source, e.op) for e in plain.nodes[1]] == [(0, "sep_conv_3x3"),
                                                         (1, "max_pool_3x3")]
    shares = node_softmax(torch.tensor([0.0, 0.0, 0.0, -2.0, 1.0]), 2)
    pc = parse_cell(weights, OPS, 2, 2, zero, shares)
    # scores 0.6 * 0.26, 0.5 * 0.04, 0.4 * 0.71: edges 0 and 2, each with its own best op
    assert [(e.source, e.op) for e in pc.nodes[1]] == [(0, "sep_conv_3x3"), (2, "skip_connect")]
    assert pc.nodes[0] == plain.nodes[0]  # node 2 keeps both of its two edges

    # the supernet derives with its betas the same way
    net = space(seq=False).build_supernet()
    comp = net.components["cnn"]
    with torch.no_grad():
        for kind in ("normal", "reduce"):
            comp.alphas[kind].copy_(weights.log())
            comp.betas[kind].copy_(torch.tensor([0.0, 0.0, 0.0, -2.0, 1.0]))
    assert net.genotype().components[0].cells["normal"] == pc
    with torch.no_grad():
        comp.betas["normal"].zero_()
    assert net.genotype().components[0].cells["normal"] == plain


def test_genotype_json_has_the_same_format():
    def keys(value):
        if isinstance(value, dict):
            return {k: keys(v) for k, v in value.items()}
        if isinstance(value, list):
            return [keys(v) for v in value[:1]]
        return type(value).__name__

    with_beta = space(2, True).build_supernet().genotype()
    without = space(2, False).build_supernet().genotype()
    assert keys(json.loads(with_beta.to_json())) == keys(json.loads(without.to_json()))
    assert Genotype.from_json(with_beta.to_json()) == with_beta


@pytest.mark.parametrize("order, hvp", [(1, "finite_difference"), (2, "finite_difference"),
                                        (2, "exact")])
def test_architect_step_gives_beta_a_gradient_and_moves_it(order, hvp):
    torch.manual_seed(0)
    net = space().build_supernet()
    arch = Architect(net, order=order, hvp=hvp, lr=0.01)
    assert {id(b) for b in net.named_betas().values()} <= {id(a) for a in arch.alphas}
    opt = torch.optim.SGD(net.weight_parameters(), 0.05, momentum=0.9)
    before = {k: b.detach().clone() for k, b in net.named_betas().items()}
    search_step(net, arch, opt, batch(seed=1), batch(seed=2), lr=0.05)
    for name, b in net.named_betas().items():
        assert b.grad is not None and b.grad.abs().sum() > 0, name
        assert not torch.equal(b.detach(), before[name]), name
        assert arch.optimizer.state[b]["exp_avg"].abs().sum() > 0, name  # Adam's state


def test_second_order_handles_beta_like_an_alpha():
    """Exact double backward, a small-radius finite difference and an independent autograd
    reference agree on the betas' unrolled gradient (float64, eval-mode batch norm)."""
    eta, wd = 0.5, 3e-4
    torch.manual_seed(0)
    net = space().build_supernet().double().eval()
    for a in net.alpha_parameters():  # away from uniform so the implicit term is visible
        a.data.normal_(0, 0.5)
    train, val = batch(dtype=torch.float64, seed=1), batch(dtype=torch.float64, seed=2)
    n_alpha = len(net.named_alphas())
    _, exact = Architect(net, order=2, hvp="exact", w_weight_decay=wd
                         ).second_order_gradient(train, val, eta)
    _, fd = Architect(net, order=2, fd_radius=1e-6, w_weight_decay=wd
                      ).second_order_gradient(train, val, eta)
    arch_ids = {id(a) for a in net.alpha_parameters()}
    weights = {n: p for n, p in net.named_parameters() if id(p) not in arch_ids}
    loss = F.cross_entropy(functional_call(net, weights, (train[0],)), train[1])
    grads = torch.autograd.grad(loss, list(weights.values()), create_graph=True,
                                allow_unused=True)
    unrolled = {n: w - eta * (wd * w + (0 if g is None else g))
                for (n, w), g in zip(weights.items(), grads)}
    val_loss = F.cross_entropy(functional_call(net, unrolled, (val[0],)), val[1])
    ref = torch.autograd.grad(val_loss, net.alpha_parameters())
    for e, f, r in zip(exact[n_alpha:], fd[n_alpha:], ref[n_alpha:]):  # the betas
        assert r.abs().sum() > 0
        assert torch.allclose(e, r, rtol=1e-7, atol=1e-10)
        assert (f - e).norm() <= 1e-4 * e.norm()


def test_params_command_counts_beta_with_the_alphas():
    from nasspeech.cli.commands.params import measure

    net = space().build_supernet()
    result = measure(net.space, None, {}, False)
    arch = sum(a.numel() for a in net.alpha_parameters())
    assert result["alphas"] == arch == 40 + 15 + 10 + 5  # cnn, seq alphas; their betas
    assert result["total"] == sum(p.numel() for p in net.parameters()) - arch


def test_memory_trace_matches_the_real_step_with_beta():
    """The estimator's fake trace of a second-order step, with the betas in the supernet,
    reproduces the real CPU step's allocations."""
    import itertools

    sys.path.insert(0, str(TESTS / "memory"))
    from helpers import canonical, fake_trace, real_setup
    from real_cpu import profiled_allocations

    from nasspeech.ops.kernels import reference_kernels

    pc = SearchSpace.model_validate({
        "input_shape": [1, 8, 8], "num_classes": 4, "components": [
            {"name": "cnn", "family": "cnn", "ops": ["max_pool_3x3", "sep_conv_3x3",
                                                     "skip_connect", "none"],
             "cells": 2, "nodes": 2, "channels": 16, "partial_channels": 2}]})
    trace = fake_trace(pc, 2, 2, target="cpu")
    with reference_kernels():
        setup = real_setup(pc, 2, 2)
        assert setup.model.named_betas()
        setup.run()
        real = profiled_allocations(setup.run, set(trace.meta["aten_ops"]))["sequence"]
    fake = trace.signed_sequence(initial_frees=False)
    assert canonical(fake) == canonical(real)
    assert max(itertools.accumulate(fake)) == max(itertools.accumulate(real))


# -- a search run: history, plots, TensorBoard, resume ------------------------------------------

def _run_config(tmp: Path):
    sys.path.insert(0, str(TESTS / "workflow"))
    from tiny_runs import tiny_dict

    from nasspeech.config import RunConfig

    cfg = tiny_dict(tmp / "cache", search={"epochs": 2, "batch_size": 64, "order": 1,
                                           "lr": 0.05, "lr_min": 0.005, "alpha_lr": 0.05})
    cnn, seq = cfg["space"]["components"]
    cnn.update(nodes=2, partial_channels=2)  # beta by default
    seq.update(nodes=2, edge_normalization=True)  # beta without partial channels
    return RunConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    from nasspeech.observe import with_tensorboard
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.search import run_search

    tmp = tmp_path_factory.mktemp("beta-search")
    config = _run_config(tmp)
    data = load_run_data(config, progress=False)
    full = run_search(with_tensorboard(config), data, 0, tmp / "full", progress=False)
    run_search(config, data, 0, tmp / "resumed", progress=False, stop_after=1)
    resumed = run_search(config, data, 0, tmp / "resumed", progress=False, resume=True)
    return full, resumed


def test_search_records_beta_history_and_plots_it(searched):
    full, _ = searched
    run = full.run_dir
    history = json.loads((run / "beta_history.json").read_text())
    assert history == full.beta_history and len(history) == 2
    assert set(history[0]) == {"cnn.reduce", "seq.cell"}  # one cnn cell: a reduction
    for shares in history[-1].values():
        assert sum(shares[:2]) == pytest.approx(1.0) and sum(shares[2:]) == pytest.approx(1.0)
    assert history[0] != history[1]  # searched: the betas move
    assert (run / "betas.png").stat().st_size > 2000
    # alpha_history.json keeps its format: edges x ops matrices only
    alphas = json.loads((run / "alpha_history.json").read_text())
    assert set(alphas[0]) == set(history[0]) and len(alphas[0]["seq.cell"][0]) == 3


def test_tensorboard_logs_each_edge_share(searched):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    full, _ = searched
    acc = EventAccumulator(str(full.run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    for name in ("cnn.reduce", "seq.cell"):
        got = [e.value for e in acc.Scalars(f"betas/{name}/node3_from2")]
        assert got == pytest.approx([h[name][4] for h in full.beta_history], abs=1e-7)


def test_resume_restores_beta(searched):
    from nasspeech.workflow.checkpoint import load_checkpoint

    full, resumed = searched
    assert resumed.beta_history == full.beta_history
    assert resumed.genotype == full.genotype
    a = load_checkpoint(full.run_dir / "checkpoint.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoint.pt")
    for key in ("components.cnn.betas.reduce", "components.seq.betas.cell"):
        assert torch.equal(a["model"][key], b["model"][key])
    assert a["beta_history"] == full.beta_history
    # the alpha optimiser's Adam state covers the betas too (alphas first, then betas)
    assert len(a["alpha_optimizer"]["state"]) == 2 + 2


def test_plot_beta_history_draws_each_set(tmp_path):
    from nasspeech.plots import plot_beta_history

    history = [{"cnn.normal": [0.5, 0.5, 0.2, 0.3, 0.5]}, {"cnn.normal": [0.7, 0.3, 0.1, 0.1,
                                                                          0.8]}]
    path = plot_beta_history(history, tmp_path / "b.png",
                             edge_labels={"cnn.normal": list("abcde")})
    assert path.read_bytes()[:4] == b"\x89PNG"
    bad = copy.deepcopy(history)
    bad[1]["cnn.normal"].append(0.0)
    with pytest.raises(ValueError, match=r"'cnn.normal' changes shape from \(5,\) to \(6,\)"):
        plot_beta_history(bad, tmp_path / "c.png")
