"""A search run with ``search.recompute_depthwise`` recomputes inside the run, and the same
run without it does not; both follow the same alphas (the option changes memory and time
only)."""

from __future__ import annotations

import torch
from tiny_runs import probe_calls

import nasspeech.workflow.search as S
from nasspeech.kernels.recompute import recompute_depthwise_enabled


def test_search_run_switches_recomputation_on_for_its_steps(tiny, tmp_path, monkeypatch):
    config, data = tiny
    seen = probe_calls(monkeypatch, S, "_search", recompute_depthwise_enabled)
    on = config.model_copy(update={"search": config.search.model_copy(
        update={"recompute_depthwise": True})})
    found = S.run_search(on, data, 0, tmp_path / "on", progress=False, stop_after=1)
    kept = S.run_search(config, data, 0, tmp_path / "off", progress=False, stop_after=1)
    assert seen == [True, False]
    assert not recompute_depthwise_enabled()
    # same seed, same data: the alphas follow the same path (the option changes no numbers)
    for name, probs in kept.alpha_history[-1].items():
        torch.testing.assert_close(torch.tensor(found.alpha_history[-1][name]),
                                   torch.tensor(probs), rtol=1e-4, atol=1e-6)


def test_training_run_with_recomputation_trains_the_same_model(tiny, tmp_path, monkeypatch):
    import nasspeech.workflow.train as T

    config, data = tiny
    seen = probe_calls(monkeypatch, T, "_train", recompute_depthwise_enabled)
    genotype = S.run_search(config, data, 0, tmp_path / "search", progress=False,
                            stop_after=1).genotype
    assert "sep_conv" in genotype.to_json()  # a depthwise output to recompute
    on = config.model_copy(update={"train": config.train.model_copy(
        update={"recompute_depthwise": True})})
    T.run_train(on, data, 0, tmp_path / "on", genotype=genotype, progress=False)
    T.run_train(config, data, 0, tmp_path / "off", genotype=genotype, progress=False)
    assert seen == [True, False]
    a = torch.load(tmp_path / "on" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "off" / "model.pt", weights_only=True)
    a, b = (x.get("model", x) for x in (a, b))
    for name, value in b.items():
        if value.is_floating_point():
            torch.testing.assert_close(a[name], value, rtol=1e-4, atol=1e-6, msg=name)

