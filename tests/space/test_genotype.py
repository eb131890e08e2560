"""Genotypes: derivation from alphas, JSON round trip, validation, graphs, plots, retraining."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from nasspeech.genotype import Genotype, GenotypeError
from nasspeech.search import Architect, search_step, weight_step
from nasspeech.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]


def small_space(**kw) -> SearchSpace:
    comp = dict(name="cnn", family="cnn",
                ops=["sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"],
                cells=3, nodes=3, channels=4)
    comp.update(kw)
    return SearchSpace(name="small", input_shape=(1, 12, 12), num_classes=3, components=[comp])


def test_darts_v2_cifar10_parameter_count():
    """DARTS_V2 as the CIFAR-10 evaluation network (36 channels, 20 cells, no auxiliary head).

    3,349,342 is what the DARTS code itself reports for this network ("param size =
    3.349342MB" in its train.py log; stem, cells and classifier counted, auxiliary excluded).
    Our ops and cells follow its definitions exactly, so the count matches to the parameter.

    Convention: as in the DARTS code, pooling ops in derived cells have no BatchNorm.
    pt.darts puts an affine BatchNorm (2 x width parameters) after every pooling op and counts
    3,351,502; the 2,160 difference is exactly those BatchNorms, computed below from the model.
    """
    space = SearchSpace.from_file(ROOT / "examples/darts_cifar10.yaml")
    genotype = Genotype.load(ROOT / "examples/genotypes/darts_v2.json")
    model = space.derive(genotype, overrides={"cnn": {"channels": 36, "cells": 20}})
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == 3_349_342
    pool_bn = sum(2 * cell.width
                  for cell in model.components["cnn"].cells
                  for op in cell.ops if isinstance(op, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)))
    assert n + pool_bn == 3_351_502  # pt.darts's count
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_darts_auxiliary_head():
    """DARTS's auxiliary head after cell 2*20//3 = 13 (a reduction cell, 576 channels at 8x8):
    576*128 + 2*128 (1x1 conv, BN) + 128*768*4 + 2*768 (2x2 conv, BN) + 768*10 + 10 = 476,426
    parameters; its logits come with every training forward pass and reach its parameters."""
    space = SearchSpace.from_file(ROOT / "examples/darts_cifar10.yaml")
    genotype = Genotype.load(ROOT / "examples/genotypes/darts_v2.json")
    model = space.derive(genotype, overrides={"cnn": {"channels": 36, "cells": 20}},
                         auxiliary=True)
    aux = sum(p.numel() for p in model.auxiliary.parameters())
    assert aux == 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10 == 476_426
    assert sum(p.numel() for p in model.parameters()) == 3_349_342 + aux
    x = torch.randn(2, 3, 32, 32)
    model.train()
    logits = model(x)
    assert model.aux_logits.shape == (2, 10)
    model.aux_logits.sum().backward()
    assert model.auxiliary.classifier.weight.grad is not None
    assert logits.shape == (2, 10)
    model.eval()
    model(x)
    assert model.aux_logits is None


def test_genotype_keeps_top_k_edges_with_best_non_none_op():
    space = small_space(top_k=2)
    net = space.build_supernet()
    ops = space.components[0].ops
    with torch.no_grad():
        for a in net.alpha_parameters():
            a.zero_()
            a[:, ops.index("none")] = 10.0  # `none` strongest everywhere: must still be ignored
            a[:, ops.index("sep_conv_3x3")] = 1.0
        normal = net.components["cnn"].alphas["normal"]
        normal[0, ops.index("max_pool_3x3")] = 5.0  # node 2, edge from input 0
    g = net.genotype()
    cell = g.component("cnn").cells["normal"]
    assert [len(n) for n in cell.nodes] == [2, 2, 2]
    assert cell.nodes[0][0].op == "max_pool_3x3" and cell.nodes[0][0].source == 0
    assert all(e.op != "none" for n in cell.nodes for e in n)
    assert cell.concat == [2, 3, 4]


def test_json_round_trip_and_files(tmp_path):
    g = small_space().build_supernet().genotype()
    path = g.save(tmp_path / "g.json")
    again = Genotype.load(path)
    assert again == g
    assert again.schema_version == 1
    assert "eval" not in path.read_text()


def test_unknown_op_in_genotype_is_rejected_with_location(tmp_path):
    g = small_space().build_supernet().genotype()
    text = g.to_json().replace('"sep_conv_3x3"', '"sep_conv_11x11"', 1)
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(GenotypeError, match="sep_conv_11x11.*Known cnn ops"):
        Genotype.load(bad)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(GenotypeError, match="broken.json"):
        Genotype.load(tmp_path / "broken.json")


def test_bad_structure_and_version_rejected():
    g = small_space().build_supernet().genotype().model_dump()
    g["components"][0]["cells"]["normal"]["nodes"][0][0]["source"] = 7
    with pytest.raises(GenotypeError, match="not earlier"):
        Genotype.from_json(json.dumps(g))
    g = small_space().build_supernet().genotype().model_dump()
    g["schema_version"] = 99
    with pytest.raises(GenotypeError, match="schema version 99"):
        Genotype.from_json(json.dumps(g))


def test_genotype_from_another_space_is_rejected():
    g = small_space().build_supernet().genotype()
    other = SearchSpace(name="other", input_shape=(1, 12, 12), num_classes=3, components=[
        dict(name="front", family="cnn", ops=["sep_conv_3x3", "none"], cells=3, nodes=3,
             channels=4)])
    with pytest.raises(GenotypeError, match="searched in another space"):
        other.derive(g)


def test_networkx_graph_and_plot(tmp_path):
    g = small_space().build_supernet().genotype()
    graph = g.to_networkx("cnn", "normal")
    assert graph.number_of_nodes() == 2 + 3 + 1
    ops = {d["op"] for _, _, d in graph.edges(data=True)}
    assert "concat" in ops and ops - {"concat"} <= {"sep_conv_3x3", "max_pool_3x3", "skip_connect"}
    path = tmp_path / "cells.png"
    g.plot(path, title="test")
    assert path.stat().st_size > 5000


def test_derive_trains_a_step_and_overrides_and_drop_path():
    space = small_space()
    net = space.build_supernet()
    arch = Architect(net, order=1)
    opt = torch.optim.SGD(net.weight_parameters(), 0.05, momentum=0.9)
    batch = (torch.randn(4, 1, 12, 12), torch.randint(0, 3, (4,)))
    search_step(net, arch, opt, batch, batch, lr=0.05)
    g = net.genotype()
    model = space.derive(g, overrides={"cnn": {"channels": 6, "cells": 5}}, drop_path=0.3)
    assert len(model.components["cnn"].cells) == 5
    before = [p.detach().clone() for p in model.parameters()]
    opt2 = torch.optim.SGD(model.parameters(), 0.05)
    result = weight_step(model, opt2, batch)
    assert result.count == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(KeyError, match="channels"):
        space.derive(g, overrides={"cnn": {"nodes": 2}})


def test_same_seed_same_genotype_two_epoch_search():
    def run() -> tuple[str, list[torch.Tensor]]:
        torch.manual_seed(123)
        space = small_space()
        net = space.build_supernet()
        arch = Architect(net, order=2)
        opt = torch.optim.SGD(net.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
        data = torch.Generator().manual_seed(5)
        x = torch.randn(16, 1, 12, 12, generator=data)
        y = torch.randint(0, 3, (16,), generator=data)
        for _epoch in range(2):
            for i in range(0, 16, 8):
                tr = (x[i : i + 4], y[i : i + 4])
                va = (x[i + 4 : i + 8], y[i + 4 : i + 8])
                search_step(net, arch, opt, tr, va, lr=0.05)
        return net.genotype().to_json(), [a.detach().clone() for a in net.alpha_parameters()]

    g1, a1 = run()
    g2, a2 = run()
    assert g1 == g2
    assert all(torch.equal(x, y) for x, y in zip(a1, a2))


def test_one_node_numbering_in_json_errors_and_plots():
    """Nodes 0 and 1 are the cell inputs, intermediate nodes 2, 3, ...: the JSON's ``source``
    and ``concat``, error messages, the graph and the plot labels all use these numbers."""
    from nasspeech.genotype.plot import plot_labels

    g = small_space().build_supernet().genotype()
    cell = g.component("cnn").cells["normal"]
    graph = g.to_networkx("cnn", "normal")
    assert {"c_{k-2}", "c_{k-1}", "2", "3", "4", "c_{k}"} == set(graph.nodes)
    for j, edges in enumerate(cell.nodes):  # nodes[j] holds the inputs of node j + 2
        for e in edges:
            source = {0: "c_{k-2}", 1: "c_{k-1}"}.get(e.source, str(e.source))
            assert graph.has_edge(source, str(j + 2))
            assert graph.nodes[source]["index"] == e.source
    labels = plot_labels(graph)
    assert labels["2"] == "2" and labels["c_{k-2}"] == "c_{k-2}\n(0)"
    bad = g.model_dump()
    bad["components"][0]["cells"]["normal"]["nodes"][0][0]["source"] = 2
    with pytest.raises(GenotypeError, match="node 2 takes input from node 2, which is not "
                                            "earlier"):
        Genotype.from_json(json.dumps(bad))


def test_unusual_genotypes_warn_once_and_still_derive(monkeypatch):
    from nasspeech.genotype import GenotypeWarning
    from nasspeech.registry import notices

    monkeypatch.setattr(notices, "_reported", set())
    space = small_space(ops=["sep_conv_3x3", "skip_connect", "none"], top_k=3)
    g = small_space().build_supernet().genotype().model_dump()
    cell = g["components"][0]["cells"]["normal"]
    cell["nodes"][0] = [{"source": 0, "op": "max_pool_3x3"}]  # not among the space's ops
    cell["concat"] = [3, 4]  # node 2 is read by nobody if nodes 3 and 4 do not read it
    cell["nodes"][1] = [{"source": 1, "op": "sep_conv_3x3"}]
    cell["nodes"][2] = [{"source": 3, "op": "sep_conv_3x3"}]
    g["components"][0]["cells"]["reduce"] = cell
    g["space"] = "elsewhere"
    genotype = Genotype.model_validate(g)
    with pytest.warns(GenotypeWarning) as record:
        model = space.derive(genotype)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 5, messages
    for kind in ("normal", "reduce"):
        assert (f"genotype component 'cnn', {kind} cell, node 2 uses 'max_pool_3x3', which is "
                "not among the component's ops; training it anyway") in messages
        assert any(f"{kind} cell: node 2 is computed but unused" in m for m in messages)
    assert any("searched in space 'elsewhere', not in 'small'" in m for m in messages)
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space.derive(genotype)  # once per process


def test_save_writes_atomically_through_the_one_helper(tmp_path, monkeypatch):
    from nasspeech.genotype import model

    calls = []
    real = model.atomic_write
    monkeypatch.setattr(model, "atomic_write", lambda *a, **k: calls.append(a) or real(*a, **k))
    g = small_space().build_supernet().genotype()
    path = g.save(tmp_path / "sub" / "g.json")
    assert calls and calls[0][0] == tmp_path / "sub" / "g.json"
    assert Genotype.load(path) == g
    assert [p.name for p in path.parent.iterdir()] == ["g.json"]  # no temp file left
