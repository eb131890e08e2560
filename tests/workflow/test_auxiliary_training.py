"""DARTS's auxiliary head in retraining (``train.auxiliary_weight``): the loss gains w times the
head's loss and the head learns; testing, ``model.pt``, export and the parameter count leave
the head out; a resume keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_runs import tiny_dict

from nasspeech.config import RunConfig
from nasspeech.genotype import Genotype
from nasspeech.metrics import count_parameters
from nasspeech.search import weight_step
from nasspeech.workflow.checkpoint import load_checkpoint

WEIGHT = 0.4
GENOTYPE = {"space": "tiny", "components": [
    {"name": "cnn", "family": "cnn", "cells": {
        kind: {"nodes": [[{"source": 0, "op": "sep_conv_3x3"},
                          {"source": 1, "op": "max_pool_3x3"}]], "concat": [2]}
        for kind in ("normal", "reduce")}},
    {"name": "seq", "family": "seq", "cells": {
        "cell": {"nodes": [[{"source": 0, "op": "lstm_1"}, {"source": 1, "op": "skip_connect"}]],
                 "concat": [2]}}}]}


def aux_dict(cache: Path, **train) -> dict:
    """The tiny run at 16 x 16 features with a cnn of 2 cells (a reduction in cell 1): the
    head after cell 1 sees 8 x 8 maps, the smallest it takes."""
    cfg = tiny_dict(cache, train={"epochs": 2, "batch_size": 16, "auxiliary_weight": WEIGHT,
                                  **train})
    cfg["space"]["input_shape"] = [1, 16, 16]
    cfg["space"]["components"][0].update(cells=2, reductions=[1])
    cfg["data"]["features"].update(n_mfcc=16, frames=16)
    return cfg


def genotype() -> Genotype:
    return Genotype.model_validate(GENOTYPE)


@pytest.fixture(scope="module")
def aux_run(tmp_path_factory):
    from nasspeech.workflow.datasets import load_run_data

    tmp = tmp_path_factory.mktemp("aux")
    config = RunConfig.model_validate(aux_dict(tmp / "cache"))
    return tmp, config, load_run_data(config, progress=False)


def batch(n: int = 6):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 4, (n,), generator=g)


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_step_adds_weighted_head_loss_and_the_head_learns(aux_run):
    _, config, _ = aux_run
    torch.manual_seed(0)
    model = config.space.derive(genotype(), auxiliary=True).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: compare gradients only
    x, y = batch()
    res = weight_step(model, opt, (x, y), grad_clip=None, aux_weight=WEIGHT)
    with_aux = grads(model)
    assert res.aux_loss is not None and res.aux_loss > 0
    head = {n for n in with_aux if n.startswith("auxiliary.")}
    assert head == {n for n, _ in model.named_parameters() if n.startswith("auxiliary.")}
    assert all(with_aux[n].abs().sum() > 0 for n in head)

    # the same step by hand: main loss + w * head loss
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    logits = model(x)
    main = F.cross_entropy(logits, y)
    assert res.loss == pytest.approx(float(main.detach()), rel=1e-5)  # the reported loss is the main one
    (main + WEIGHT * F.cross_entropy(model.aux_logits, y)).backward()
    for n, g in grads(model).items():
        torch.testing.assert_close(with_aux[n], g, rtol=1e-4, atol=1e-6)

    # without the head's loss: cells before the head get other gradients, later ones do not
    model.load_state_dict(state)
    plain = (weight_step(model, opt, (x, y), grad_clip=None), grads(model))[1]
    assert not any(n.startswith("auxiliary.") for n in plain)
    first = "components.cnn.cells.0."
    assert any(not torch.allclose(plain[n], with_aux[n]) for n in plain if n.startswith(first))
    for n in plain:
        if n.startswith(("components.seq.", "classifier.")):
            torch.testing.assert_close(plain[n], with_aux[n], rtol=1e-4, atol=1e-7)


def test_eval_ignores_the_head(aux_run):
    _, config, _ = aux_run
    torch.manual_seed(0)
    with_head = config.space.derive(genotype(), auxiliary=True)
    without = config.space.derive(genotype())
    state = {k: v for k, v in with_head.state_dict().items() if not k.startswith("auxiliary.")}
    assert without.load_state_dict(state, strict=True)
    x, _ = batch()
    with_head.eval(), without.eval()
    with torch.no_grad():
        out = with_head(x)
        assert with_head.aux_logits is None
        assert torch.equal(out, without(x))  # the same modules run: the head adds nothing
    with_head.remove_auxiliary()
    assert not any(k.startswith("auxiliary.") for k in with_head.state_dict())
    with_head.train()
    with_head(x)
    assert with_head.aux_logits is None  # the hook is gone too


@pytest.fixture(scope="module")
def trained(aux_run):
    from nasspeech.workflow.train import run_train

    tmp, config, data = aux_run
    return run_train(config, data, 0, tmp / "train", genotype=genotype(), progress=False)


def test_training_with_the_head_reports_and_saves_the_model_without_it(trained, aux_run):
    _, config, _ = aux_run
    run, metrics = trained.run_dir, trained.metrics
    with_head = config.space.derive(genotype(), auxiliary=True)
    head = count_parameters(with_head.auxiliary)
    assert metrics["auxiliary_weight"] == WEIGHT and metrics["auxiliary_params"] == head > 0
    assert metrics["params"] == count_parameters(with_head) - head
    assert metrics["params"] == count_parameters(config.space.derive(genotype()))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(r["train_aux_loss"] > 0 for r in log) and len(log) == 2
    state = load_checkpoint(run / "model.pt")
    assert state and not any(k.startswith("auxiliary.") for k in state)
    assert any(k.startswith("auxiliary.") for k in load_checkpoint(run / "checkpoint.pt")["model"])


def test_exported_model_reproduces_the_test_result(trained, aux_run):
    from nasspeech.export.source import load_trained
    from nasspeech.metrics import classification_report
    from nasspeech.search import predict
    from nasspeech.workflow.datasets import eval_stream

    data = aux_run[2]
    model = load_trained(trained.run_dir)  # strict load: no head in the file or the model
    assert getattr(model.module, "auxiliary", None) is None
    pred, true = predict(model.module, eval_stream(data.x, data.y, data.fold(0).test, 16))
    report = classification_report(true, pred, data.class_names)
    assert report["confusion"] == trained.metrics["confusion"]


def test_resume_keeps_the_head(tmp_path, aux_run):
    from nasspeech.workflow.train import run_train

    _, config, data = aux_run
    full = run_train(config, data, 0, tmp_path / "full", genotype=genotype(), progress=False)
    one = RunConfig.model_validate(aux_dict(config.data.cache_dir, epochs=1))
    run_train(one, data, 0, tmp_path / "resumed", genotype=genotype(), progress=False)
    resumed = run_train(config, data, 0, tmp_path / "resumed", genotype=genotype(),
                        progress=False, resume=True)
    for key in ("ua", "confusion", "params", "auxiliary_params"):
        assert resumed.metrics[key] == full.metrics[key], key
    a, b = (load_checkpoint(r.run_dir / "checkpoint.pt")["model"] for r in (full, resumed))
    heads = [k for k in a if k.startswith("auxiliary.")]
    assert heads and all(torch.allclose(a[k].float(), b[k].float()) for k in heads)


def test_cv_trains_baselines_without_the_head(tmp_path, aux_run):
    from nasspeech.workflow.cv import run_cv

    _, config, data = aux_run
    short = RunConfig.model_validate(aux_dict(config.data.cache_dir, epochs=1) | {
        "search": {**config.search.model_dump(), "epochs": 1}})
    result = run_cv(short, data, tmp_path / "cv", folds=[0], baselines=("cnn",), progress=False)
    assert result.per_model["searched"][0]["auxiliary_params"] > 0
    assert "auxiliary_params" not in result.per_model["cnn"][0]
    saved = RunConfig.load(tmp_path / "cv" / "fold_0" / "cnn" / "config.yaml")
    assert saved.train.auxiliary_weight == 0.0
